"""The precision plan as data: which parts of an exported FocalNet run INT8, keyed by torch module path and
FocalNet role, and the presets that name sets of roles. precision/policy.py makes a plan; every backend
translates one (ignored scopes, excluded nodes, Q/DQ placement, per-op compression configs) and decides
nothing. It sits below the backends so that they can read it without importing the policy."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from edgefocal.errors import BadInput
from edgefocal.naming import focalnet_label

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
    sensitivity: list[dict] = field(default_factory=list)  # per part, when measured (precision/search.py)
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
