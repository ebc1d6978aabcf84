"""Latency of several runners, measured side by side.

This machine is shared and noisy, so runners are timed interleaved: each round times every runner in
turn on the same batch, and the percentiles pool all rounds. A slow spell then hits every runner alike
and the speedup ratios stay honest."""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgefocal.targets.base import Runner
from edgefocal.verify.metrics import percentiles


def benchmark(runners: dict[str, Runner], sample: np.ndarray, batch_sizes: list[int], warmup: int,
              iterations: int, rounds: int, advance: Callable[[int], None] | None = None) -> dict[str, dict]:
    """{name: {batch: {"p50","p90","p99","mean","throughput"}}}; ms per batch, images/s."""
    results: dict[str, dict] = {name: {} for name in runners}
    per_round = max(1, iterations // rounds)
    for batch in batch_sizes:
        reps = int(np.ceil(batch / len(sample)))
        x = np.ascontiguousarray(np.concatenate([sample] * reps)[:batch])
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for runner in runners.values():
            runner.timed_infer(x, warmup)  # first calls compile kernels, fill caches, wake clocks
        for _ in range(rounds):
            for name, runner in runners.items():
                samples[name].extend(runner.timed_infer(x, per_round))
                if advance:
                    advance(1)
        for name, s in samples.items():
            stats = percentiles(s)
            stats["mean"] = float(np.mean(s))
            stats["throughput"] = batch * 1e3 / stats["p50"]
            results[name][batch] = stats
    return results
