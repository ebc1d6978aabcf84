"""The Jetson install check (.ci/resolve_jetson.py) bites: offline, on stub wheels, it fails for an x86-only
wheel, a CUDA wheel, and a dependency that wants another torch than JetPack's, and passes a clean set. CI runs
it against PyPI (.ci/run)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("resolve_jetson", REPO / ".ci" / "resolve_jetson.py")
resolve_jetson = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(resolve_jetson)


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    """A local package index of metadata-only wheels."""
    folder = tmp_path_factory.mktemp("index")
    stub = resolve_jetson.stub_wheel
    stub(folder, "clean-lib", "1.0", ["torch>=2.4", "numpy-like"])
    stub(folder, "numpy-like", "2.0", tag="cp310-cp310-manylinux_2_17_aarch64.manylinux2014_aarch64")
    stub(folder, "x86-only", "1.0", tag="cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64")
    stub(folder, "uses-x86-only", "1.0", ["x86-only"])
    stub(folder, "nvidia-cublas-cu12", "12.6.4.1", tag="py3-none-manylinux_2_27_aarch64")
    stub(folder, "uses-cuda", "1.0", ["nvidia-cublas-cu12"])
    stub(folder, "torch", "2.9.0", tag="cp310-cp310-manylinux_2_28_aarch64")  # PyPI's aarch64 torch
    stub(folder, "wants-new-torch", "1.0", ["torch>=2.9"])
    return folder


def check(index: Path, *requirements: str) -> int:
    args = ["--no-index", "--find-links", str(index)]
    return resolve_jetson.main(args + [a for r in requirements for a in ("--requirement", r)])


def test_a_clean_set_resolves_over_jetpacks_torch(index, capsys):
    assert check(index, "clean-lib") == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: clean-lib resolves") and "numpy-like 2.0" in out and "torch 2.9" not in out


def test_an_x86_only_wheel_fails(index, capsys):
    assert check(index, "uses-x86-only") == 1
    assert "cannot be installed on a Jetson" in capsys.readouterr().err


def test_a_cuda_wheel_from_the_index_fails(index, capsys):
    assert check(index, "uses-cuda") == 1
    assert "nvidia-cublas-cu12 12.6.4.1 would come from the index" in capsys.readouterr().err


def test_wanting_another_torch_than_jetpacks_fails(index, capsys):
    """The index's torch 2.9 would replace JetPack's 2.5.0a0: the pin on the stand-in makes it a conflict."""
    assert check(index, "wants-new-torch") == 1
    assert "conflicting dependencies" in capsys.readouterr().err


def test_requirements_follow_pyproject_with_extras_expanded():
    reqs = resolve_jetson.requirements(REPO / "pyproject.toml", "tensorrt")
    names = {resolve_jetson.normalize(r.split(">")[0].split("=")[0].split("[")[0].strip()) for r in reqs}
    assert {"torch", "timm", "onnxruntime", "nncf", "polygraphy", "onnx-graphsurgeon"} <= names
    assert not any(r.startswith("edgefocal") for r in reqs)
    assert "openvino" not in names and "coremltools" not in names  # other backends stay extras
