"""SIGTERM during a real build (torch, ONNX Runtime and their threads running), wrapped the way
cli.main wraps every command: exit 143, no staging directory, no lock file, the
previous output byte-identical; during the precision search (runtime calls that Python's handler waits
for), through the CLI: exit 143 within 10 s (issue 19)."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = """targets: [onnxruntime]
calibration: {source: fashion-mnist, split: train, size: 32}
eval: {source: fashion-mnist, split: test, size: 100}
bench: {batch_sizes: [1], warmup: 1, iterations: 3, rounds: 1, cold_start_runs: 0}
quantize: {target_agreement: null}
gates: {max_latency_rounds: 1}
"""
# the precision search on, over few images: its first step (quantizing the probes) runs ONNX Runtime for seconds
SEARCH = TINY.replace("quantize: {target_agreement: null}",
                      "quantize: {target_agreement: 0.999, selection_size: 200, validation_size: 100}")
# what cli.main does once integrated: sigterm_raises() around the command, Terminated -> 143
BUILD = """import sys
from edgefocal.pipeline import build
from edgefocal.recipe import load_recipe
from edgefocal.signals import EXIT_SIGTERM, Terminated, sigterm_raises
try:
    with sigterm_raises():
        build(load_recipe(sys.argv[1], {"output": sys.argv[2]}))
except Terminated:
    sys.exit(EXIT_SIGTERM)
"""


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def staging(out: Path) -> list[Path]:
    return [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.staging-")]


def start(recipe: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUILD, str(recipe), str(out)], cwd=REPO, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


POINTS = {
    "while exporting": lambda out: any(s.exists() for s in staging(out)),
    "after the ONNX export": lambda out: any((s / "model_fp32.onnx").exists() for s in staging(out)),
    "after INT8 quantization": lambda out: any(list(s.rglob("*int8*")) for s in staging(out)),
}


@pytest.mark.slow
def test_sigterm_at_several_points_of_a_real_build(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    out = tmp_path / "out"
    first = start(recipe, out)
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    before = digest(out)
    for name, reached in POINTS.items():
        proc = start(recipe, out)
        deadline = time.monotonic() + 300
        while not reached(out):
            assert proc.poll() is None, f"the build ended before {name}: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143, (name, proc.stderr.read()[-2000:])
        assert digest(out) == before, name
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.yaml"], name  # no staging, no lock


@pytest.mark.slow
def test_sigterm_during_the_precision_search_ends_the_cli_build_within_10_s(tmp_path):
    recipe = tmp_path / "search.yaml"
    recipe.write_text(SEARCH)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edgefocal", "build", "--recipe", str(recipe), "--output", str(out)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines, searching = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if "mixed precision:" in line:
                searching.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 600
    while not searching.wait(0.1):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)[-2000:]
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    seconds = time.monotonic() - sent
    reader.join(5)
    assert code == 143 and seconds <= 10, (code, seconds, "".join(lines)[-2000:])
    assert "error: terminated" in "".join(lines[-3:]), "".join(lines)[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.yaml"]  # no staging, no lock, no output
