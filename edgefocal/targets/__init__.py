"""The targets, listed once and imported late (a target's backend is imported only when it is used)."""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass

from edgefocal.errors import BadInput
from edgefocal.targets.base import Target


@dataclass(frozen=True)
class TargetSpec:
    module: str
    cls: str
    extra: str


TARGETS: dict[str, TargetSpec] = {
    "onnxruntime": TargetSpec("edgefocal.targets.onnxruntime", "OnnxRuntimeTarget", "onnxruntime"),
    "openvino": TargetSpec("edgefocal.targets.openvino", "OpenVINOTarget", "openvino"),
    "tensorrt": TargetSpec("edgefocal.targets.tensorrt", "TensorRTTarget", "tensorrt"),
    "coreml": TargetSpec("edgefocal.targets.coreml", "CoreMLTarget", "coreml"),
}
#: "auto" picks the first of these that can build and run here
AUTO_ORDER = ("tensorrt", "openvino", "onnxruntime")


def get_target(name: str) -> Target:
    spec = TARGETS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(TARGETS), n=1)
        raise BadInput(f"unknown target '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""),
                       hint=f"use one of: {', '.join(TARGETS)} (or auto)")
    return getattr(importlib.import_module(spec.module), spec.cls)()


def auto_target() -> str:
    for name in AUTO_ORDER:
        try:
            avail = get_target(name).availability()
        except ImportError:
            continue
        if avail.can_build and avail.can_run:
            return name
    return "onnxruntime"
