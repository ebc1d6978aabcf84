"""The verify stage: every artifact's runner and the FP32 torch reference on the same eval images, then
latency side by side, into one report row each.

The reference is a runner like any other (targets/torch_ref.py), so verification compares runners and
never special-cases a backend; its logits are what agreement and the top-1 drop are measured against."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgefocal.outputs import artifact_size
from edgefocal.progress import Progress
from edgefocal.targets.base import Artifact, Runner
from edgefocal.verify.bench import benchmark, row_fields
from edgefocal.verify.evaluate import predict
from edgefocal.verify.metrics import compare

REFERENCE = "torch fp32 (reference)"
PRUNED = "torch fp32 (pruned)"


@dataclass
class Subject:
    """One row of the report and the runner that produces its logits (None: not run on this machine)."""

    row: dict
    runner: Runner | None


def torch_subjects(reference: Runner, pruned: Runner | None) -> list[Subject]:
    """The FP32 reference (always first) and, after pruning, the pruned FP32 model: what pruning cost."""
    out = [Subject({"label": REFERENCE, "target": "torch", "precision": "fp32", "requested": False}, reference)]
    if pruned is not None:
        out.append(Subject({"label": PRUNED, "target": "torch", "precision": "fp32", "requested": False}, pruned))
    return out


def artifact_subject(art: Artifact, workdir: Path) -> Subject:
    row = {"label": art.label, "target": art.target, "precision": art.precision,
           "path": str(art.path.relative_to(workdir)),
           "size_bytes": artifact_size(art.path) if art.path.exists() else None,
           "requested": art.requested, "skipped": art.skipped, **art.info}
    runner = art.make_runner() if art.make_runner is not None and not art.skipped else None
    return Subject(row, runner)


def verify(subjects: list[Subject], images, labels, bench, progress: Progress | None = None,
           stability=None) -> list[dict]:
    """Accuracy vs the first subject (the reference) and interleaved latency; returns the report rows.
    With a `stability` policy (verify/stability.py) unstable latencies are re-measured and judged."""
    progress = progress or Progress()
    running = [s for s in subjects if s.runner is not None]
    for s in running:
        s.runner.load()
        s.row["device"] = s.runner.device
    try:
        with progress.task("evaluate", len(images) * len(running)) as advance:
            logits = [predict(s.runner, images, advance=advance) for s in running]
        for s, lg in zip(running, logits):
            s.row.update(compare(lg, logits[0], labels))
        timed = {s.row["label"]: s.runner for s in running if not s.row.get("no_latency")}
        with progress.task("benchmark", len(bench.batch_sizes) * bench.rounds * len(timed)) as advance:
            latency = benchmark(timed, images[:max(bench.batch_sizes)], bench.batch_sizes, bench.warmup,
                                bench.iterations, bench.rounds, advance, reference=running[0].row["label"],
                                policy=stability)
    finally:
        for s in running:
            s.runner.close()
    for s in running:
        if s.row["label"] in latency:
            s.row.update(row_fields(latency, s.row["label"], running[0].row["label"]))
    return [s.row for s in subjects]
