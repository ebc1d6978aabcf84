"""What an edge deployment is judged by besides accuracy and latency: cold start, the first inference,
serving memory and output consistency across batch sizes, per report row, measured in the same build.

Every figure comes from a fresh child process (verify/serving_child.py) that builds the runner the build
verifies the artifact with (`get_backend(target).runner(path, precision, threads)`; the FP32 reference is
saved with torch.save and loaded into a TorchRunner), so runtimes never share one resident set and every
load starts cold. Each row gets `bench.cold_start_runs` children (3 by default), interleaved row by row
like the latency rounds; cold start, first inference and memory are the medians, the per-run figures are
kept (facts cold_start_runs_ms, first_inference_runs_ms, serving_memory_runs_mb) for the gates to judge
their spread. The first child of each requested artifact's row (what ships and is gated: not the torch rows, nor the
FP32 artifacts an INT8 build times itself against; at 224² each pass costs minutes) also serves the first
`bench.consistency_images` eval images (all with 0; fewer for a heavy model, `consistency_count`) at batch 1
and at the largest bench batch (twice) for the consistency verdict. A row that cannot
be measured here says why (`serving_note`)."""
from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgefocal.core import Row
from edgefocal.progress import Progress

CHILD = "edgefocal.verify.serving_child"
SERVE_ITERATIONS = 5  # inferences per batch size before the peak memory is read
CHILD_TIMEOUT_S = 1800  # the consistency pass serves up to the whole eval set at batch 1


def subject_spec(subject, tmp: Path, threads: int | None) -> dict | str:
    """The child's spec for one subject (verify/compare.py Subject), or why it is not measured here."""
    row, runner = subject.row, subject.runner
    if row.skipped:
        return f"not run here — {row.skipped}"
    if row.no_latency:
        return f"not measured here — {row.no_latency}"
    if runner is None:
        return "no runner for it on this machine"
    if row.target == "torch":
        import torch

        path = tmp / (re.sub(r"[^a-z0-9]+", "_", row.label.lower()).strip("_") + ".pt")
        try:
            torch.save(runner.model, path)
        except Exception as e:  # a model that does not pickle (a local class, a lambda hook)
            return f"serving figures not measured: the model cannot be saved for a fresh process ({e})"
        return {"target": "torch", "path": str(path), "precision": "fp32", "threads": threads,
                "device": runner.torch_device.type}
    if runner.artifact is None:
        return "its runner has no artifact file to load in a fresh process"
    from edgefocal.backends import get_backend

    cls = type(get_backend(row.target))
    return {"target": row.target, "path": str(runner.artifact), "precision": row.precision, "threads": threads,
            "backend": f"{cls.__module__}:{cls.__qualname__}"}


def caveat(subject) -> str | None:
    """What a measured row's serving figures do not cover."""
    if subject.row.proxy_for:
        return (f"serving figures of {subject.row.device or 'the proxy runtime'}, standing in for the "
                f"{subject.row.proxy_for}")
    if getattr(subject.runner, "on_gpu", False):
        return "resident host memory only: GPU memory is not in the memory figures"
    return None


def fresh_command(argv: list[str]) -> list[str]:
    """`argv` run as a grandchild, forked by a small shell. Linux carries a process's peak resident set
    (ru_maxrss) across execve: a python started straight from this build (over 1 GB resident) would report
    the build's peak, not its own. A fork starts a new count from the forking process's own peak, so the
    shell (a few MB) forks the measured process instead of exec'ing it (hence the `; exit $?`)."""
    return ["/bin/sh", "-c", '"$@"; exit $?', "sh", *argv]


def run_fresh(argv: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `argv` as fresh_command does; its whole process group is killed on a timeout or an interrupt."""
    proc = subprocess.Popen(fresh_command(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_child(spec: dict, out: Path) -> dict:
    """One fresh process; its result, or {"error": why}."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # a registered backend's module
    try:
        proc = run_fresh([sys.executable, "-m", CHILD, json.dumps({**spec, "out": str(out)})], CHILD_TIMEOUT_S, env)
    except subprocess.TimeoutExpired:
        return {"error": f"the serving process ran past {CHILD_TIMEOUT_S} s"}
    if out.is_file():
        result = json.loads(out.read_text())
        out.unlink()
        return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()
    return {"error": f"the serving process exited {proc.returncode}" + (f": {tail[-1]}" if tail else "")}


def eval_file(images, tmp: Path) -> Path:
    """An .npy of the eval images for the children: the build's own image store (imagestore.py) when it is
    one whole file, else the images saved into `tmp`."""
    from edgefocal.imagestore import ImageStore

    if isinstance(images, ImageStore) and ImageStore(images.path).shape == images.shape:
        return images.path
    np.save(tmp / "images.npy", np.ascontiguousarray(images, dtype=np.float32))
    return tmp / "images.npy"


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def aggregate(results: list[dict]) -> dict:
    """Row fields (and facts) from one row's child results: medians, and the per-run figures."""
    memory_runs: dict[int, list[float]] = {}
    for r in results:
        for b, mb in r["serving_memory_mb"].items():
            memory_runs.setdefault(int(b), []).append(float(mb))
    cold, first = [r["cold_start_ms"] for r in results], [r["first_inference_ms"] for r in results]
    return {"cold_start_ms": _median(cold), "first_inference_ms": _median(first),
            "serving_memory_mb": {b: _median(v) for b, v in memory_runs.items()},
            "consistency": results[0].get("consistency"),
            "cold_start_runs_ms": cold, "first_inference_runs_ms": first, "serving_memory_runs_mb": memory_runs}


def consistency_count(bench, eval_images: int, gmacs_per_image: float | None) -> int:
    """Eval images the consistency pass serves: bench.consistency_images (0: all), at most what its three
    passes (batch 1, the largest batch twice) can serve within bench.consistency_max_gmacs. Decided by MACs,
    not a clock: at 224² a thousand images take minutes a row, and the same images must be checked however
    busy the machine is."""
    wanted = min(bench.consistency_images or eval_images, eval_images)
    if not gmacs_per_image or not bench.consistency_max_gmacs:
        return wanted
    return max(1, min(wanted, int(bench.consistency_max_gmacs / (3 * gmacs_per_image))))


def measure_serving(subjects, images: np.ndarray, bench, threads: int | None = None,
                    progress: Progress | None = None, gmacs_per_image: float | None = None) -> list[Row]:
    """Fill every subject's serving figures (or serving_note) in place; returns the rows."""
    progress, runs = progress or Progress(), bench.cold_start_runs
    checked = consistency_count(bench, len(images), gmacs_per_image)
    batches = sorted({1, max(bench.batch_sizes)})
    if runs:
        progress.log(f"serving: cold start, first inference and memory over {runs} fresh processes per row, "
                     f"batch consistency at 1 and {batches[-1]}")
    with tempfile.TemporaryDirectory(prefix="edgefocal-serving-") as name:
        tmp = Path(name)
        images_file = eval_file(images, tmp)
        specs = {}
        for i, s in enumerate(subjects):
            spec = subject_spec(s, tmp, threads) if runs else "not measured: bench.cold_start_runs is 0"
            if isinstance(spec, str):
                s.row.serving_note = spec
            else:
                specs[i] = {**spec, "batches": batches, "images": str(images_file),
                            "consistency_images": checked,
                            "iterations": SERVE_ITERATIONS}
        results: dict[int, list[dict] | None] = {i: [] for i in specs}  # None: a run failed
        with progress.task("serving", runs * len(specs)) as advance:
            for run in range(runs):  # interleaved: a slow spell hits every row alike
                for i, spec in specs.items():
                    done = results[i]
                    if done is not None:
                        check = run == 0 and subjects[i].row.requested  # what ships and is gated
                        got = run_child({**spec, "consistency": check}, tmp / f"out{i}.json")
                        results[i] = None if "error" in got else done + [got]
                        if "error" in got:
                            subjects[i].row.serving_note = f"serving figures not measured: {got['error']}"
                    advance(1)
    for i, got in results.items():
        if got:
            subjects[i].row.update(aggregate(got))
            subjects[i].row.serving_note = caveat(subjects[i])
    return [s.row for s in subjects]
