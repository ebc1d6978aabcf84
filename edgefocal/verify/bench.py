"""Latency of several runners, measured side by side.

This machine is shared and noisy, so runners are timed interleaved: each round times every runner in
turn on the same batch. A slow spell then hits every runner alike and the speedup ratios stay honest —
unless the slow spell is another process taking the cores, which slows runners unequally. So every
round also records the CPU share other processes took (verify/cpuload.py); with a reference and a
policy, rounds are judged (verify/stability.py), loaded rounds are left out, and more rounds are run,
up to a bound, until the ratios are stable. What stays unstable is reported as such, and the gates
call it inconclusive instead of passing or failing on noise."""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgefocal.core import Runner
from edgefocal.verify.cpuload import ForeignLoad
from edgefocal.metrics import percentiles
from edgefocal.verify.stability import (MIN_ROUNDS, StabilityPolicy, ratio_stability, reference_stability,
                                        rounds_to_use)


class _Rounds:
    """Per runner, the ms samples of each round; per round, the foreign CPU load."""

    def __init__(self, names):
        self.samples: dict[str, list[list[float]]] = {n: [] for n in names}
        self.foreign: list[float | None] = []

    def run(self, runners: dict[str, Runner], x: np.ndarray, repeats: int, probe: ForeignLoad, advance) -> None:
        probe.start()
        for name in round_order(list(runners), len(self.foreign)):
            self.samples[name].append(runners[name].timed_infer(x, repeats))
            if advance:
                advance(1)
        self.foreign.append(probe.stop())


def round_order(names: list[str], round_index: int) -> list[str]:
    """The order runners are timed in during round `round_index`: the first (the reference) first, then the
    others rotated by one place per round, so that no runner always holds the same slot. A slot's time
    depends on what ran before it (caches, the previous runtime's threads still spinning). Measured with
    peers.py's line-up on the 30 %-pruned default (torch, edgefocal's OpenVINO INT8, two ONNX Runtime
    sessions, plain NNCF's IR, ...; 2 threads, 3 runs of 5 rounds each): the IR in the slot after torch took
    0.99× the time of the IR in plain NNCF's slot when it was edgefocal's and 1.20× when it was plain
    NNCF's, so the same IR was ~10 % slower in the first slot (side by side alone, edgefocal's is 0.90×).
    Rotated: 0.94× and 1/1.13 = 0.88×."""
    first, others = names[:1], names[1:]
    shift = round_index % len(others) if others else 0
    return first + others[shift:] + others[:shift]


def _judge(rounds: _Rounds, reference: str, policy: StabilityPolicy, need: int) -> dict[str, dict]:
    ref = rounds.samples[reference]
    return {name: (reference_stability(ref, rounds.foreign, policy, need) if name == reference
                   else ratio_stability(ref, s, rounds.foreign, policy, need))
            for name, s in rounds.samples.items()}


def _stats(per_round: list[list[float]], use: list[int], batch: int, foreign: list) -> dict:
    pooled = [v for i in use for v in per_round[i]]
    stats = percentiles(pooled)
    stats["mean"] = float(np.mean(pooled))
    stats["throughput"] = batch * 1e3 / stats["p50"]
    stats["samples_ms"] = pooled
    stats["round_medians_ms"] = [float(np.median(r)) for r in per_round]
    stats["round_foreign_load"] = list(foreign)
    stats["rounds_used"] = list(use)
    return stats


def benchmark(runners: dict[str, Runner], sample: np.ndarray, batch_sizes: list[int], warmup: int,
              iterations: int, rounds: int, advance: Callable[[int], None] | None = None, *,
              reference: str | None = None, policy: StabilityPolicy | None = None,
              gmacs_per_image: float | None = None, max_gmacs: float | None = None) -> dict[str, dict]:
    """{name: {batch: {"p50","p90","p99","mean","throughput","samples_ms","round_medians_ms",
    "round_foreign_load","rounds_used"[, "stability"]}}}; ms per batch, images/s.

    With the model's `gmacs_per_image` and `max_gmacs`, each batch size's warmup and timed runs are bounded
    by MACs (`bounded_counts`).

    With `reference` (a key of `runners`) and `policy`, each batch size is re-measured round by round
    (at most `policy.max_rounds` rounds) until every ratio to the reference is stable, the percentiles
    pool only the rounds judged on, and each entry carries "stability" (see verify/stability.py)."""
    judge = reference is not None and policy is not None
    if judge and reference not in runners:
        raise ValueError(f"reference {reference!r} is not one of the runners {list(runners)}")
    results: dict[str, dict] = {name: {} for name in runners}
    need = max(rounds, MIN_ROUNDS)
    probe = ForeignLoad()
    for batch in batch_sizes:
        batch_warmup, batch_iterations = bounded_counts(warmup, iterations, rounds, batch, gmacs_per_image, max_gmacs)
        per_round = max(1, batch_iterations // rounds)
        reps = int(np.ceil(batch / len(sample)))
        x = np.ascontiguousarray(np.concatenate([sample] * reps)[:batch])
        for runner in runners.values():
            runner.timed_infer(x, batch_warmup)  # first calls compile kernels, fill caches, wake clocks
        measured = _Rounds(runners)
        for _ in range(rounds):
            measured.run(runners, x, per_round, probe, advance)
        verdicts = _judge(measured, reference, policy, need) if judge else {}
        while judge and len(measured.foreign) < policy.max_rounds and not all(v["stable"] for v in verdicts.values()):
            measured.run(runners, x, per_round, probe, advance)
            verdicts = _judge(measured, reference, policy, need)
        use = rounds_to_use(measured.foreign, policy, need)[0] if judge else list(range(len(measured.foreign)))
        for name, per in measured.samples.items():
            results[name][batch] = _stats(per, use, batch, measured.foreign)
            if judge:
                results[name][batch]["stability"] = verdicts[name]
    return results


def bounded_counts(warmup: int, iterations: int, rounds: int, batch: int, gmacs_per_image: float | None,
                   max_gmacs: float | None) -> tuple[int, int]:
    """(warmup, iterations) for one batch size, scaled down so one runner spends at most `max_gmacs` on it:
    at 224² (4.4 GMACs an image) the recipe's 60 runs at batch 8 take a minute per runner on 2 cores, and the
    ratios need rounds, not long ones. Decided by MACs, never by a clock, so a busy machine measures the same
    runs; at least one warmup and 2 runs per round."""
    if not gmacs_per_image or not max_gmacs:
        return warmup, iterations
    scale = min(1.0, max_gmacs / (gmacs_per_image * batch * max(1, warmup + iterations)))
    return max(min(warmup, 1), round(warmup * scale)), min(iterations, max(2 * rounds, int(iterations * scale)))


def row_fields(results: dict[str, dict], name: str, reference: str) -> dict:
    """The latency fields of one report row, from `benchmark`'s results (Row.update sets them): what the
    pipeline stores in report.json (and report.html plots). `speedup_interval` and `latency_stability` exist only when the
    benchmark judged stability."""
    per_batch, ref = results[name], results[reference]
    out = {
        "latency_ms": {bs: {k: s[k] for k in ("p50", "p90", "p99", "mean")} for bs, s in per_batch.items()},
        "throughput": {bs: s["throughput"] for bs, s in per_batch.items()},
        "speedup_vs_reference": {bs: ref[bs]["p50"] / s["p50"] for bs, s in per_batch.items()},
        "latency_samples_ms": {bs: s["samples_ms"] for bs, s in per_batch.items()},
        "latency_rounds_ms": {bs: s["round_medians_ms"] for bs, s in per_batch.items()},
        "foreign_load": {bs: s["round_foreign_load"] for bs, s in per_batch.items()},
    }
    if all("stability" in s for s in per_batch.values()):
        out["latency_stability"] = {bs: s["stability"] for bs, s in per_batch.items()}
        if name != reference:
            out["speedup_interval"] = {bs: [s["stability"]["speedup_low"], s["stability"]["speedup_high"]]
                                       for bs, s in per_batch.items()}
    return out
