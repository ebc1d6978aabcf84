"""Core ML target: the build contract, the info the report needs, recipe checks, macOS prediction."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("coremltools")

from edgefocal.errors import BadInput  # noqa: E402
from edgefocal.recipe import REPO_ROOT, CoreMLSpec, Recipe, load_recipe  # noqa: E402
from edgefocal.core import BuildContext  # noqa: E402
from edgefocal.backends.coreml import CoreMLExecutorRunner, CoreMLRunner, CoreMLBackend, on_macos  # noqa: E402
from roundtrip import build  # noqa: E402


def _ctx(tmp_path: Path, model, data_config, class_names, calibration, **coreml) -> BuildContext:
    """A context whose ONNX export exists: the precision plan of an int8 build is made from it."""
    from edgefocal.export import onnx_from_torch

    recipe = Recipe.model_validate({"targets": ["coreml"], "coreml": coreml})
    onnx_path = tmp_path / "model.onnx"
    if data_config:
        onnx_from_torch(model, tuple(data_config["input_size"]), onnx_path)
    return BuildContext(recipe, model, data_config, class_names, calibration, onnx_path, tmp_path, log=lambda m: None)


def _torch_logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_fp32_build_contract(tmp_path, tiny_focalnet):
    from timm.data import resolve_model_data_config

    dc = resolve_model_data_config(tiny_focalnet)
    names = [f"class{i}" for i in range(10)]
    arts = build("coreml", "fp32", _ctx(tmp_path, tiny_focalnet, dc, names, None, batch=[1, 8]))
    assert len(arts) == 1 and arts[0].requested and arts[0].path.suffix == ".mlpackage"
    info = arts[0].info
    assert info["size_bytes"] > 0 and info["op_census"]["conv"] > 0 and info["input_type"] == "image"
    if not on_macos():
        assert info["latency"] == "macOS only" and "macOS" in arts[0].no_latency
    runner = arts[0].make_runner()
    assert isinstance(runner, CoreMLRunner if on_macos() else CoreMLExecutorRunner)
    x = np.random.default_rng(0).standard_normal((5, *dc["input_size"])).astype(np.float32)
    with runner:
        out = runner.infer(x)
    # the image input takes pixels: the runner undoes the normalization, the program redoes it
    assert np.abs(out - _torch_logits(tiny_focalnet, x)).max() <= 1e-3


@pytest.mark.slow
def test_w8a8_build_on_the_trained_default(tmp_path, default_model, fmnist_calibration, fmnist_eval):
    ctx = _ctx(tmp_path, default_model.model, default_model.data_config, default_model.class_names,
               fmnist_calibration, compression="w8a8")
    fp32, int8 = build("coreml", "int8", ctx)
    assert not fp32.requested and int8.requested and int8.precision == "int8"
    assert int8.info["minimum_deployment_target"] == "iOS17"
    assert int8.info["activation_quantize_ops"] > 20  # before each INT8 op's activation input (no suffix pairs)
    assert int8.info["compressed_weight_tensors"]["constexpr_affine_dequantize"] > 20
    assert int8.info["size_ratio_vs_fp32"] <= 0.30
    x, labels = fmnist_eval
    ref = _torch_logits(default_model.model, x)
    with int8.make_runner() as r:
        out = r.infer(x)
    top1_drop = 100 * ((ref.argmax(1) == labels).mean() - (out.argmax(1) == labels).mean())
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.98
    assert top1_drop <= 1.0


def test_w8a8_on_ios16_is_refused(tmp_path, tiny_focalnet):
    from timm.data import resolve_model_data_config

    ctx = _ctx(tmp_path, tiny_focalnet, resolve_model_data_config(tiny_focalnet), [str(i) for i in range(10)],
               None, compression="w8a8", minimum_deployment_target="iOS16")
    with pytest.raises(BadInput, match="iOS17"):
        build("coreml", "int8", ctx)


def test_unknown_precision(tmp_path, tiny_focalnet):
    with pytest.raises(BadInput, match="does not support precision"):
        build("coreml", "int4", _ctx(tmp_path, tiny_focalnet, {}, [], None))


def test_spec_defaults_and_checks():
    assert CoreMLSpec().deployment_target("int8") == "iOS17"  # W8A8 needs iOS17
    assert CoreMLSpec().deployment_target("fp32") == "iOS16"
    assert CoreMLSpec(compression="w8").deployment_target("int8") == "iOS16"
    with pytest.raises(ValueError, match="batch"):
        CoreMLSpec(batch=(8, 2))
    with pytest.raises(ValueError):
        CoreMLSpec(compression="w4")


@pytest.mark.parametrize("name", ["coreml-w8a8", "coreml-w8-palettized"])
def test_shipped_recipes_ask_for_what_core_ml_can_build(name):
    """A shipped recipe's deployment target must allow its compression (W8A8 needs iOS17), else the build
    would refuse it only after calibration."""
    recipe = load_recipe(REPO_ROOT / "recipes" / f"{name}.yaml")
    target = recipe.coreml.deployment_target(recipe.precision)
    assert not (recipe.coreml.compression == "w8a8" and target in ("iOS16", "macOS13")), (name, target)
    assert recipe.precision in CoreMLBackend.precisions


def test_availability_says_how_artifacts_are_verified_here():
    avail = CoreMLBackend().availability()
    assert avail.can_build and avail.can_run
    assert ("prediction available" in avail.detail) == on_macos()
    assert ("numpy ML-program executor" in avail.detail) == (not on_macos())


@pytest.mark.macos
def test_core_ml_prediction_matches_the_executor(tmp_path, tiny_focalnet):
    """On macOS: real Core ML prediction of the FP32 package agrees with the numpy executor."""
    from timm.data import resolve_model_data_config

    dc = resolve_model_data_config(tiny_focalnet)
    (art,) = build("coreml", "fp32", _ctx(tmp_path, tiny_focalnet, dc, [str(i) for i in range(10)], None,
                                          input_type="tensor"))
    x = np.random.default_rng(0).standard_normal((4, *dc["input_size"])).astype(np.float32)
    with CoreMLRunner(art.path, compute_units="CPU_ONLY") as coreml, CoreMLExecutorRunner(art.path) as ex:
        assert np.abs(coreml.infer(x) - ex.infer(x)).max() <= 1e-3
