"""The FocalNet precision policy: which parts of a FocalNet run INT8 and which stay float, decided once.

This is the only module that decides precision. A `PrecisionPlan` lists every quantizable part of the
exported graph — a torch module path and its FocalNet role (edgefocal/naming.py) with the ONNX nodes that
compute it — and says INT8 or float for each, and why. The backends translate it and decide nothing:
quantize/openvino.py and quantize/onnxruntime.py into ignored scopes / excluded nodes, tensorrt_qdq.py
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

import difflib
import re
from dataclasses import dataclass, field

from edgefocal.errors import BadInput
from edgefocal.naming import focalnet_label, roles

WEIGHTED_ROLES = ("stem", "downsample", "f", "focal", "h", "proj", "fc1", "fc2", "head")
ROLES = WEIGHTED_ROLES + ("gates", "modulator", "context", "act", "norm", "residual", "pool")


@dataclass(frozen=True)
class Preset:
    name: str
    int8_roles: frozenset[str]
    description: str


PRESETS: dict[str, Preset] = {
    "focalnet": Preset("focalnet", frozenset({"stem", "downsample", "f", "h", "proj", "fc1", "fc2"}),
                       "INT8 stem/downsample convs, modulation f/h/proj, MLP fc1/fc2; depthwise focal convs, gate "
                       "and modulator products, global context, GELU, LayerNorm inputs, residual adds and head "
                       "float"),
    "focalnet-fused": Preset("focalnet-fused", frozenset({"stem", "downsample", "f", "h", "proj", "fc1", "fc2",
                                                          "residual", "norm"}),
                             "focalnet plus INT8 residual adds and LayerNorm inputs, so TensorRT can fuse them into "
                             "the convs (faster engines, lower agreement)"),
    "all": Preset("all", frozenset(ROLES), "INT8 on every part, depthwise focal convs, products and head included"),
    "gemm-only": Preset("gemm-only", frozenset({"f", "h", "proj", "fc1", "fc2", "head"}),
                        "INT8 only on the 1×1 convs and the Linear head (matrix multiplies)"),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        raise BadInput(f"unknown precision preset '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""),
                       hint=f"use one of: {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class Part:
    """One quantizable FocalNet part: a module and a role, computed by `nodes` of the exported ONNX."""

    module: str
    role: str
    nodes: tuple[str, ...]
    int8: bool
    why: str  # "preset focalnet", "quantize.float_modules", ...

    @property
    def label(self) -> str:
        return focalnet_label(self.module, self.role)


@dataclass
class PrecisionPlan:
    """Every quantizable part of one exported FocalNet and its precision."""

    preset: str
    parts: list[Part] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)  # the float_modules regexes asked for
    sensitivity: list[dict] = field(default_factory=list)  # per part, when measured (quantize/mixed.py)
    search: dict | None = None  # what the mixed-precision search chose, and how it validated

    def nodes(self, int8: bool, roles_: tuple[str, ...] | None = None) -> list[str]:
        """ONNX node names of the INT8 (or float) parts, optionally of some roles only."""
        return [n for p in self.parts if p.int8 == int8 and (roles_ is None or p.role in roles_) for n in p.nodes]

    def is_int8(self, node: str) -> bool:
        return any(node in p.nodes for p in self.parts if p.int8)

    def module_is_int8(self, module: str, role: str | None = None) -> bool | None:
        """Precision of a module's part (None when the plan has no such part)."""
        found = [p.int8 for p in self.parts if p.module == module and (role is None or p.role == role)]
        return all(found) if found else None

    def role_counts(self, int8: bool) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.parts:
            if p.int8 == int8:
                counts[p.role] = counts.get(p.role, 0) + 1
        return dict(sorted(counts.items()))

    def float_modules(self) -> list[str]:
        """Module paths of the float weighted parts, in graph order (what report.json lists)."""
        return [p.module for p in self.parts if not p.int8 and p.role in WEIGHTED_ROLES]

    def summary(self) -> dict:
        """report.json's precision_plan section."""
        out = {"policy": self.preset, "float_modules": self.float_modules(),
               "int8_roles": self.role_counts(True), "float_roles": self.role_counts(False),
               "float_parts": [{"module": p.module, "role": p.role, "why": p.why} for p in self.parts if not p.int8],
               "sensitivity": self.sensitivity}
        if self.search is not None:
            out["mixed_precision"] = self.search
            out["validation_agreement"] = self.search.get("validation_agreement")
        return out


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
