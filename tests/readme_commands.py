"""Test helper: README's commands as tests/test_readme_commands.py ("Common commands") and
tests/test_readme_ci_commands.py ("Use in CI") run them, each section in order in its own working directory.

What stands in, and why: the recipes under recipes/ are copies of the shipped ones with fast settings
(1000 eval images, one short benchmark round and no re-measuring, one cold start, a mixed-precision search
on 900 held-out images instead of 5000 with a 15 s budget, 30 recovery steps),
and commands that take the default recipe get that copy with --recipe; the files README names
(focalnet_tiny_srf.pth, data/calib, data/val, shirt.png, model_int8_qdq.onnx, main-report/, OLD, NEW,
baseline/, history/) are made by the test files: a random-weight focalnet_tiny_srf checkpoint, Fashion-MNIST
PNGs, the default's Q/DQ ONNX, and earlier builds of the same recipes. The engine command needs a device's
TensorRT: it runs up to there and must say so."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from edgefocal.recipe import REPO_ROOT

COMMON, CI = "## Common commands", "## Use in CI"
FAST = {"eval": {"source": "fashion-mnist", "split": "test", "size": 1000},  # 1 image: 0.1 pt
        "bench": {"batch_sizes": [1], "warmup": 1, "iterations": 3, "rounds": 1, "cold_start_runs": 1,
                  "consistency_images": 50},
        "quantize": {"selection_size": 600, "validation_size": 300, "search_seconds": 15},
        "prune": {"recover_steps": 30, "recover_images": 500},
        "gates": {"max_latency_rounds": 1}}  # no re-measuring: under load every round is judged loaded
DEFAULT_RECIPE = ("build", "sensitivity")  # the commands that read the default recipe when given none
RANDOM_WEIGHTS = "--model focalnet_tiny_srf"  # random weights: the README command a test cannot train
DEVICE_ONLY = {"engine": "TensorRT"}  # the command, and what its error must name as missing here
MATRIX_RECIPES = ("openvino-int8", "onnxruntime-int8")


def readme_commands(*sections: str) -> list[str]:
    """The commands of README's sections (both when none is named), continuation lines joined and comments
    dropped."""
    text = (REPO_ROOT / "README.md").read_text()
    commands = []
    for title in sections or (COMMON, CI):
        block = text.split(title, 1)[1].split("```bash", 1)[1].split("```", 1)[0]
        for line in block.replace("\\\n", " ").splitlines():
            command = " ".join(line.split(" #", 1)[0].split())
            if command:
                commands.append(command)
    return commands


def fast_recipes(workdir: Path) -> None:
    """recipes/ in `workdir`: the shipped recipes README's commands name, with the fast settings."""
    (workdir / "recipes").mkdir()
    for name in ("default", *MATRIX_RECIPES):
        data = yaml.safe_load((REPO_ROOT / "recipes" / f"{name}.yaml").read_text()) or {}
        for section, fields in FAST.items():
            data[section] = {**(data.get(section) or {}), **fields} if isinstance(data.get(section), dict) else fields
        (workdir / "recipes" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def readme_env(summary: Path) -> dict:
    """README's shell: the project's virtual environment first on PATH (`python`, `edgefocal`), and the
    job summary file GitHub Actions provides."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "GITHUB_STEP_SUMMARY": str(summary),
            "PYTHONPATH": str(REPO_ROOT)}


def _run(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


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
        for name in MATRIX_RECIPES:
            build(f"recipes/{name}.yaml --output baseline/{name}")
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


def run_in_order(commands: list[str], workdir: Path, env: dict) -> None:
    """Each command as README writes it (after the earlier builds it compares with), exiting as README says."""
    for command in commands:
        _setup_before(command, workdir, env)
        done = _run(_as_run(command), workdir, env)
        device = next((need for sub, need in DEVICE_ONLY.items() if f" {sub} " in f" {command} "), None)
        if device:  # README marks it "on the device": here it must stop with a one-line error naming that need
            assert done.returncode == 2 and device in done.stderr and "Traceback" not in done.stderr, done.stderr
            assert not (workdir / "model.engine").exists()
            continue
        assert done.returncode == _expected_exit(command, workdir), f"{command}\n{done.stderr[-3000:]}"
