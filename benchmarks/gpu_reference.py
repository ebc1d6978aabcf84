"""The FP32 GPU reference on a lent GPU machine, next to the CPU runtimes, in one run of a few minutes.

    python benchmarks/gpu_reference.py [--out benchmarks/gpu.md] [--quick] [--skip-tests]

Writes the whole markdown file (command, date, machine, GPU and load at the top), from this run only:
1. the `gpu`-marked tests (`python -m pytest -m gpu` on the test files that hold them) and their outcome;
2. for focalnet_tiny_srf (224², random weights: latency only) and the embedded default (32²), at batch 1 and
   128, timed interleaved round by round: torch FP32 on the GPU (the reference: TF32 off, CUDA events), torch
   on the GPU with its default TF32 convolutions (for context), torch FP32 on the CPU, ONNX Runtime CPU on the
   FP32 ONNX and on the TensorRT Q/DQ ONNX (the engine's proxy; no TensorRT on that machine), and how far
   the GPU logits are from the CPU's;
3. a build of the embedded default (onnxruntime and tensorrt, int8, scikit-learn's digits: the machine has
   no Fashion-MNIST) whose report shows the GPU reference and the CPU baseline beside it.
Without CUDA it runs all the same on the CPU and says so (GPU columns "–"); `--quick` (the test of that
fallback) measures only the embedded default at batch 1 and 8 with a small build (one cold start per row).

The GPU machine (torch 2.11 cu130, timm, onnx, onnxruntime, scikit-learn, matplotlib, rich, pytest) lacks
pydantic (edgefocal's recipes), nncf (edgefocal's Q/DQ producer) and polygraphy; benchmarks/gpu_wheels.sh
downloads them as wheels into .whl/ for the device's `carry`, and prints the command to run there."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # edgefocal is not installed on the GPU machine

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import header, write  # noqa: E402

from edgefocal.backends.torch import TorchRunner  # noqa: E402

GPU_TEST_FILES = ["tests/backends/test_torch.py", "tests/backends/tensorrt/test_runner.py",
                  "tests/backends/tensorrt/test_backend.py"]
REFERENCE = "torch FP32, GPU (reference)"
CPU_FP32 = "torch FP32, CPU"


class TorchDefaultGpuRunner(TorchRunner):
    """torch's own default on the GPU: cuDNN convolutions in TF32 (what an unqualified 'FP32' often is)."""

    def __init__(self, model):
        super().__init__(model, device="cuda")
        self.device = self.device.replace("FP32 (TF32 off)", "default (TF32 convolutions)")

    def _forward(self, x):
        if self._module is None:
            self.load()
        with torch.inference_mode():
            return self._module(x)  # type: ignore[misc]


def run_gpu_tests() -> tuple[list[str], bool]:
    """The `gpu`-marked tests in a subprocess; their summary line, or the tail of the output on failure."""
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
           *GPU_TEST_FILES]
    started = time.time()
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)  # carried wheels too
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else "(no output)"
    out = ["## `gpu`-marked tests", "", f"`{' '.join(['python', *cmd[1:]])}`: exit {proc.returncode}, "
           f"{time.time() - started:.0f} s: **{summary.strip('= ')}**", ""]
    skipped = [ln for ln in lines if ln.startswith("SKIPPED")]
    if skipped:
        out += ["```", *skipped, "```", ""]
    if proc.returncode != 0:
        out += ["```", *(lines[-40:] + proc.stderr.splitlines()[-20:]), "```", ""]
    return out, proc.returncode == 0


def qdq_onnx(onnx_fp32: Path, calibration: np.ndarray, out: Path) -> tuple[Path | None, str]:
    """edgefocal's TensorRT Q/DQ ONNX (policy 'focalnet'); fast bias correction off, since only latency and
    agreement are read here. None and the reason where NNCF is missing."""
    import onnx

    from edgefocal.errors import EdgefocalError
    from edgefocal.precision.policy import plan_precision
    from edgefocal.backends.tensorrt.qdq import quantize
    from edgefocal.recipe import QuantizeSpec

    try:
        model, info = quantize(onnx_fp32, plan_precision(onnx.load(str(onnx_fp32))), calibration,
                               QuantizeSpec(fast_bias_correction=False), log=lambda s: None)
    except EdgefocalError as e:  # NNCF missing, or an export without the module names the plan needs
        return None, f"not built ({e}; {e.hint})"
    onnx.save(model, str(out))
    return out, f"{info['qdq_nodes']} Q/DQ nodes, conformance {info['conformance']}"


def runners_for(model, onnx_fp32: Path, qdq: Path | None, threads: int) -> dict:
    """The runtimes compared, reference first; GPU ones only where CUDA exists."""
    from edgefocal.backends.onnxruntime import OnnxRuntimeRunner
    from edgefocal.backends.tensorrt.runner import QDQProxyRunner

    out = {}
    if torch.cuda.is_available():
        out[REFERENCE] = TorchRunner(model, device="cuda")
        out["torch default (TF32), GPU"] = TorchDefaultGpuRunner(model)
    out[CPU_FP32] = TorchRunner(model, device="cpu", threads=threads)
    out["ONNX Runtime FP32, CPU"] = OnnxRuntimeRunner(onnx_fp32, threads)
    if qdq is not None:
        out["ONNX Runtime INT8 Q/DQ, CPU (engine proxy)"] = QDQProxyRunner(qdq, threads)
    return out


def measure(runners: dict, sample: np.ndarray, batches: list[int], quick: bool) -> dict:
    """{batch: benchmark results}; batch 1 gets more iterations than the big batch (CPU seconds each)."""
    from edgefocal.verify.bench import benchmark

    results = {}
    for batch in batches:
        warmup, iterations = (1, 2) if quick else ((5, 20) if batch == 1 else (1, 4))
        results[batch] = benchmark(runners, sample, [batch], warmup, iterations, rounds=2)
    return results


def logit_gaps(runners: dict, x: np.ndarray) -> dict[str, float]:
    """max |logits - CPU FP32 logits| of every runner on one batch: how close the GPU reference is to the CPU's."""
    want = runners[CPU_FP32].infer(x)
    return {name: float(np.abs(r.infer(x) - want).max()) for name, r in runners.items()}


def model_section(title: str, loaded, threads: int, batches: list[int], quick: bool, workdir: Path) -> list[str]:
    """Export, Q/DQ, then every runtime interleaved at each batch; one markdown table."""
    from edgefocal.export import onnx_from_torch

    started = time.time()
    shape = tuple(loaded.data_config["input_size"])
    rng = np.random.default_rng(0)
    onnx_fp32 = onnx_from_torch(loaded.model, shape, workdir / "model_fp32.onnx")
    qdq, qdq_note = qdq_onnx(onnx_fp32, rng.standard_normal((16, *shape)).astype(np.float32),
                             workdir / "model_int8_qdq.onnx")
    runners = runners_for(loaded.model, onnx_fp32, qdq, threads)
    sample = rng.standard_normal((max(batches), *shape)).astype(np.float32)
    for r in runners.values():
        r.load()
    try:
        gaps = logit_gaps(runners, sample[:8])
        results = measure(runners, sample, batches, quick)
        devices = {name: r.device for name, r in runners.items()}
    finally:
        for r in runners.values():
            r.close()
    lines = [f"### {title}", "", f"Q/DQ ONNX: {qdq_note}; measured in {time.time() - started:.0f} s "
             "(export and quantization included).", "", *table(results, batches, gaps, devices), ""]
    return lines


def _ratio(results: dict, batch: int, base: str, name: str) -> str:
    r = results[batch]
    return f"{r[base][batch]['p50'] / r[name][batch]['p50']:.2f}×" if base in r else "–"


def table(results: dict, batches: list[int], gaps: dict, devices: dict) -> list[str]:
    head = ["runtime", "device"] + [f"b{b} p50 ms" for b in batches] + [f"b{batches[-1]} img/s"] + \
        [f"b{b} vs GPU ref" for b in batches] + [f"b{b} vs CPU FP32" for b in batches] + ["max logit gap vs CPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in devices:
        cells = [name, devices[name]] + [f"{results[b][name][b]['p50']:.2f}" for b in batches]
        cells.append(f"{results[batches[-1]][name][batches[-1]]['throughput']:.0f}")
        cells += [_ratio(results, b, REFERENCE, name) for b in batches]
        cells += [_ratio(results, b, CPU_FP32, name) for b in batches]
        cells.append(f"{gaps[name]:.2e}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def build_section(quick: bool, workdir: Path) -> list[str]:
    """A real build of the embedded default: the report's table and notes, as report.md has them."""
    from edgefocal import report as reporting
    from edgefocal.pipeline import build
    from edgefocal.recipe import load_recipe

    bench = {"bench.batch_sizes": [1, 8] if quick else [1, 128], "bench.warmup": 2 if quick else 5,
             "bench.iterations": 4 if quick else 20, "bench.rounds": 2}
    if quick:  # one fresh serving process per row, not the default's three
        bench["bench.cold_start_runs"] = 1
    recipe = load_recipe(None, {"targets": ["onnxruntime", "tensorrt"], "precision": "int8",
                                "calibration.source": "digits", "calibration.size": 32, "eval.source": "digits",
                                "eval.size": 100 if quick else 500, "output": str(workdir / "build"), **bench})
    result = build(recipe)
    head, rows = reporting.table_rows(result.report)
    return (["## A build of the embedded default (onnxruntime and tensorrt, int8, digits)", "",
             f"`build` with {recipe.bench.batch_sizes} batches, {len(result.report['rows'])} rows, "
             f"{result.report['seconds']:.0f} s. Digits are not what the model was trained on (Fashion-MNIST): "
             "its top-1 means nothing here, its agreement with the reference does.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
            + [""] + [f"- {n}" for n in reporting.notes(result.report)] + [""])


def guarded(title: str, section, *args) -> tuple[list[str], bool]:
    """A section's lines, or its failure written down: one run on a lent machine must not lose the rest."""
    import traceback

    try:
        return section(*args), True
    except Exception as e:  # noqa: BLE001  recorded in the file, and the exit code says so
        tail = traceback.format_exc().splitlines()[-12:]
        return [f"### {title}", "", f"**failed**: {type(e).__name__}: {e}", "", "```", *tail, "```", ""], False


def gpu_line() -> str:
    if not torch.cuda.is_available():
        return "No CUDA GPU here: every figure below is from the CPU, and the GPU columns are empty (–)."
    p = torch.cuda.get_device_properties(0)
    return (f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, compute capability "
            f"{p.major}.{p.minor}; torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
            f"{torch.backends.cudnn.version()}).")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "gpu.md")
    p.add_argument("--quick", action="store_true", help="the embedded default only, batches 1 and 8, a small build")
    p.add_argument("--skip-tests", action="store_true", help="leave out the gpu-marked tests")
    args = p.parse_args()
    started, threads = time.time(), os.cpu_count() or 1
    torch.set_num_threads(threads)
    lines, ok = header("The FP32 GPU reference beside the CPU runtimes") + [gpu_line(), ""], []
    if not args.skip_tests:
        part, passed = run_gpu_tests()
        lines, ok = lines + part, ok + [passed]
    lines += ["## Latency: GPU reference, CPU FP32 and the engine's CPU proxy, same run", "",
              f"Random inputs; p50 per batch in ms, pooled over 2 interleaved rounds; CPU runtimes on {threads} "
              "threads. The GPU reference is timed with CUDA events around the forward (batch already on the "
              "GPU); CPU runtimes by wall clock. × = that column's p50 / this row's p50.", ""]
    from edgefocal.models import load_model

    cases = [("edgefocal-fmnist (embedded default, 32², trained)", "edgefocal-fmnist", None)]
    if not args.quick:
        cases.insert(0, ("focalnet_tiny_srf (224², random weights)", "focalnet_tiny_srf", 10))
    with tempfile.TemporaryDirectory() as tmp:
        for i, (title, name, classes) in enumerate(cases):
            torch.manual_seed(0)
            batches = [1, 8] if args.quick else [1, 128]
            part, passed = guarded(title, lambda: model_section(title, load_model(name, num_classes=classes),
                                                                threads, batches, args.quick, Path(tmp) / f"m{i}"))
            lines, ok = lines + part, ok + [passed]
        part, passed = guarded("A build of the embedded default", build_section, args.quick, Path(tmp))
        lines, ok = lines + part, ok + [passed]
    lines.append(f"Whole run: {time.time() - started:.0f} s.")
    write(args.out, lines)
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
