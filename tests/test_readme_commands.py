"""Every command in README's "Common commands" and "Use in CI" runs here as README writes it, in order, in
one working directory, and exits as README says it does.

What stands in, and why: the recipes under recipes/ are copies of the shipped ones with fast settings
(1000 eval images, one short benchmark round, one cold start, a mixed-precision search on 900 held-out
images instead of 5000 with a 15 s budget, 30 recovery steps),
and commands that take the default recipe get that copy with --recipe; the files README names
(focalnet_tiny_srf.pth, data/calib, data/val, shirt.png, model_int8_qdq.onnx, main-report/, OLD, NEW,
baseline/, history/) are made here: a random-weight focalnet_tiny_srf checkpoint, Fashion-MNIST PNGs, the
default's Q/DQ ONNX, and earlier builds of the same recipes. The engine command needs a device's TensorRT:
it runs up to there and must say so."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgefocal.recipe import REPO_ROOT

pytestmark = pytest.mark.slow

SECTIONS = ("## Common commands", "## Use in CI")
FAST = {"eval": {"source": "fashion-mnist", "split": "test", "size": 1000},  # 1 image: 0.1 pt
        "bench": {"batch_sizes": [1], "warmup": 1, "iterations": 3, "rounds": 1, "cold_start_runs": 1,
                  "consistency_images": 50},
        "quantize": {"selection_size": 600, "validation_size": 300, "search_seconds": 15},
        "prune": {"recover_steps": 30, "recover_images": 500}}
DEFAULT_RECIPE = ("build", "sensitivity")  # the commands that read the default recipe when given none
RANDOM_WEIGHTS = "--model focalnet_tiny_srf"  # random weights: the README command a test cannot train
DEVICE_ONLY = {"engine": "TensorRT"}  # the command, and what its error must name as missing here


def readme_commands() -> list[str]:
    """The commands of README's two sections, continuation lines joined and comments dropped."""
    text = (REPO_ROOT / "README.md").read_text()
    commands = []
    for title in SECTIONS:
        block = text.split(title, 1)[1].split("```bash", 1)[1].split("```", 1)[0]
        for line in block.replace("\\\n", " ").splitlines():
            command = " ".join(line.split(" #", 1)[0].split())
            if command:
                commands.append(command)
    return commands


def _fast_recipe(src: Path, dst: Path) -> None:
    data = yaml.safe_load(src.read_text()) or {}
    for section, fields in FAST.items():
        data[section] = {**(data.get(section) or {}), **fields} if isinstance(data.get(section), dict) else fields
    dst.write_text(yaml.safe_dump(data, sort_keys=False))


def _run(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, default_model, fmnist_calibration):
    """A working directory holding what README's commands name."""
    import timm
    import torch
    from imagefolders import write_imagefolder
    from qdq_helpers import qdq_onnx_for_tensorrt

    from edgefocal.data import balanced_subset, fashion_mnist
    from edgefocal.export import onnx_from_torch

    d = tmp_path_factory.mktemp("readme")
    (d / "recipes").mkdir()
    for name in ("default", "openvino-int8", "onnxruntime-int8"):
        _fast_recipe(REPO_ROOT / "recipes" / f"{name}.yaml", d / "recipes" / f"{name}.yaml")
    torch.manual_seed(0)
    torch.save(timm.create_model("focalnet_tiny_srf").state_dict(), d / "focalnet_tiny_srf.pth")
    train, test = fashion_mnist("train"), fashion_mnist("test")
    write_imagefolder(d / "data" / "calib", train, balanced_subset(train.labels, 50, seed=0))
    write_imagefolder(d / "data" / "val", test, balanced_subset(test.labels, 20, seed=0))
    test.load(int(np.flatnonzero(test.labels == 6)[0])).save(d / "shirt.png")  # class 6: Shirt
    fp32 = onnx_from_torch(default_model.model, tuple(default_model.data_config["input_size"]), d / "fp32.onnx")
    qdq_onnx_for_tensorrt(fp32, fmnist_calibration[:64], "focalnet", d / "model_int8_qdq.onnx", log=lambda s: None)
    return d


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """README's shell: the project's virtual environment first on PATH (`python`, `edgefocal`), and the
    job summary file GitHub Actions provides."""
    bin_dir = str(Path(sys.executable).parent)
    summary = tmp_path_factory.mktemp("summary") / "step_summary.md"
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "GITHUB_STEP_SUMMARY": str(summary),
            "PYTHONPATH": str(REPO_ROOT)}


def _as_run(command: str) -> str:
    """README's command with the fast default recipe where it reads the default one."""
    words = command.split()
    sub = words[3] if words[:3] == ["python", "-m", "edgefocal"] else words[1]
    return command + (" --recipe recipes/default.yaml" if sub in DEFAULT_RECIPE and "--recipe" not in words else "")


def _setup_before(command: str, workdir: Path, env: dict) -> None:
    """The earlier builds a CI command compares with: the last accepted build, two reports, a baseline per
    matrix recipe, and two accepted builds of one recipe for the history."""
    def build(*args):
        done = _run("python -m edgefocal build --recipe " + " ".join(args), workdir, env)
        assert done.returncode == 0, done.stderr[-2000:]

    if "--baseline main-report/" in command and "matrix" not in command:
        build("recipes/default.yaml --output main-report")
    elif command.startswith("edgefocal compare OLD NEW"):
        shutil.copytree(workdir / "main-report", workdir / "OLD")
        shutil.copytree(workdir / "build" / "edgefocal", workdir / "NEW")
    elif command.startswith("edgefocal matrix"):
        shutil.copytree(workdir / "build" / "openvino-int8", workdir / "baseline" / "openvino-int8")
        build("recipes/onnxruntime-int8.yaml --output baseline/onnxruntime-int8")
    elif command.startswith("edgefocal history history/openvino-int8"):
        shutil.copytree(workdir / "baseline" / "openvino-int8", workdir / "history" / "openvino-int8" / "1")
        shutil.copytree(workdir / "gate-out" / "openvino-int8", workdir / "history" / "openvino-int8" / "2")


def _output(command: str, workdir: Path) -> Path:
    """Where a build command writes: its --output, else its recipe's output."""
    words = command.split()
    if "--output" in words:
        return workdir / words[words.index("--output") + 1]
    recipe = words[words.index("--recipe") + 1] if "--recipe" in words else "recipes/default.yaml"
    return workdir / yaml.safe_load((workdir / recipe).read_text())["output"]


def _expected_exit(command: str, workdir: Path) -> int:
    """README's exit codes: 0 built and every gate passed, 1 a gate failed or regressed (the report still
    written). Fast settings judge 1000 eval images, and latency under this machine's load, so what a gate
    decides is read from what the command wrote; that it exits accordingly is what is asserted."""
    words = command.split()
    if "build" in words:
        report = json.loads((_output(_as_run(command), workdir) / "report.json").read_text())
        return 0 if all(g["passed"] is not False for g in report["gates"]) else 1
    if "compare" in words:  # the same comparison the build --baseline before it made and stored
        return 0 if json.loads((workdir / "NEW" / "report.json").read_text())["baseline"]["passed"] else 1
    if "matrix" in words:
        matrix = json.loads((workdir / "gate-out" / "matrix.json").read_text())
        return 0 if all(e["passed"] for e in matrix["entries"]) else 1
    return 0


def test_every_readme_command_runs_and_exits_as_readme_says(workdir, env):
    commands = readme_commands()
    assert len(commands) >= 12 and any(c.startswith("edgefocal matrix") for c in commands)
    for command in commands:
        _setup_before(command, workdir, env)
        done = _run(_as_run(command), workdir, env)
        device = next((need for sub, need in DEVICE_ONLY.items() if f" {sub} " in f" {command} "), None)
        if device:  # README marks it "on the device": here it must stop with a one-line error naming that need
            assert done.returncode == 2 and device in done.stderr and "Traceback" not in done.stderr, done.stderr
            assert not (workdir / "model.engine").exists()
            continue
        assert done.returncode == _expected_exit(command, workdir), f"{command}\n{done.stderr[-3000:]}"
    assert (workdir / "build" / "edgefocal" / "report.md").exists()
    assert "openvino int8" in (workdir / "junit.xml").read_text()
    assert Path(env["GITHUB_STEP_SUMMARY"]).read_text().strip()
    assert (workdir / "gate-out" / "matrix.md").exists() and (workdir / "history-out" / "history.html").exists()


def test_the_readme_sections_list_the_commands_this_file_runs():
    commands = readme_commands()
    assert "python -m edgefocal doctor" in commands
    assert any(c.startswith("python -m edgefocal engine") for c in commands)
    assert any(RANDOM_WEIGHTS in c for c in commands)
    assert all(c.split()[0] in ("python", "edgefocal") for c in commands), commands
