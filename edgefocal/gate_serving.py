"""The serving gates (verify/serving.py's figures): cold start and serving memory against absolute bounds,
batch consistency, and, against a baseline, memory growth and cold-start regression.

Cold start and memory move between runs, so they are judged like the latency gates: on the interval of
the per-run figures (facts cold_start_runs_ms, serving_memory_runs_mb), passing only when the whole
interval is within the bound, failing only when all of it is past it, and otherwise `inconclusive`
(gates.on_unstable decides what that does to the build). Against a baseline they are compared as the
ratio to the same run's FP32 reference, never as milliseconds or megabytes across runs. A row without the
figures (a report of schema ≤ 2, a row measured nowhere) is not compared."""
from __future__ import annotations

from edgefocal.core import Row
from edgefocal.gate import FAILED, INCONCLUSIVE, PASSED, GateResult, inconclusive
from edgefocal.recipe import Gates


def at_most_verdict(low: float, high: float, bound: float) -> str:
    """For an at-most bound: pass only if the whole interval is within it, fail only if all of it is past."""
    if high <= bound:
        return PASSED
    if low > bound:
        return FAILED
    return INCONCLUSIVE


def by_batch(d: dict | None) -> dict[str, object]:
    return {str(k): v for k, v in (d or {}).items()}


def largest_batch(row: Row) -> str | None:
    batches = by_batch(row.serving_memory_mb)
    return max(batches, key=int) if batches else None


def runs(row: Row, key: str, batch: str | None = None) -> list[float]:
    """The per-run figures behind a median (empty for a report without them)."""
    values = row.facts.get(key)
    if batch is not None:
        values = by_batch(values).get(batch)
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
        value = by_batch(row.serving_memory_mb).get(batch) if batch else None
        out.append(bound_gate(gates, "max_serving_memory_mb", row, value,
                              runs(row, "serving_memory_runs_mb", batch), gates.max_serving_memory_mb,
                              f"peak memory MB serving batch {batch}"))
    if gates.require_consistent_batches and row.consistency:
        out.append(consistency_gate(row))
    return out


def ratio_gate(gates: Gates, name: str, label: str, what: str, old: tuple, new: tuple, new_runs: tuple,
               bound: float) -> GateResult | None:
    """`new` = (figure, the reference's figure) may exceed the baseline's ratio `old` by at most `bound`;
    decided on the interval of the per-run ratios `new_runs` = (figure runs, reference runs)."""
    if None in old or None in new or not old[1] or not new[1] or not old[0]:
        return None
    old_ratio, new_ratio = old[0] / old[1], new[0] / new[1]
    growth, ceiling = new_ratio / old_ratio - 1.0, old_ratio * (1.0 + bound)
    art, ref = new_runs
    low, high = (min(art) / max(ref), max(art) / min(ref)) if art and ref else (new_ratio, new_ratio)
    detail = (f"{what} {new[0]:.4g} = {new_ratio:.3g}x the reference now, {old_ratio:.3g}x in the baseline "
              f"({growth:+.1%}); ceiling {ceiling:.3g}x; per-run {low:.3g}-{high:.3g}x")
    verdict = at_most_verdict(low, high, ceiling)
    if verdict == INCONCLUSIVE:
        return inconclusive(name, label, growth, bound, gates, detail + " straddles the ceiling", old_ratio)
    return GateResult(name, label, growth, bound, verdict == PASSED, verdict, old_ratio, detail)


def serving_regressions(gates: Gates, label: str, old: Row, new: Row, old_ref: Row | None, new_ref: Row | None,
                        latency: bool) -> list[GateResult]:
    """Memory growth per batch and cold-start regression of one artifact against the baseline; cold start
    only where latency compares (same machine class and threads): it is a time."""
    if old_ref is None or new_ref is None:
        return []
    out = []
    if gates.max_memory_growth is not None:
        old_mem, new_mem = by_batch(old.serving_memory_mb), by_batch(new.serving_memory_mb)
        old_rm, new_rm = by_batch(old_ref.serving_memory_mb), by_batch(new_ref.serving_memory_mb)
        for b in sorted(new_mem, key=int):
            g = ratio_gate(gates, f"max_memory_growth b{b}", label, f"peak memory MB serving batch {b}",
                           (old_mem.get(b), old_rm.get(b)), (new_mem.get(b), new_rm.get(b)),
                           (runs(new, "serving_memory_runs_mb", b), runs(new_ref, "serving_memory_runs_mb", b)),
                           gates.max_memory_growth)
            out += [g] if g is not None else []
    if latency and gates.max_cold_start_regression is not None:
        g = ratio_gate(gates, "max_cold_start_regression", label, "cold start ms",
                       (old.cold_start_ms, old_ref.cold_start_ms), (new.cold_start_ms, new_ref.cold_start_ms),
                       (runs(new, "cold_start_runs_ms"), runs(new_ref, "cold_start_runs_ms")),
                       gates.max_cold_start_regression)
        out += [g] if g is not None else []
    return out


def serving_delta(old: Row, new: Row) -> dict:
    """Before/after serving figures of one compared artifact (report.json's baseline deltas)."""
    old_mem, new_mem = by_batch(old.serving_memory_mb), by_batch(new.serving_memory_mb)
    return {"cold_start_ms": [old.cold_start_ms, new.cold_start_ms],
            "first_inference_ms": [old.first_inference_ms, new.first_inference_ms],
            "serving_memory_mb": {b: [old_mem.get(b), new_mem.get(b)] for b in new_mem},
            "consistent": [(old.consistency or {}).get("consistent"), (new.consistency or {}).get("consistent")]}
