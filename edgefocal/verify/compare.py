"""The verify stage: every artifact's runner and the FP32 torch reference on the same eval images, then
latency side by side, into one report row each.

The reference is a runner like any other (backends/torch), so verification compares runners and
never special-cases a backend; its logits are what agreement and the top-1 drop are measured against."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefocal.outputs import artifact_size
from edgefocal.progress import Progress
from edgefocal.core import Artifact, Row, Runner
from edgefocal.verify.bench import benchmark, row_fields
from edgefocal.heap import release_freed_memory
from edgefocal.imagestore import rows_of
from edgefocal.verify.evaluate import predict
from edgefocal.metrics import compare

REFERENCE = "torch fp32 (reference)"
PRUNED = "torch fp32 (pruned)"
CPU_BASELINE = "torch fp32 (CPU baseline)"


@dataclass
class Subject:
    """One row of the report and the runner that produces its logits (None: not run on this machine)."""

    row: Row
    runner: Runner | None


def torch_subjects(reference: Runner, pruned: Runner | None, cpu_baseline: Runner | None = None) -> list[Subject]:
    """The FP32 reference (always first) and, after pruning, the pruned FP32 model: what pruning cost. With a
    GPU reference, `cpu_baseline` is the same FP32 model on the CPU, which CPU runners' speedups are taken
    against (`latency_groups`)."""
    out = [Subject(Row(REFERENCE, "torch", "fp32"), reference)]
    if cpu_baseline is not None:
        out.append(Subject(Row(CPU_BASELINE, "torch", "fp32",
                               notes=["the reference runs on the GPU: speedups of runners on the CPU are "
                                      "taken against this row, the GPU runners' against the reference"]),
                           cpu_baseline))
    if pruned is not None:
        out.append(Subject(Row(PRUNED, "torch", "fp32"), pruned))
    return out


def artifact_subject(art: Artifact, workdir: Path) -> Subject:
    from edgefocal.backends import files_of

    flags = {k: v for k, v in (("variant", art.variant), ("required", art.required), ("no_latency", art.no_latency),
                               ("proxy_for", art.proxy_for)) if v}
    row = Row.from_dict({  # the backend's facts flat, as report.json has them: a fact named like a field sets it
        "label": art.label, "target": art.target, "precision": art.precision,
        "path": str(art.path.relative_to(workdir)),
        "size_bytes": artifact_size(files_of(art.target, art.path)) if art.path.exists() else None,
        "requested": art.requested, "skipped": art.skipped, **art.info, **flags})
    runner = art.make_runner() if art.make_runner is not None and not art.skipped else None
    return Subject(row, runner)


def latency_groups(running: list[Subject]) -> dict[str, list[Subject]]:
    """{baseline label: the subjects timed and compared with it}. One group, the reference's, unless a CPU
    baseline runs beside a GPU reference: then runners not on the GPU (`on_gpu`, set by the torch and
    TensorRT runners) form the CPU baseline's group, so a CPU target's speedup stays CPU against CPU."""
    ref = running[0].row.label
    has_cpu = any(s.row.label == CPU_BASELINE for s in running)
    groups: dict[str, list[Subject]] = {ref: []}
    for s in running:
        on_cpu = not getattr(s.runner, "on_gpu", False)
        groups.setdefault(CPU_BASELINE if has_cpu and on_cpu and s is not running[0] else ref, []).append(s)
    return groups


def _eval_images(subject: Subject, images, unrequested: int | None):
    """The eval images a subject is checked on: all of them, or for an artifact the build makes but does not
    gate (an INT8 build's FP32 ones) the first `unrequested` (bench.unrequested_images), noted on its row."""
    row = subject.row
    if row.requested or row.path is None or unrequested is None or unrequested >= len(images):
        return images
    row.eval_images = unrequested
    row.notes.append(f"accuracy on the first {unrequested} of {len(images)} eval images: not requested, so not "
                     f"gated (bench.unrequested_images)")
    return rows_of(images, 0, unrequested)  # a view: read a batch at a time, as the whole set is


def _evaluated(subject: Subject, images, advance) -> np.ndarray:
    """The subject's logits over the eval set, with only its own runner loaded: at 224² a runtime's buffers at
    the eval batch take gigabytes, so holding every runner's at once would bound the build by their sum. Its
    wall time is kept on the row (the report says how long each artifact's evaluation took)."""
    runner = subject.runner
    assert runner is not None  # verify passes only subjects that run here
    runner.load()
    try:
        subject.row.device = runner.device
        started = time.perf_counter()
        logits = predict(runner, images, advance=advance)
        subject.row.eval_seconds = round(time.perf_counter() - started, 2)
    finally:
        runner.close()
        release_freed_memory()  # or the next runner's buffers come on top of this one's freed, fragmented heap
    return logits


def _shares_of_pruning(running: list[Subject], logits: list[np.ndarray], labels) -> None:
    """In a pruned build, every artifact's figures against the pruned FP32 model too: the reference row says
    what pruning and INT8 cost together, these what INT8 cost on top of pruning (gate.py judges each share)."""
    pruned = next((lg for s, lg in zip(running, logits) if s.row.label == PRUNED), None)
    if pruned is None:
        return
    for s, lg in zip(running, logits):
        if s.row.path is not None:
            share = compare(lg, pruned[:len(lg)], labels[:len(lg)])
            s.row.update({"top1_drop_vs_pruned": share["top1_drop"], "agreement_vs_pruned": share["agreement"]})


def verify(subjects: list[Subject], images, labels, bench, progress: Progress | None = None,
           stability=None, gmacs_per_image: float | None = None) -> list[Row]:
    """Accuracy vs the first subject (the reference) and interleaved latency; returns the report rows.
    With a `stability` policy (verify/stability.py) unstable latencies are re-measured and judged; with the
    model's `gmacs_per_image` a heavy model's benchmark runs are bounded (bench.max_gmacs)."""
    progress = progress or Progress()
    running = [s for s in subjects if s.runner is not None]
    checked = [_eval_images(s, images, bench.unrequested_images) for s in running]
    with progress.task("evaluate", sum(len(c) for c in checked)) as advance:
        logits = [_evaluated(s, c, advance) for s, c in zip(running, checked)]
    for s, lg in zip(running, logits):
        s.row.update(compare(lg, logits[0][:len(lg)], labels[:len(lg)]))
    _shares_of_pruning(running, logits, labels)
    groups = latency_groups([s for s in running if not s.row.no_latency])
    latency: dict[str, dict] = {}
    timed = [s for group in groups.values() for s in group]
    try:
        for s in timed:  # loaded afresh: the benchmark interleaves them, at its own (small) batch sizes
            s.runner.load()
        total = len(bench.batch_sizes) * bench.rounds * len(timed)
        with progress.task("benchmark", total) as advance:
            for base, group in groups.items():  # each group interleaved with its own baseline
                runners = {s.row.label: s.runner for s in group}
                latency[base] = benchmark(runners, images[:max(bench.batch_sizes)], bench.batch_sizes, bench.warmup,
                                          bench.iterations, bench.rounds, advance, reference=base, policy=stability,
                                          gmacs_per_image=gmacs_per_image, max_gmacs=bench.max_gmacs)
    finally:
        for s in timed:
            s.runner.close()
    for base, group in groups.items():
        for s in group:
            s.row.update(row_fields(latency[base], s.row.label, base))
            if len(groups) > 1:
                s.row.speedup_against = base
    return [s.row for s in subjects]
