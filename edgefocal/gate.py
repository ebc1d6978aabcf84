"""Gates: the recipe's bounds checked against the figures of the requested artifacts.

A gate has three outcomes. `passed` and `failed` are verdicts; `inconclusive` means the figure was too
noisy to decide on (a latency measured while other processes took the CPU, or an interval that straddles
the bound). Whether an inconclusive gate fails the build is the recipe's choice (`gates.on_unstable`),
so `GateResult.passed` answers the one question the build asks — does this gate let it through?"""
from __future__ import annotations

from dataclasses import dataclass

from edgefocal.core import Row
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


def speedup_gate(gates: Gates, row: Row | dict) -> GateResult:
    """min_speedup at the smallest batch. With stability figures (verify/bench.py) it decides on the
    interval of the per-round ratios and only when the measurement was stable; a row without them (an
    old report, a benchmark run without a policy) is gated on the pooled ratio as before. A report.json
    row (a dict) is read with Row.from_dict."""
    row = _row(row)
    label, bound = row.label, gates.min_speedup
    speedups = row.speedup_vs_reference or {}
    if not speedups:
        return GateResult("min_speedup", label, None, bound, False)
    batch = min(speedups, key=int)
    value = speedups[batch]
    stab = (row.latency_stability or {}).get(batch)
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


def _row(row: Row | dict) -> Row:
    return row if isinstance(row, Row) else Row.from_dict(row)


def check_gates(gates: Gates, rows: list[Row] | list[dict]) -> list[GateResult]:
    """`rows` are the report rows of the requested artifacts (top1_drop in points, agreement,
    speedup_vs_reference keyed by batch size, latency_stability, skipped/required); report.json's dicts
    are read with Row.from_dict. The serving bounds (verify/serving.py's figures) are `serving_gates`."""
    results = []
    for row in map(_row, rows):
        label = row.label
        if row.skipped:
            if row.required:
                results.append(GateResult("required artifact built", label, None, row.skipped, False))
            continue
        pruned = row.agreement_vs_pruned is not None  # a pruned build: these gates bound INT8's share
        if gates.max_top1_drop is not None:
            v = row.top1_drop_vs_pruned if pruned else row.top1_drop
            results.append(GateResult("max_top1_drop", label, v, gates.max_top1_drop,
                                      v is not None and v <= gates.max_top1_drop,
                                      detail=_int8_share(row.top1_drop, "+.2f", " pt") if pruned else ""))
        if gates.min_agreement is not None:
            v = row.agreement_vs_pruned if pruned else row.agreement
            results.append(GateResult("min_agreement", label, v, gates.min_agreement,
                                      v is not None and v >= gates.min_agreement,
                                      detail=_int8_share(row.agreement, ".4f") if pruned else ""))
        if gates.min_speedup is not None:
            results.append(speedup_gate(gates, row))
        results += serving_gates(gates, row)
    return results


def _int8_share(total: float | None, spec: str, unit: str = "") -> str:
    total_text = "missing" if total is None else format(total, spec) + unit
    return f"INT8's share, against the pruned FP32 model; with pruning's, against the reference: {total_text}"


def prune_gates(gates: Gates, rows: list[Row] | list[dict]) -> list[GateResult]:
    """Pruning's share of a pruned build's cost (gates.prune_max_top1_drop, gates.prune_min_agreement), judged on the
    pruned FP32 row against the unpruned reference; check_gates judges INT8's share on top. Nothing for a
    build that did not prune."""
    from edgefocal.verify.compare import PRUNED

    row = next((r for r in map(_row, rows) if r.label == PRUNED), None)
    if row is None:
        return []
    what = "what pruning cost: the pruned FP32 model against the unpruned reference"
    out = []
    if gates.prune_max_top1_drop is not None:
        v = row.top1_drop
        out.append(GateResult("prune_max_top1_drop", row.label, v, gates.prune_max_top1_drop,
                              v is not None and v <= gates.prune_max_top1_drop, detail=what))
    if gates.prune_min_agreement is not None:
        v = row.agreement
        out.append(GateResult("prune_min_agreement", row.label, v, gates.prune_min_agreement,
                              v is not None and v >= gates.prune_min_agreement, detail=what))
    return out


# --- serving: cold start and memory are judged over their runs, like latency over its rounds: pass only when
# every run is within the bound, fail only when every run is past it, otherwise inconclusive ---

def at_most_verdict(low: float, high: float, bound: float) -> str:
    """For an at-most bound: pass only if the whole interval is within it, fail only if all of it is past."""
    if high <= bound:
        return PASSED
    if low > bound:
        return FAILED
    return INCONCLUSIVE


def str_keys(d: dict | None) -> dict[str, object]:
    """Batch-keyed figures with str keys (a report in memory has int keys, a loaded report.json str)."""
    return {str(k): v for k, v in (d or {}).items()}


def largest_batch(row: Row) -> str | None:
    batches = str_keys(row.serving_memory_mb)
    return max(batches, key=int) if batches else None


def runs(row: Row, key: str, batch: str | None = None) -> list[float]:
    """The per-run figures behind a median (empty for a report without them)."""
    values = row.facts.get(key)
    if batch is not None:
        values = str_keys(values).get(batch)
    return [float(v) for v in values or []]


def bound_gate(gates: Gates, name: str, row: Row, value: float | None, per_run: list[float], bound: float,
               what: str) -> GateResult:
    if value is None:
        return GateResult(name, row.label, None, bound, False, detail=row.serving_note or f"{what} not measured")
    low, high = (min(per_run), max(per_run)) if per_run else (value, value)
    detail = f"{what} {value:.4g}, median of {len(per_run) or 1} runs ({low:.4g}-{high:.4g})"
    verdict = at_most_verdict(low, high, bound)
    if verdict == INCONCLUSIVE:
        return inconclusive(name, row.label, value, bound, gates, detail + ": the runs straddle the bound")
    return GateResult(name, row.label, value, bound, verdict == PASSED, verdict, detail=detail)


def consistency_gate(row: Row) -> GateResult:
    c = row.consistency or {}
    detail = (f"top-1 at batch 1 and batch {c.get('batch')}: {c.get('mismatches')} of {c.get('images')} images "
              f"differ, max logit gap {c.get('max_logit_gap', 0):.3g}; two passes "
              + ("identical" if c.get("repeatable") else "NOT identical"))
    ok = bool(c.get("consistent")) and bool(c.get("repeatable"))
    return GateResult("require_consistent_batches", row.label, float(c.get("mismatches", 0)), 0, ok, detail=detail)


def serving_gates(gates: Gates, row: Row) -> list[GateResult]:
    """The absolute serving bounds on one requested, not skipped, row."""
    out = []
    if gates.max_cold_start_ms is not None:
        out.append(bound_gate(gates, "max_cold_start_ms", row, row.cold_start_ms, runs(row, "cold_start_runs_ms"),
                              gates.max_cold_start_ms, "cold start ms"))
    if gates.max_serving_memory_mb is not None:
        batch = largest_batch(row)
        value = str_keys(row.serving_memory_mb).get(batch) if batch else None
        out.append(bound_gate(gates, "max_serving_memory_mb", row, value,
                              runs(row, "serving_memory_runs_mb", batch), gates.max_serving_memory_mb,
                              f"peak memory MB serving batch {batch}"))
    if gates.require_consistent_batches and row.consistency:
        out.append(consistency_gate(row))
    return out


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
