"""benchmarks/gpu_reference.py, the script the lent GPU machine runs once, on this CPU-only machine: it must
run through, say there is no GPU, leave the GPU columns empty and still write the whole file."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from benchmark_scripts import benchmark_script

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback; on a GPU the script itself runs")
def test_cpu_fallback_writes_the_whole_file(tmp_path):
    out = tmp_path / "gpu.md"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_reference.py", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# The FP32 GPU reference beside the CPU runtimes\n\nWritten by `python benchmarks/")
    assert "GPU: none; load average at start" in text and "No CUDA GPU here" in text
    assert "-m gpu" in text and "exit 0" in text and "skipped" in text  # the gpu tests ran, and skipped here
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    runtimes = {"torch FP32, CPU", "ONNX Runtime FP32, CPU", "ONNX Runtime INT8 Q/DQ, CPU (engine proxy)"}
    assert runtimes <= set(rows) and not {"torch FP32, GPU (reference)", "torch default (TF32), GPU"} & set(rows)
    assert rows["torch FP32, CPU"][5:9] == ["–", "–", "1.00×", "1.00×"]  # no GPU reference; CPU against itself
    assert "| tensorrt int8 (Q/DQ ONNX via ONNX Runtime) * |" in text and "reference: torch eager FP32, CPU" in text


def test_a_failing_section_is_written_down_and_the_run_goes_on():
    with benchmark_script("gpu_reference") as script:
        lines, passed = script.guarded("focalnet_tiny_srf", lambda: 1 / 0)
        assert not passed and lines[0] == "### focalnet_tiny_srf"
        assert "**failed**: ZeroDivisionError: division by zero" in lines
        assert script.guarded("ok", lambda: ["fine"]) == (["fine"], True)
