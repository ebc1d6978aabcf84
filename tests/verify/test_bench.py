"""The interleaved benchmark with stability judging: scripted runners and a scripted CPU-load probe, so
re-measurement, loaded-round exclusion and the row fields are checked without timing anything."""
import numpy as np
import pytest

import edgefocal.verify.bench as bench
from edgefocal.core import Runner
from edgefocal.verify.stability import StabilityPolicy


class Scripted(Runner):
    """Returns `ms(round)` for every call of a round (a round is one timed_infer call)."""

    def __init__(self, ms):
        super().__init__()
        self.ms, self.calls = ms, 0

    def load(self):
        pass

    def infer(self, x):
        return x

    def timed_infer(self, x, repeats):
        value = self.ms(self.calls)
        self.calls += 1
        return [value] * repeats


class ScriptedLoad:
    def __init__(self, loads):
        self.loads, self.i = loads, 0

    def start(self):
        pass

    def stop(self):
        self.i += 1
        return self.loads(self.i - 1)


POLICY = StabilityPolicy(max_spread=0.2, max_drift=0.25, max_foreign_load=0.25, max_rounds=12)
SAMPLE = np.zeros((2, 1, 4, 4), np.float32)


@pytest.fixture
def run(monkeypatch):
    def go(ref_ms, art_ms, loads, rounds=5):
        monkeypatch.setattr(bench, "ForeignLoad", lambda: ScriptedLoad(loads))
        runners = {"ref": Scripted(ref_ms), "art": Scripted(art_ms)}
        return bench.benchmark(runners, SAMPLE, [1], warmup=1, iterations=rounds * 2, rounds=rounds,
                               reference="ref", policy=POLICY)
    return go


def test_quiet_machine_needs_no_extra_rounds(run):
    res = run(lambda c: 10.0, lambda c: 4.0, lambda i: 0.02)
    s = res["art"][1]["stability"]
    assert s["stable"] and s["rounds_measured"] == 5 and s["speedup"] == pytest.approx(2.5)
    fields = bench.row_fields(res, "art", "ref")
    assert fields["speedup_interval"][1] == [2.5, 2.5] and fields["latency_ms"][1]["p50"] == 4.0
    assert len(fields["latency_samples_ms"][1]) == 10 and fields["latency_rounds_ms"][1] == [4.0] * 5


def test_a_loaded_spell_is_remeasured_and_left_out(run):
    """Rounds 1-2 ran under load (the reference 5x slower); the benchmark runs two more rounds and judges
    on the five clean ones, so neither the ratio nor the percentiles carry the spell."""
    loaded = {1, 2}
    res = run(lambda c: 50.0 if c - 1 in loaded else 10.0, lambda c: 4.0, lambda i: 0.8 if i in loaded else 0.0)
    s = res["art"][1]["stability"]
    assert s["stable"] and s["rounds_measured"] == 7 and s["rounds_used"] == 5 and s["speedup_high"] == 2.5
    assert res["ref"][1]["p99"] == 10.0


def test_a_load_that_never_ends_stays_unstable_within_the_bound(run):
    res = run(lambda c: 50.0, lambda c: 4.0, lambda i: 0.9)
    s = res["art"][1]["stability"]
    assert not s["stable"] and s["rounds_measured"] == POLICY.max_rounds and "other processes" in s["reason"]


def test_without_a_policy_the_old_shape_is_kept():
    runners = {"ref": Scripted(lambda c: 10.0), "art": Scripted(lambda c: 5.0)}
    res = bench.benchmark(runners, SAMPLE, [1, 3], warmup=0, iterations=6, rounds=3)
    assert set(res["art"]) == {1, 3} and "stability" not in res["art"][1]
    assert res["art"][3]["throughput"] == pytest.approx(3 * 1e3 / 5.0)
    assert "speedup_interval" not in bench.row_fields(res, "art", "ref")


def test_a_heavy_model_gets_fewer_runs_bounded_by_macs_never_fewer_than_two_per_round():
    # the default's 32² FocalNet (0.0045 GMACs an image, prune/macs.py count) keeps the recipe's counts
    assert bench.bounded_counts(10, 50, 5, 1, 0.0045, 300) == (10, 50)
    assert bench.bounded_counts(10, 50, 5, 8, 0.0045, 300) == (10, 50)
    # focalnet_tiny at 224² (4.4 GMACs): batch 1 fits the bound, batch 8 (35 GMACs a run) is cut to the floor
    assert bench.bounded_counts(10, 50, 5, 1, 4.4, 300) == (10, 50)
    warmup, iterations = bench.bounded_counts(10, 50, 5, 8, 4.4, 300)
    assert (warmup, iterations) == (1, 10)
    # a middle case scales both, the work staying within the bound
    warmup, iterations = bench.bounded_counts(10, 50, 5, 8, 0.3, 60)
    assert 0.3 * 8 * (warmup + iterations) <= 60 and iterations >= 10 and warmup >= 1
    # no MAC count, no bound, and a recipe asking for fewer runs than the floor keeps its own
    assert bench.bounded_counts(10, 50, 5, 8, None, 300) == (10, 50)
    assert bench.bounded_counts(10, 50, 5, 8, 4.4, None) == (10, 50)
    assert bench.bounded_counts(1, 3, 1, 8, 4.4, 300) == (1, 3)


def test_the_benchmark_times_a_heavy_model_with_the_bounded_runs():
    runners = {"ref": Scripted(lambda c: 10.0), "art": Scripted(lambda c: 5.0)}
    res = bench.benchmark(runners, SAMPLE, [1, 8], warmup=10, iterations=50, rounds=5, gmacs_per_image=4.4,
                          max_gmacs=300)
    assert len(res["art"][1]["samples_ms"]) == 50 and len(res["art"][8]["samples_ms"]) == 10


def test_the_runners_after_the_reference_take_every_slot_in_turn():
    names = ["ref", "a", "b", "c"]
    orders = [bench.round_order(names, i) for i in range(3)]
    assert all(order[0] == "ref" and sorted(order) == sorted(names) for order in orders)
    for slot in range(1, 4):
        assert sorted(order[slot] for order in orders) == ["a", "b", "c"]
    assert bench.round_order(["ref"], 5) == ["ref"]


class AfterFirst(Runner):
    """2 ms when timed right after `first` (whose threads still hold a core), 1 ms otherwise."""

    last: list[str] = []

    def __init__(self, name, first="ref"):
        super().__init__()
        self.name, self.first = name, first

    def load(self):
        pass

    def infer(self, x):
        return x

    def timed_infer(self, x, repeats):
        ms = 2.0 if AfterFirst.last[-1:] == [self.first] else 1.0
        AfterFirst.last.append(self.name)
        return [ms] * repeats


def test_two_equal_runners_measure_equal_although_one_is_listed_right_after_the_reference(monkeypatch):
    monkeypatch.setattr(bench, "ForeignLoad", lambda: ScriptedLoad(lambda i: 0.0))
    AfterFirst.last = []
    runners = {name: AfterFirst(name) for name in ("ref", "a", "b")}
    res = bench.benchmark(runners, SAMPLE, [1], warmup=0, iterations=8, rounds=4)
    assert res["a"][1]["p50"] == res["b"][1]["p50"]
    assert res["a"][1]["round_medians_ms"] == [2.0, 1.0, 2.0, 1.0]
