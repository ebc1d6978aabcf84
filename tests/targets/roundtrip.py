"""The round trip every target runs: build from a BuildContext, load in its runner, compare with torch
FP32 (NNCF's cross-framework test templates). A target's test module plugs in with `build_and_compare`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgefocal.export import onnx_from_torch
from edgefocal.recipe import Recipe, load_recipe
from edgefocal.targets import get_target
from edgefocal.targets.base import BuildContext
from edgefocal.verify.evaluate import predict
from edgefocal.verify.metrics import compare


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
    artifacts = get_target(target).build(ctx, precision)
    assert artifacts and artifacts[-1].precision == precision and artifacts[-1].requested
    for art in artifacts:
        assert art.path.exists(), art.path
        if art.make_runner is None:
            continue
        with art.make_runner() as runner:
            results[art.label] = compare(predict(runner, images), reference, labels)
    return results
