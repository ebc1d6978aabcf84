"""The FocalNet precision policy: which parts of a FocalNet run INT8 and which stay float, decided once.

This is the only module that decides precision. A `PrecisionPlan` lists every quantizable part of the
exported graph — a torch module path and its FocalNet role (edgefocal/naming.py) with the ONNX nodes that
compute it — and says INT8 or float for each, and why. The backends translate it and decide nothing:
backends/openvino/quantize.py and backends/onnxruntime/quantize.py into ignored scopes / excluded nodes, backends/tensorrt/qdq.py
into Q/DQ placement, coreml.py into per-op compression configs.

"INT8" for a part means its inputs are quantized so the runtime may compute it in INT8; "float" means no
backend quantizes its inputs. Where INT8 hurts LayerNorm models like FocalNet (RepQ-ViT, PTQ4ViT):
post-LayerNorm and post-GELU activations, activation×activation products (gates, q·h) and depthwise convs,
which gain little from INT8 anyway.

Presets:
- `focalnet` (default): INT8 on the dense convs that carry the MACs (stem and downsample convs, modulation
  f/h/proj, MLP fc1/fc2); float for the depthwise focal convs, gate products, modulator product, global
  context, GELU, pooling, the residual stream (adds and LayerNorm inputs: quantizing it cost the most
  agreement per part in measured sensitivity) and the classifier head.
- `focalnet-fused`: `focalnet` plus INT8 residual adds and LayerNorm inputs, which TensorRT fuses into the
  convs (faster engines, lower agreement).
- `all`: every part INT8.
- `gemm-only`: only the 1×1 convs and the head (the matrix multiplies).
"""
from __future__ import annotations

import re

from edgefocal.errors import BadInput
from edgefocal.naming import roles
from edgefocal.plan import WEIGHTED_ROLES, Part, PrecisionPlan, get_preset


def plan_precision(onnx_model, preset: str = "focalnet", float_modules: list[str] | None = None) -> PrecisionPlan:
    """The plan for an exported FocalNet: the preset's roles, minus the modules matching `float_modules`
    (regexes over module paths, from the recipe or from measured sensitivity)."""
    chosen = get_preset(preset)
    parts: dict[tuple[str, str], list[str]] = {}
    for node, (module, role) in roles(onnx_model).items():
        parts.setdefault((module, role), []).append(node)
    if not any(role in WEIGHTED_ROLES for _, role in parts):
        raise BadInput("the ONNX graph has no FocalNet modules the precision policy knows (stem, f, h, proj, fc1, ...)",
                       hint="export a timm FocalNet with edgefocal's exporter, which keeps module paths in the graph")
    patterns = [re.compile(p) for p in float_modules or []]
    plan = PrecisionPlan(chosen.name, forced=list(float_modules or []))
    for (module, role), nodes in parts.items():
        forced = any(p.search(module) for p in patterns)
        int8 = role in chosen.int8_roles and not forced
        why = "quantize.float_modules" if forced and role in chosen.int8_roles else f"preset {chosen.name}"
        plan.parts.append(Part(module, role, tuple(nodes), int8, why))
    return plan
