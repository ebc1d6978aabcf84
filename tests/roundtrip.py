"""The round trip every target runs: quantize and package from a BuildContext (the pipeline's own
`package` stage under the default precision plan), load in its runner, compare with torch FP32 (NNCF's
cross-framework test templates). A target's test module plugs in with `build_and_compare`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgefocal.export import onnx_from_torch
from edgefocal.pipeline import package
from edgefocal.precision import plan_precision
from edgefocal.recipe import Recipe, load_recipe
from edgefocal.backends import get_backend
from edgefocal.core import Artifact, BuildContext
from edgefocal.verify.evaluate import predict
from edgefocal.metrics import compare


def make_context(model, data_config, calibration: np.ndarray, workdir: Path, recipe: Recipe | None = None,
                 class_names=None) -> BuildContext:
    onnx_path = workdir / "model_fp32.onnx"
    onnx_from_torch(model, tuple(data_config["input_size"]), onnx_path)
    return BuildContext(recipe=recipe or load_recipe(None), model=model, data_config=data_config,
                        class_names=class_names or [str(i) for i in range(model.num_classes)],
                        calibration=calibration, onnx_fp32=onnx_path, workdir=workdir, num_threads=2, log=lambda m: None)


def build_and_compare(target: str, precision: str, ctx: BuildContext, images: np.ndarray, labels: np.ndarray):
    """Build, run every runnable artifact on `images`, return {label: compare(...)} vs torch FP32."""
    with torch.inference_mode():
        reference = ctx.model(torch.from_numpy(images)).numpy()
    results = {}
    artifacts = build(target, precision, ctx)
    assert artifacts and artifacts[-1].precision == precision and artifacts[-1].requested
    for art in artifacts:
        assert art.path.exists(), art.path
        if art.make_runner is None:
            continue
        with art.make_runner() as runner:
            results[art.label] = compare(predict(runner, images), reference, labels)
    return results


def build(target: str, precision: str, ctx: BuildContext) -> list[Artifact]:
    """The pipeline's package stage for one target, under the recipe's precision plan."""
    import onnx

    ctx.recipe = ctx.recipe.model_copy(update={"precision": precision})
    plan = None
    if precision == "int8":
        plan = plan_precision(onnx.load(str(ctx.onnx_fp32)), ctx.recipe.quantize.preset,
                              ctx.recipe.quantize.float_modules)
    return package(get_backend(target), ctx, plan)
