"""Serving regression gates (verify/serving.py's figures against a baseline report, for baseline.py): memory
growth and cold-start regression, each as the ratio to the same run's FP32 reference, never megabytes or
milliseconds across runs. Decided like the latency gates, on the interval of the per-run ratios: within
the ceiling passes, all past it fails, straddling it is `inconclusive` (gates.on_unstable decides). A cold
start is a time: from fewer runs than the latency gates' MIN_ROUNDS it is `inconclusive` too (one run of an
identical build read +74 % while another test loaded the machine). A row without the figures (a report of
schema ≤ 2) is not compared. The absolute serving bounds are gate.py's."""
from __future__ import annotations

from edgefocal.core import Row
from edgefocal.gate import INCONCLUSIVE, PASSED, GateResult, at_most_verdict, inconclusive, runs, str_keys
from edgefocal.recipe import Gates
from edgefocal.verify.stability import MIN_ROUNDS


def ratio_gate(gates: Gates, name: str, label: str, what: str, old: tuple, new: tuple, new_runs: tuple,
               bound: float, min_runs: int = 1) -> GateResult | None:
    """`new` = (figure, the reference's figure) may exceed the baseline's ratio `old` by at most `bound`;
    decided on the interval of the per-run ratios `new_runs` = (figure runs, reference runs), and only
    when each side has `min_runs` runs."""
    if None in old or None in new or not old[1] or not new[1] or not old[0]:
        return None
    old_ratio, new_ratio = old[0] / old[1], new[0] / new[1]
    growth, ceiling = new_ratio / old_ratio - 1.0, old_ratio * (1.0 + bound)
    art, ref = new_runs
    low, high = (min(art) / max(ref), max(art) / min(ref)) if art and ref else (new_ratio, new_ratio)
    detail = (f"{what} {new[0]:.4g} = {new_ratio:.3g}x the reference now, {old_ratio:.3g}x in the baseline "
              f"({growth:+.1%}); ceiling {ceiling:.3g}x; per-run {low:.3g}-{high:.3g}x")
    fewest_runs = min(len(art), len(ref))
    if art and ref and fewest_runs < min_runs:
        few = f" from {fewest_runs} run(s), fewer than the {min_runs} it needs"
        return inconclusive(name, label, growth, bound, gates, detail + few, old_ratio)
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
        old_mem, new_mem = str_keys(old.serving_memory_mb), str_keys(new.serving_memory_mb)
        old_rm, new_rm = str_keys(old_ref.serving_memory_mb), str_keys(new_ref.serving_memory_mb)
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
                       gates.max_cold_start_regression, min_runs=MIN_ROUNDS)
        out += [g] if g is not None else []
    return out


def serving_delta(old: Row, new: Row) -> dict:
    """Before/after serving figures of one compared artifact (report.json's baseline deltas)."""
    old_mem, new_mem = str_keys(old.serving_memory_mb), str_keys(new.serving_memory_mb)
    return {"cold_start_ms": [old.cold_start_ms, new.cold_start_ms],
            "first_inference_ms": [old.first_inference_ms, new.first_inference_ms],
            "serving_memory_mb": {b: [old_mem.get(b), new_mem.get(b)] for b in new_mem},
            "consistent": [(old.consistency or {}).get("consistent"), (new.consistency or {}).get("consistent")]}
