"""Stability of interleaved latency rounds: order-statistic intervals, loaded rounds left out, spread and
drift turning a measurement unstable — all on hand-made rounds with known answers."""
import pytest

from edgefocal.verify.stability import StabilityPolicy, median_interval, ratio_stability, reference_stability

POLICY = StabilityPolicy(max_spread=0.2, max_drift=0.25, max_foreign_load=0.25, max_rounds=15)


def rounds(medians, n=5):
    return [[m] * n for m in medians]


def test_median_interval_uses_order_statistics():
    assert median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0, pytest.approx(0.9375))  # min..max for 5
    low, high, conf = median_interval(list(range(1, 21)))  # 20 values: the 6th and 15th order statistics
    assert (low, high) == (6.0, 15.0) and conf == pytest.approx(0.9586, abs=1e-4)
    assert median_interval([7.0]) == (7.0, 7.0, 0.0)


def test_steady_rounds_are_stable_and_bracket_the_ratio():
    ref = rounds([10.0, 10.2, 9.9, 10.1, 10.0])
    art = rounds([5.0, 5.0, 5.0, 5.0, 5.0])
    s = ratio_stability(ref, art, [0.0] * 5, POLICY, need=5)
    assert s["stable"] and s["reason"] == ""
    assert s["speedup_low"] == pytest.approx(1.98) and s["speedup_high"] == pytest.approx(2.04)
    assert s["speedup"] == pytest.approx(2.0) and s["reference_drift"] == pytest.approx(10.2 / 9.9 - 1)


def test_loaded_rounds_are_left_out_when_enough_clean_rounds_remain():
    ref = rounds([10, 40, 10, 10, 10, 10, 10])  # round 1: another process took the CPU
    art = rounds([5, 5, 5, 5, 5, 5, 5])
    load = [0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0]
    s = ratio_stability(ref, art, load, POLICY, need=5)
    assert s["stable"] and s["rounds_used"] == 6 and s["rounds_loaded"] == 1 and s["speedup_high"] == 2.0


def test_constant_load_is_unstable_even_when_ratios_agree():
    """A constant load inflates every round's ratio alike: only the load figure gives it away."""
    s = ratio_stability(rounds([40] * 5), rounds([5] * 5), [0.6] * 5, POLICY, need=5)
    assert not s["stable"] and "other processes used up to 60%" in s["reason"]
    assert s["spread"] == 0.0  # the ratios alone look perfect
    assert s["flags"] == ["load 60%"]  # the short form a table shows next to the latency


def test_spread_and_drift_make_it_unstable():
    s = ratio_stability(rounds([10, 10, 10, 10, 10]), rounds([5, 4, 6, 5, 3]), [None] * 5, POLICY, need=5)
    assert not s["stable"] and "spread" in s["reason"] and s["foreign_load"] is None
    assert s["flags"] == ["spread 83%"]  # ratios 1.67-3.33x around 2x
    r = reference_stability(rounds([10, 11, 14, 10, 10]), [0.0] * 5, POLICY, need=5)
    assert not r["stable"] and "drifted 40%" in r["reason"]


def test_too_few_rounds_decide_nothing():
    s = ratio_stability(rounds([10, 10]), rounds([5, 5]), [0.0, 0.0], POLICY, need=2)
    assert not s["stable"] and "3 are needed" in s["reason"]
