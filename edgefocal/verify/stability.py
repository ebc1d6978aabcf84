"""How far a latency figure can be trusted: pure numpy over the interleaved rounds of verify/bench.py.

A same-run ratio (reference p50 / artifact p50) survives a slow spell that hits every runner alike, but
not one that hits them unequally: with a second process busy on this 2-core machine the torch reference
slowed 4-77x while OpenVINO barely moved, and a pooled ratio claimed 420x. So a latency gate decides only
on a measurement that is *stable* — enough rounds ran without other processes taking the CPU, the
per-round ratios agree with each other, and the reference did not drift — and then only when the whole
interval of the ratio lies on one side of the bound. Everything else is `inconclusive`."""
from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

MIN_ROUNDS = 3  # fewer paired rounds cannot tell a stable ratio from a lucky one


@dataclass(frozen=True)
class StabilityPolicy:
    """The recipe's `gates.max_latency_*` settings, as the benchmark needs them."""

    max_spread: float = 0.20  # (high - low) / median of the per-round ratios
    max_drift: float = 0.25  # reference's slowest / fastest round median - 1
    max_foreign_load: float = 0.25  # other processes' share of the machine's CPU during a round
    max_rounds: int = 10  # re-measure up to this many rounds in all

    @classmethod
    def from_gates(cls, gates) -> "StabilityPolicy":
        return cls(gates.max_latency_spread, gates.max_reference_drift, gates.max_foreign_load,
                   gates.max_latency_rounds)


def median_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(low, high, achieved confidence): a distribution-free interval for the median from order
    statistics (no normality assumed: latency is skewed). With under 6 values no pair reaches 95 %;
    min..max is then returned with the confidence it really has (93.8 % for 5 values)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0:
        raise ValueError("median_interval needs at least one value")
    if n == 1:
        return float(x[0]), float(x[0]), 0.0

    def coverage(k: int) -> float:  # P(x_(k) <= median <= x_(n-k+1)), k 1-based
        return 1.0 - 2.0 * sum(comb(n, i) for i in range(k)) / 2.0 ** n

    k = 1
    while k + 1 <= n // 2 and coverage(k + 1) >= confidence:
        k += 1
    return float(x[k - 1]), float(x[n - k]), coverage(k)


def rounds_to_use(foreign: list[float | None], policy: StabilityPolicy, need: int) -> tuple[list[int], int]:
    """Indexes of the rounds to judge on, and how many rounds were loaded. Rounds in which other processes
    took more than the allowed CPU share are left out when enough clean ones remain; otherwise all
    rounds are used and the caller reports the load (the measurement is then unstable)."""
    clean = [i for i, f in enumerate(foreign) if f is None or f <= policy.max_foreign_load]
    loaded = len(foreign) - len(clean)
    return (clean if len(clean) >= need else list(range(len(foreign)))), loaded


def _round_medians(rounds: list[list[float]], use: list[int]) -> np.ndarray:
    return np.array([np.median(rounds[i]) for i in use], dtype=np.float64)


def _load_reasons(foreign: list[float | None], use: list[int], loaded: int, need: int,
                  policy: StabilityPolicy) -> list[tuple[str, str]]:
    """(short flag, full reason) pairs: the flag goes next to a latency in tables, the reason in notes."""
    reasons = []
    if loaded and len(use) == len(foreign):  # not enough clean rounds: the loaded ones were kept
        worst = max(f for f in foreign if f is not None)
        reasons.append((f"load {worst:.0%}", f"{loaded} of {len(foreign)} rounds ran while other processes used up "
                        f"to {worst:.0%} of the CPU (bound {policy.max_foreign_load:.0%}); {need} clean rounds needed"))
    if len(use) < MIN_ROUNDS:
        reasons.append((f"{len(use)} round(s)", f"only {len(use)} round(s): {MIN_ROUNDS} are needed to judge a latency"))
    return reasons


def _verdict(reasons: list[tuple[str, str]]) -> dict:
    return {"stable": not reasons, "flags": [f for f, _ in reasons], "reason": "; ".join(r for _, r in reasons)}


def _foreign_summary(foreign: list[float | None], use: list[int]) -> float | None:
    vals = [foreign[i] for i in use if foreign[i] is not None]
    return float(max(vals)) if vals else None


def _reference(ref_rounds: list[list[float]], foreign: list[float | None], policy: StabilityPolicy,
               need: int) -> tuple[dict, list[tuple[str, str]], list[int]]:
    """The reference's figures, what makes it unstable, and the rounds judged on."""
    use, loaded = rounds_to_use(foreign, policy, need)
    med = _round_medians(ref_rounds, use)
    drift = float(med.max() / med.min() - 1.0) if len(med) else 0.0
    reasons = _load_reasons(foreign, use, loaded, need, policy)
    if drift > policy.max_drift:
        reasons.append((f"drift {drift:.0%}", f"the reference drifted {drift:.0%} across rounds "
                        f"(bound {policy.max_drift:.0%})"))
    figures = {"reference_drift": drift, "foreign_load": _foreign_summary(foreign, use), "rounds_used": len(use),
               "rounds_measured": len(foreign), "rounds_loaded": loaded}
    return figures, reasons, use


def reference_stability(ref_rounds: list[list[float]], foreign: list[float | None], policy: StabilityPolicy,
                        need: int) -> dict:
    """Stability of the reference's own latency: its drift across rounds and the CPU others took."""
    figures, reasons, _ = _reference(ref_rounds, foreign, policy, need)
    return {**_verdict(reasons), **figures}


def ratio_stability(ref_rounds: list[list[float]], art_rounds: list[list[float]], foreign: list[float | None],
                    policy: StabilityPolicy, need: int) -> dict:
    """Speedup (reference / artifact) judged round by round: each round's ratio pairs two medians taken
    seconds apart, so a slow spell that hits both cancels; the interval of those ratios is what a
    speedup gate compares with its bound."""
    figures, reasons, use = _reference(ref_rounds, foreign, policy, need)
    ratios = _round_medians(ref_rounds, use) / _round_medians(art_rounds, use)
    speedup = float(np.median(ratios))
    low, high, conf = median_interval(ratios)
    spread = (high - low) / speedup if speedup > 0 else float("inf")
    if spread > policy.max_spread:
        reasons.append((f"spread {spread:.0%}", f"per-round speedups spread {spread:.0%} ({low:.3g}-{high:.3g}x; "
                        f"bound {policy.max_spread:.0%})"))
    return {**_verdict(reasons), **figures, "speedup": speedup, "speedup_low": low, "speedup_high": high,
            "confidence": conf, "spread": float(spread)}
