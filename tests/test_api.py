"""The Python API (edgefocal/api.py): a module and arrays in, the same stages and outputs as the CLI; gates
reported, not raised, until raise_for_gates(); bad arguments fail before any work with a one-line error."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import edgefocal
from edgefocal.errors import BadInput, GateFailed

FAST = {"batch_sizes": [1], "warmup": 1, "iterations": 3, "rounds": 1, "cold_start_runs": 1}


@pytest.fixture(scope="module")
def api_build(default_model, fmnist_calibration, fmnist_eval, tmp_path_factory):
    """The embedded default handed over as an nn.Module, calibrated on 64 arrays, evaluated on 300, with a
    speedup gate no CPU meets (and an inconclusive latency failing too), so a gate fails."""
    x, y = fmnist_eval
    out = tmp_path_factory.mktemp("api") / "out"
    module = default_model.model
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = edgefocal.build(module, calibration=fmnist_calibration[:64], eval=(x[:300], y[:300]),
                             targets=["openvino"], precision="int8", output=out, bench=FAST,
                             gates={"min_speedup": 1000, "on_unstable": "fail", "min_agreement": 0.95,
                                    "max_latency_rounds": 1})
    unchanged = all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    return result, out, unchanged


def test_build_from_a_module_and_arrays_reports_an_openvino_int8_row(api_build):
    result, out, _ = api_build
    assert isinstance(result, edgefocal.BuildResult) and result.output == out
    rows = {r["label"]: r for r in result.report["rows"]}
    int8 = rows["openvino int8"]
    assert int8["top1"] > 0.8 and int8["agreement"] >= 0.95 and int8["latency_ms"]["1"]["p50"] > 0
    assert rows["torch fp32 (reference)"]["agreement"] == 1.0
    assert result.report == json.loads((out / "report.json").read_text())  # the dict written to report.json
    assert result.report["eval"]["count"] == 300 and result.report["calibration"]["count"] == 64
    assert result.report["eval"]["name"] == "array:eval"


def test_gates_are_reported_not_raised_until_asked(api_build):
    result, _, _ = api_build
    failed = [g for g in result.gates if not g.passed]
    assert [g.gate for g in failed] == ["min_speedup"] and not result.passed
    assert any(g.gate == "min_agreement" and g.passed for g in result.gates)
    with pytest.raises(GateFailed, match="min_speedup for openvino int8"):
        result.raise_for_gates()


def test_the_manifest_describes_the_module_and_the_callers_module_is_untouched(api_build, default_model):
    _, out, unchanged = api_build
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["arch"]["embed_dim"] == 32 and manifest["model"]["arch"]["depths"] == [1, 1, 2, 1]
    assert manifest["recipe"]["model"]["name"] == "focalnet" and manifest["recipe"]["model"]["arch"]["in_chans"] == 1
    assert manifest["preprocessing"]["mean"] == [0.286] and manifest["model"]["data_config_source"]["mean"] == \
        "the module's pretrained_cfg"
    assert unchanged and default_model.model.training is False


def test_a_passing_build_raises_nothing(tiny_focalnet, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 1, 32, 32)).astype(np.float32)
    result = edgefocal.build(tiny_focalnet, calibration=iter([x[:8], x[8:16]]), eval=(x, rng.integers(0, 10, 24)),
                             targets="onnxruntime", precision="fp32", output=tmp_path / "o", bench=FAST,
                             class_names=[f"c{i}" for i in range(10)])
    assert result.passed and all(g.passed for g in result.gates) and result.raise_for_gates() is None
    assert result.report["calibration"]["count"] == 16  # both batches of the iterable
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["class_names"][2] == "c2"


@pytest.mark.parametrize("kwargs, message", [
    ({"eval": np.zeros((2, 1, 32, 32), np.float32)}, "eval is a ndarray, not \\(images, labels\\)"),
    ({"calibration": np.zeros((2, 1, 32, 32))}, "calibration images are a float64 array"),
    ({"calibration": np.zeros((2, 1, 16, 16), np.float32)}, r"have shape \(1, 16, 16\) per image but the model's "
                                                             r"data config says input_size \[1, 32, 32\]"),
    ({"eval": (np.zeros((2, 1, 32, 32), np.float32), np.array([0, 12]))}, "eval labels go up to 12"),
    ({"checkpoint": "w.safetensors"}, "checkpoint= goes with a model name"),
    ({"gate": {"min_agreement": 0.9}}, "gate: Extra inputs are not permitted"),
    ({"targets": ["openvno"]}, "unknown target 'openvno'; did you mean 'openvino'"),
    ({"class_names": ["a"]}, "1 class names were given"),
    ({"recipe": "no-such-recipe.yaml"}, "recipe no-such-recipe.yaml does not exist"),
])
def test_bad_arguments_fail_with_one_line(tiny_focalnet, tmp_path, kwargs, message):
    args = {"calibration": np.zeros((2, 1, 32, 32), np.float32),
            "eval": (np.zeros((2, 1, 32, 32), np.float32), np.array([0, 1])),
            "targets": ["onnxruntime"], "output": tmp_path / "o", **kwargs}
    with pytest.raises(BadInput, match=message):
        edgefocal.build(tiny_focalnet, **args)
    assert not (tmp_path / "o").exists()


def test_a_bare_focalnet_needs_a_data_config(tmp_path):
    from timm.models.focalnet import FocalNet

    bare = FocalNet(in_chans=1, num_classes=10, embed_dim=16, depths=(1, 1, 1, 1))
    with pytest.raises(BadInput, match="the FocalNet module has no data config for input_size, mean, std") as e:
        edgefocal.build(bare, calibration=np.zeros((2, 1, 32, 32), np.float32), targets=["onnxruntime"],
                        output=tmp_path / "o")
    assert e.value.hint.startswith("pass data_config={'input_size': (C, H, W)")


def test_import_edgefocal_stays_light():
    """`import edgefocal` (and the CLI's startup) does not import torch until the API is used."""
    import subprocess
    import sys

    code = "import sys, edgefocal; assert 'torch' not in sys.modules; edgefocal.build; assert 'torch' in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent).returncode == 0


def test_paths_become_recipe_fields_and_sections_merge(tmp_path):
    """An ImageFolder path is handed to the recipe's loader; section overrides merge field by field with a
    recipe file's sections instead of replacing them."""
    from edgefocal.api import _recipe_fields, _source
    from edgefocal.recipe import load_recipe

    dataset, fields = _source("calibration", tmp_path / "calib", {})
    assert dataset is None and fields == {"calibration.source": "imagefolder", "calibration.path": str(tmp_path / "calib")}
    fields = _recipe_fields("edgefocal-fmnist", "openvino,onnxruntime", "fp32", None, None, None, None,
                            {"gates": {"min_agreement": 0.9}, "quantize.preset": "all"})
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "openvino-int8.yaml", fields)
    assert recipe.targets == ["openvino", "onnxruntime"] and recipe.quantize.preset == "all"
    assert recipe.gates.min_agreement == 0.9 and recipe.gates.max_top1_drop == 0.3  # the file's other gates stay
