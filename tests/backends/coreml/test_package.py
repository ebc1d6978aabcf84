"""A Core ML package is written byte for byte the same by two builds of the same inputs, and stays a package
that coremltools and the executor read as before."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("coremltools")

from edgefocal.backends.coreml.package import SPEC  # noqa: E402
from edgefocal.recipe import Recipe  # noqa: E402
from edgefocal.core import BuildContext  # noqa: E402
from roundtrip import build  # noqa: E402

# a fresh interpreter per save: the metadata map's order follows string hashing, which differs per process
_SAVE = """
import sys, torch
from pathlib import Path
from timm.models.focalnet import FocalNet
from timm.data import resolve_model_data_config
from edgefocal.core import BuildContext
from edgefocal.recipe import Recipe
from edgefocal.export import onnx_from_torch
from roundtrip import build
torch.manual_seed(0)
model = FocalNet(in_chans=1, num_classes=10, embed_dim=16, depths=(1, 1, 1, 1), drop_path_rate=0.0).eval()
model.pretrained_cfg = {"input_size": (1, 32, 32), "mean": (0.286,), "std": (0.353,), "interpolation": "bilinear",
                        "crop_pct": 1.0, "crop_mode": "center"}
out = Path(sys.argv[1]); out.mkdir()
dc = resolve_model_data_config(model)
onnx_from_torch(model, tuple(dc["input_size"]), out / "model.onnx")
ctx = BuildContext(Recipe.model_validate({"targets": ["coreml"]}), model, dc, [f"c{i}" for i in range(10)], None,
                   out / "model.onnx", out, log=lambda m: None)
build("coreml", "fp32", ctx)
"""


def _files(package: Path) -> dict[str, bytes]:
    return {str(f.relative_to(package)): f.read_bytes() for f in sorted(package.rglob("*")) if f.is_file()}


def test_two_builds_write_identical_packages(tmp_path):
    tests = str(Path(__file__).parents[2])
    for name in ("a", "b"):
        done = subprocess.run([sys.executable, "-c", _SAVE, str(tmp_path / name)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": tests, "PYTHONHASHSEED": "random"})
        assert done.returncode == 0, done.stderr[-2000:]
    a, b = (_files(tmp_path / n / "coreml" / "model_fp32.mlpackage") for n in ("a", "b"))
    assert set(a) == {"Manifest.json", str(SPEC), "Data/com.apple.CoreML/weights/weight.bin"}
    assert a == b


def test_a_canonical_package_reads_as_the_one_coremltools_saved(tmp_path, tiny_focalnet):
    import coremltools as ct
    from timm.data import resolve_model_data_config

    from edgefocal.backends.coreml.executor import MLProgramExecutor
    from edgefocal.export import onnx_from_torch

    dc = resolve_model_data_config(tiny_focalnet)
    onnx_from_torch(tiny_focalnet, tuple(dc["input_size"]), tmp_path / "model.onnx")
    ctx = BuildContext(Recipe.model_validate({"targets": ["coreml"]}), tiny_focalnet, dc,
                       [f"c{i}" for i in range(10)], None, tmp_path / "model.onnx", tmp_path, log=lambda m: None)
    ours = build("coreml", "fp32", ctx)[0].path
    plain = tmp_path / "plain.mlpackage"
    ct.models.MLModel(str(ours), skip_model_load=True).save(str(plain))  # coremltools' own save, random ids
    manifest = json.loads((ours / "Manifest.json").read_text())
    assert manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["name"] == "model.mlmodel"
    assert (ours / SPEC).read_bytes() != b"" and ct.models.MLModel(str(ours), skip_model_load=True).get_spec() == \
        ct.models.MLModel(str(plain), skip_model_load=True).get_spec()
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    ex_ours, ex_plain = MLProgramExecutor(ours), MLProgramExecutor(plain)
    from edgefocal.backends.coreml.executor import to_program_input

    feed = to_program_input(x, ex_ours.info.image_input, dc["mean"], dc["std"])
    assert np.array_equal(ex_ours.run(feed), ex_plain.run(feed))

