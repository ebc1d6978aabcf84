"""Gates: the recipe's bounds checked against the figures of the requested artifacts.

A gate has three outcomes. `passed` and `failed` are verdicts; `inconclusive` means the figure was too
noisy to decide on (a latency measured while other processes took the CPU, or an interval that straddles
the bound). Whether an inconclusive gate fails the build is the recipe's choice (`gates.on_unstable`),
so `GateResult.passed` answers the one question the build asks — does this gate let it through?"""
from __future__ import annotations

from dataclasses import dataclass

from edgefocal.recipe import Gates

PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"


@dataclass
class GateResult:
    gate: str
    artifact: str
    value: float | None
    bound: float | str
    passed: bool
    status: str = ""  # passed | failed | inconclusive; derived from `passed` when left empty
    baseline: float | None = None  # the same figure in the baseline report, for regression gates
    detail: str = ""  # why a gate is inconclusive, or what the figure is made of

    def __post_init__(self):
        if not self.status:
            self.status = PASSED if self.passed else FAILED

    def describe(self) -> str:
        value = "missing" if self.value is None else f"{self.value:.4g}"
        base = "" if self.baseline is None else f", baseline {self.baseline:.4g}"
        verdict = {PASSED: "ok", FAILED: "FAILED"}.get(self.status, "INCONCLUSIVE" + ("" if self.passed else " (fails)"))
        text = f"{self.gate} for {self.artifact}: {value} (bound {self.bound}{base}) {verdict}"
        return text + (f" — {self.detail}" if self.detail else "")


def inconclusive(gate: str, artifact: str, value, bound, gates: Gates, detail: str,
                 baseline: float | None = None) -> GateResult:
    """A gate that could not decide; it lets the build through only when `on_unstable` is warn."""
    return GateResult(gate, artifact, value, bound, gates.on_unstable == "warn", INCONCLUSIVE, baseline, detail)


def interval_verdict(low: float, high: float, bound: float) -> str:
    """For an at-least bound: pass only if the whole interval clears it, fail only if the whole interval
    is below it; an interval straddling the bound decides nothing."""
    if low >= bound:
        return PASSED
    if high < bound:
        return FAILED
    return INCONCLUSIVE


def speedup_gate(gates: Gates, row: dict) -> GateResult:
    """min_speedup at the smallest batch. With stability figures (verify/bench.py) it decides on the
    interval of the per-round ratios and only when the measurement was stable; a row without them (an
    old report, a benchmark run without a policy) is gated on the pooled ratio as before."""
    label, bound = row["label"], gates.min_speedup
    speedups = row.get("speedup_vs_reference") or {}
    if not speedups:
        return GateResult("min_speedup", label, None, bound, False)
    batch = min(speedups, key=int)
    value = speedups[batch]
    stab = (row.get("latency_stability") or {}).get(batch)
    if stab is None:
        return GateResult("min_speedup", label, value, bound, value >= bound)
    low, high = stab["speedup_low"], stab["speedup_high"]
    where = f"per-round speedup {low:.3g}-{high:.3g}x over {stab['rounds_used']} rounds"
    if not stab["stable"]:
        return inconclusive("min_speedup", label, value, bound, gates, f"unstable: {stab['reason']}")
    verdict = interval_verdict(low, high, bound)
    if verdict == INCONCLUSIVE:
        return inconclusive("min_speedup", label, value, bound, gates, f"{where} straddles the bound")
    return GateResult("min_speedup", label, value, bound, verdict == PASSED, verdict, detail=where)


def check_gates(gates: Gates, rows: list[dict]) -> list[GateResult]:
    """`rows` are report rows of the requested artifacts (top1_drop in points, agreement,
    speedup_vs_reference keyed by batch size, latency_stability, skipped/required)."""
    results = []
    for row in rows:
        label = row["label"]
        if row.get("skipped"):
            if row.get("required"):
                results.append(GateResult("required artifact built", label, None, row["skipped"], False))
            continue
        if gates.max_top1_drop is not None:
            v = row.get("top1_drop")
            results.append(GateResult("max_top1_drop", label, v, gates.max_top1_drop,
                                      v is not None and v <= gates.max_top1_drop))
        if gates.min_agreement is not None:
            v = row.get("agreement")
            results.append(GateResult("min_agreement", label, v, gates.min_agreement,
                                      v is not None and v >= gates.min_agreement))
        if gates.min_speedup is not None:
            results.append(speedup_gate(gates, row))
    return results


def counts(results: list[GateResult]) -> dict[str, int]:
    """How many gates passed, failed and were inconclusive: the headline of a summary."""
    out = {PASSED: 0, FAILED: 0, INCONCLUSIVE: 0}
    for g in results:
        out[g.status] += 1
    return out


def from_dict(d: dict) -> GateResult:
    """A GateResult back from report.json's "gates" list (older reports lack status/baseline/detail)."""
    return GateResult(d["gate"], d["artifact"], d.get("value"), d.get("bound"), bool(d["passed"]),
                      d.get("status", ""), d.get("baseline"), d.get("detail", ""))
