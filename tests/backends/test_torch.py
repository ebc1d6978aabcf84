"""The FP32 torch reference runner. On the CPU here; the `gpu` tests run where CUDA exists (the lent GPU
machine, through benchmarks/gpu_reference.py): the GPU reference is FP32 for real (TF32 off), timed with
CUDA events, leaves the caller's model where it was, and a build there adds the CPU baseline."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgefocal.backends.torch import TorchRunner, exact_fp32, reference_device


def test_cpu_runner_matches_the_model(tiny_focalnet):
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    runner = TorchRunner(tiny_focalnet, device="cpu", threads=1)
    assert not runner.on_gpu and runner.device == "torch eager FP32, CPU (1 threads)"
    with runner:
        got = runner.infer(x)
        times = runner.timed_infer(x, 2)
    with torch.inference_mode():
        want = tiny_focalnet(torch.from_numpy(x)).numpy()
    assert np.array_equal(got, want) and len(times) == 2 and min(times) > 0


def test_exact_fp32_turns_tf32_off_and_restores_the_flags():
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with exact_fp32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.gpu
def test_gpu_reference_is_fp32_timed_by_cuda_events_and_leaves_the_model_on_the_cpu(tiny_focalnet):
    x = np.random.default_rng(0).standard_normal((16, 1, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        want = tiny_focalnet(torch.from_numpy(x)).numpy()
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    runner = TorchRunner(tiny_focalnet)
    assert reference_device() == "cuda" and runner.on_gpu and "TF32 off" in runner.device
    with runner:
        got = runner.infer(x)
        times = runner.timed_infer(x, 5)
    assert np.abs(got - want).max() < 1e-4  # FP32 on both sides; TF32 convolutions differ by ~1e-3
    assert len(times) == 5 and all(t > 0 for t in times)
    assert next(tiny_focalnet.parameters()).device.type == "cpu"  # the GPU runner worked on a copy
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == flags


@pytest.mark.gpu
def test_gpu_build_compares_cpu_targets_with_the_cpu_baseline(tmp_path):
    """A real build where CUDA exists: torch FP32 on the GPU is the reference, the CPU baseline runs beside
    it, ONNX Runtime and the TensorRT Q/DQ proxy (CPU) are compared with the baseline. scikit-learn's
    digits: the GPU machine has no Fashion-MNIST."""
    from edgefocal.cli import main
    from edgefocal.verify.compare import CPU_BASELINE, REFERENCE

    recipe = tmp_path / "gpu.yaml"
    recipe.write_text("calibration: {source: digits, split: train, size: 32}\n"
                      "eval: {source: digits, split: test, size: 200}\n"
                      "bench: {batch_sizes: [1, 32], warmup: 3, iterations: 10, rounds: 2}\n")
    out = tmp_path / "out"
    assert main(["build", "--recipe", str(recipe), "--target", "onnxruntime,tensorrt", "--precision", "int8",
                 "--output", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = {r["label"]: r for r in report["rows"]}
    assert report["reference"]["gpu"] and "CUDA events" in rows[REFERENCE]["device"]
    assert rows[CPU_BASELINE]["agreement"] > 0.99 and rows[CPU_BASELINE]["speedup_against"] == CPU_BASELINE
    for label in ("onnxruntime int8 (U8S8 Q/DQ)", "tensorrt int8 (Q/DQ ONNX via ONNX Runtime)"):
        # digits are far from Fashion-MNIST: INT8 agreement 0.92-0.95 here on the CPU (a broken one: ~0.1)
        assert rows[label]["speedup_against"] == CPU_BASELINE and rows[label]["agreement"] > 0.8, label
    assert "CPU baseline" in (out / "report.md").read_text()
