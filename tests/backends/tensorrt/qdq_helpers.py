"""Test helper: plan, quantize and save a TensorRT Q/DQ ONNX in one call."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from edgefocal.backends.tensorrt.qdq import quantize
from edgefocal.plan import WEIGHTED_ROLES
from edgefocal.precision.policy import plan_precision


def qdq_onnx_for_tensorrt(onnx_fp32: Path, calibration: np.ndarray, preset: str, out: Path,
                          log: Callable[[str], None] = print, float_modules: list[str] | None = None) -> dict:
    """The Q/DQ ONNX of `onnx_fp32` under the policy `preset` at `out`; returns the placement facts plus the
    INT8 weighted nodes."""
    plan = plan_precision(onnx.load(str(onnx_fp32)), preset, float_modules)
    model, info = quantize(onnx_fp32, plan, calibration, log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return {**info, "int8_nodes": plan.nodes(int8=True, roles_=WEIGHTED_ROLES), "path": str(out)}
