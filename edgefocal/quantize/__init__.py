"""The quantize stage: one precision plan (policy.py), translated by each target's backend module.

`plan_precision` decides once which FocalNet parts are INT8; `quantize(target, float_model, plan, ctx)`
hands the target's float model (an ov.Model, an ONNX path, a Core ML program) to that target's backend,
which places and calibrates INT8 exactly where the plan says. Targets then only save and run the result."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefocal.quantize.policy import PRESETS, PrecisionPlan, plan_precision

if TYPE_CHECKING:
    from edgefocal.targets.base import BuildContext

__all__ = ["PRESETS", "PrecisionPlan", "Quantized", "plan_precision", "probe", "quantize"]


@dataclass
class Quantized:
    """An INT8 model in the target backend's own form, and what the report says about it."""

    model: Any
    info: dict = field(default_factory=dict)


def quantize(target: str, float_model: Any, plan: PrecisionPlan, ctx: "BuildContext") -> Quantized:
    """INT8 `float_model` for `target` under `plan`, calibrated on ctx.calibration."""
    spec = ctx.recipe.quantize
    if target == "openvino":
        from edgefocal.quantize import openvino

        return Quantized(openvino.quantize(float_model, plan, ctx.calibration, spec, ctx.validation))
    if target == "onnxruntime":
        from edgefocal.quantize import onnxruntime

        return Quantized(onnxruntime.quantize(Path(float_model), plan, ctx.calibration, spec, ctx.validation),
                         {"variant": "U8S8 Q/DQ"})
    if target == "tensorrt" and ctx.recipe.tensorrt.qdq_producer == "modelopt":
        from edgefocal.quantize import modelopt_qdq

        return Quantized(*modelopt_qdq.quantize(Path(float_model), plan, ctx.calibration, ctx.log))
    if target == "tensorrt":
        from edgefocal.quantize import tensorrt_qdq

        model, info = tensorrt_qdq.quantize(Path(float_model), plan, ctx.calibration, spec, ctx.log)
        return Quantized(model, info)
    if target == "coreml":
        import tempfile

        from edgefocal.quantize import coreml

        with tempfile.TemporaryDirectory(dir=ctx.workdir) as scratch:
            model, info = coreml.quantize(float_model, plan, ctx.calibration, ctx.recipe.coreml, ctx.data_config,
                                          [n for n, _ in ctx.model.named_modules()], Path(scratch), ctx.log)
        return Quantized(model, info)
    raise ValueError(f"no quantizer for target {target}")  # targets/__init__.py lists every target


def probe(target: str, float_model: Any, plan: PrecisionPlan, ctx: "BuildContext"):
    """A mixed-precision Probe (quantize/mixed.py) of `target`: its all-INT8 model under `plan`, able to run
    variants with parts float on this machine's runtime; None where no runtime can (Core ML off macOS)."""
    from edgefocal.quantize.surgery import onnx_probe, openvino_probe

    if target not in ("openvino", "onnxruntime", "tensorrt"):
        return None
    int8 = quantize(target, float_model, plan, ctx).model
    if target == "openvino":
        return openvino_probe(int8, float_model, ctx.num_threads)
    return onnx_probe(target, int8, ctx.onnx_fp32, ctx.num_threads)
