"""How a channel-pruning budget is spread over the stages: by default from MAC counts alone, so a pruned build
is the same whatever else the machine is doing; the measured-latency allocation is opt-in."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgefocal.prune import allocation
from edgefocal.recipe import PruneSpec, load_recipe

REPO = Path(__file__).resolve().parents[2]
FAST = """
calibration: {source: fashion-mnist, split: train, size: 64}
eval: {source: fashion-mnist, split: test, size: 100}
bench: {batch_sizes: [1], warmup: 1, iterations: 3, rounds: 1, cold_start_runs: 0}
quantize: {target_agreement: null}  # the search is reproducible on its own (latency_cost: macs) and takes minutes
prune: {recover_steps: 50, recover_images: 800}  # recovery runs, under load too, in fewer steps than the default 600
gates: {max_latency_rounds: 1}
"""


def test_the_default_allocation_reads_no_clock():
    spec = load_recipe(REPO / "recipes" / "default.yaml", {"prune.method": "channels", "prune.ratio": 0.3}).prune
    assert spec.allocation == "macs" and allocation(spec) == "macs"
    assert allocation(PruneSpec(method="channels", ratio=0.3, allocation="latency")) == "macs"  # nothing measured yet
    assert allocation(PruneSpec(method="channels", ratio=0.3, allocation="latency", stage_weights=[2, 1, 1, 1])) == "latency"
    assert allocation(PruneSpec(method="channels", ratio=0.3, stage_weights=[2, 1, 1, 1])) == "stage_weights"
    assert allocation(PruneSpec(method="channels", stage_ratios=[0.1, 0.2, 0.3, 0.3])) == "stage_ratios"


def test_the_pipeline_measures_nothing_for_the_default(monkeypatch):
    """pipeline.prune_spec profiles the target only for `allocation: latency`."""
    import edgefocal.prune.latency
    from edgefocal.pipeline import prune_spec

    def measured(*a, **k):
        raise AssertionError("the default pruning plan must not time anything")

    monkeypatch.setattr(edgefocal.prune.latency, "stage_latency_weights", measured)
    recipe = load_recipe(None, {"prune.method": "channels", "prune.ratio": 0.3})
    assert prune_spec(recipe, None, None, [], 1, print) is recipe.prune


def _build(recipe: Path, out: Path) -> None:
    """One build in its own process, as a rebuild would be (fresh hash seed, fresh thread pools)."""
    proc = subprocess.run([sys.executable, "-m", "edgefocal", "build", "--recipe", str(recipe), "--target", "openvino",
                           "--precision", "int8", "--prune", "channels:0.3", "--output", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _digests(out: Path) -> dict[str, str]:
    files = sorted((out / "openvino").glob("model_*.xml")) + sorted((out / "openvino").glob("model_*.bin"))
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.mark.slow
def test_a_pruned_build_under_load_writes_the_same_bytes(tmp_path):
    """Two `--prune channels:0.3` builds, the second with a busy loop on every core beside it: the same channels
    go, and the OpenVINO artifacts are byte-identical."""
    recipe = tmp_path / "fast.yaml"
    recipe.write_text(FAST)
    _build(recipe, tmp_path / "quiet")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        _build(recipe, tmp_path / "loaded")
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    quiet, loaded = _digests(tmp_path / "quiet"), _digests(tmp_path / "loaded")
    assert set(quiet) == {"model_fp32.xml", "model_fp32.bin", "model_int8.xml", "model_int8.bin"}
    assert quiet == loaded
    reports = [json.loads((tmp_path / d / "report.json").read_text())["prune"] for d in ("quiet", "loaded")]
    assert reports[0]["allocation"] == "macs" and reports[0]["stage_weights"] == [1.0] * 4
    assert reports[0]["blocks"] == reports[1]["blocks"]  # the same channels kept in every block
