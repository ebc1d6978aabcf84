"""verify/profile.py on hand-made executed ops with known answers, and through a fake backend whose runner takes
longer than its profiler counts: every share is of the measured time, not of the profiler's own total."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edgefocal.backends.base import Backend
from edgefocal.core import Availability, ExecutedOp, OpProfiler, Runner
from edgefocal.errors import BadInput
from edgefocal.naming import BY_CONSUMERS, BY_NAME, OTHER
from edgefocal.verify.profile import Profile, document, profile, text

OPS = [ExecutedOp("stem.proj/Conv", "Convolution", "brgconv_I8", "u8", 2.0, 4_000_000, module="stem.proj", attributed_by=BY_NAME),
       ExecutedOp("Reorder_1", "Reorder", "jit_uni", "f32", 0.5, module="stem.proj", attributed_by=BY_CONSUMERS),
       ExecutedOp("layers.0.blocks.0.mlp.fc1/Conv", "Convolution", "brgconv_I8", "u8", 1.0, 6_000_000,
                  module="layers.0.blocks.0.mlp.fc1", attributed_by=BY_NAME),
       ExecutedOp("layers.0.blocks.0.mlp.act/Gelu", "Eltwise", "jit_bf16", "bf16", 1.0, module="layers.0.blocks.0.mlp.act",
                  attributed_by=BY_NAME),
       ExecutedOp("Convert_7", "Convert", "ref", "f32", 0.5)]


def make(measured: float) -> Profile:
    return Profile("m.xml", "openvino", "int8", 1, 2, 10, OPS, measured_ms=measured, profiled_wall_ms=5.2)


def test_shares_are_of_the_measured_time():
    p = make(10.0)  # the profiler counts 5 ms of a 10 ms inference
    assert p.profiled_ms == pytest.approx(5.0) and p.unseen_ms == pytest.approx(5.0)
    assert p.attributed_ms == pytest.approx(4.5) and p.attributed_share == pytest.approx(0.45)
    macs, rest = p.mac_ops()
    assert (macs.ms, macs.share, macs.macs, macs.ops) == (3.0, pytest.approx(0.3), 10_000_000, 2)
    assert macs.gmac_per_s == pytest.approx(10e6 / 3.0 / 1e6)  # MACs over ms: 3.33 GMAC/s
    assert (rest.ms, rest.share) == (2.0, pytest.approx(0.2))
    parts = {s.name: s for s in p.by_part()}
    assert parts["stem.proj"].ms == 2.5 and parts["stem.proj"].int8_ms == 2.0 and parts[OTHER].ms == 0.5
    assert {s.name: s.ms for s in p.by_part_kind()} == {"stem": 2.5, "fc1": 1.0, "act": 1.0, OTHER: 0.5}
    assert {s.name: s.ms for s in p.by_stage()} == {"stem": 2.5, "stage 1": 2.0, OTHER: 0.5}
    assert {s.name: s.ms for s in p.by_rule()} == {BY_NAME: 4.0, BY_CONSUMERS: 0.5, "": 0.5}
    for grouping in (p.by_part, p.by_part_kind, p.by_stage, p.by_kind, p.by_rule):
        assert sum(s.ms for s in grouping()) == pytest.approx(p.profiled_ms)  # every op in exactly one group


def test_a_profiler_counting_more_than_the_clock_never_gives_more_than_all_of_it():
    p = make(4.0)  # counters that overlap: 5 ms profiled of a 4 ms inference
    assert p.basis_ms == 5.0 and p.unseen_ms == 0.0 and p.attributed_share == pytest.approx(0.9)
    assert sum(s.share for s in p.by_part()) == pytest.approx(1.0)


def test_profile_json_and_the_terminal_table():
    d = document([make(10.0)])
    one = d["profiles"][0]
    assert d["schema"] == 1 and one["attributed_share"] == 0.45 and one["unseen_ms"] == 5.0
    assert one["unattributed_ms"] == pytest.approx(5.5) and one["basis_ms"] == 10.0
    assert sum(o["ms"] for o in one["ops"]) == pytest.approx(one["profiled_ms"])
    assert one["ops"][0] == {"name": "stem.proj/Conv", "module": "stem.proj", "part": "stem", "attributed_by": BY_NAME,
                                  "kind": "Convolution", "kernel": "brgconv_I8", "precision": "u8", "int8": True,
                                  "ms": 2.0, "macs": 4_000_000}
    assert [b["label"] for b in one["by_part"]][:2] == ["stem conv", "stage 1 block 1 mlp fc1"]
    lines = text(make(10.0))
    assert "45.0% of measured" in lines[2] and "MAC ops 30.0%" in lines[3]


class SlowRunner(Runner):
    """Takes 20 ms an inference."""

    def load(self) -> None:
        pass

    def infer(self, x):
        time.sleep(0.02)
        return np.zeros((len(x), 10), np.float32)


class FixedProfiler(OpProfiler):
    """Counts 5 ms of ops an inference, whatever the clock says."""

    def load(self) -> None:
        pass

    def infer(self, x):
        self.wall_ms.append(5.0)
        return np.zeros((len(x), 10), np.float32)

    def ops(self, skip: int = 0):
        return [ExecutedOp("fc/Conv", "Convolution", "k", "u8", 4.0, 10, module="fc"), ExecutedOp("x", "Copy", "k", "f32", 1.0)]


class FakeBackend(Backend):
    name = "fake-profiled"
    precisions = ("int8",)
    extra = ""
    profiles_ops = True

    def availability(self):
        return Availability(True, True)

    def quantize(self, ctx, plan, calibration):
        raise NotImplementedError

    def package(self, ctx, precision, quantized=None):
        raise NotImplementedError

    def runner(self, artifact, precision, threads=None):
        return SlowRunner(artifact)

    def profiler(self, artifact, precision, threads=None):
        return FixedProfiler(artifact)


def test_the_measured_time_is_the_runners_with_the_profiler_off():
    p = profile(FakeBackend(), Path("m.bin"), "int8", np.zeros((1, 1, 4, 4), np.float32), runs=4, warmup=1)
    assert p.profiled_ms == 5.0 and p.profiled_wall_ms == 5.0 and len(p.samples_ms) == 4
    assert 20.0 <= p.measured_ms < 60.0  # the runner's sleep, timed run for run beside the profiler
    assert p.attributed_share == pytest.approx(4.0 / p.measured_ms)  # 4 ms on `fc` of ~20 measured: ~20 %, not 80 %


def test_an_artifact_of_a_runtime_edgefocal_does_not_profile_is_refused():
    class Unprofiled(FakeBackend):
        name = "fake-unprofiled"
        profiles_ops = False

    with pytest.raises(BadInput, match="profiling a fake-unprofiled artifact needs fake-unprofiled's own profiler"):
        profile(Unprofiled(), Path("m.bin"), "int8", np.zeros((1, 1, 4, 4), np.float32))
