"""Where INT8 goes in a FocalNet: placement presets over the exported ONNX graph, named in FocalNet terms.

The dynamo exporter names nodes after aten ops (`node_conv2d_20`), not modules, but every weighted node
reads its weight from an initializer named after the module parameter
(`layers.2.blocks.0.modulation.h.weight`), and most nodes carry the module path in the
`pkg.torch.onnx.name_scopes` metadata. The role of a weighted node (stem, downsample, f, focal level, h,
proj, fc1, fc2, head) comes from that path, so presets survive re-exports and node renumbering.

Presets (see FOCALNET.md, "Where INT8 hurts"):
- `focalnet` (default): INT8 on the dense convs that carry the FLOPs — stem and downsample convs,
  modulation f/h/proj, MLP fc1/fc2. The depthwise focal convs, the gate products (ctx*gates, q*h(.)),
  the global-context mean, LayerNorm and the classifier head stay FP16.
- `all`: every weighted op (also the depthwise focal convs and the head).
- `gemm-only`: only the 1×1 convs and the Linear head (the ops that are matrix multiplies), the spatial
  stem/downsample convs stay FP16.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Iterable

from edgefocal.errors import BadInput

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

#: module path → FocalNet role; the first match wins
_ROLE_PATTERNS: list[tuple[str, str]] = [
    (r"^stem\.proj$", "stem"),
    (r"^layers\.\d+\.downsample\.proj$", "downsample"),
    (r"\.modulation\.f$", "f"),
    (r"\.modulation\.focal_layers\.\d+(\.0)?$", "focal"),
    (r"\.modulation\.h$", "h"),
    (r"\.modulation\.proj$", "proj"),
    (r"\.mlp\.fc1$", "fc1"),
    (r"\.mlp\.fc2$", "fc2"),
    (r"^head(\.fc)?$", "head"),
]
ROLES = ("stem", "downsample", "f", "focal", "h", "proj", "fc1", "fc2", "head")


@dataclass(frozen=True)
class QDQPreset:
    """Which weighted roles run INT8, and which TensorRT-fusion Q/DQ pairs are added on top."""

    name: str
    int8_roles: frozenset[str]
    #: Q/DQ on the skip input of `x + conv(...)` so TensorRT fuses the Add into the INT8 conv
    residual_qdq: bool = False
    #: Q/DQ between Transpose and LayerNorm after an INT8 conv (stem/downsample), so the conv can emit
    #: INT8 instead of an int8-in/fp16-out kernel followed by a reformat (NVIDIA Model Optimizer's fix)
    layernorm_qdq: bool = False
    description: str = ""


PRESETS: dict[str, QDQPreset] = {
    "focalnet": QDQPreset(
        "focalnet",
        frozenset({"stem", "downsample", "f", "h", "proj", "fc1", "fc2"}),
        residual_qdq=True,
        layernorm_qdq=True,
        description="INT8 stem/downsample convs, modulation f/h/proj, MLP fc1/fc2; depthwise focal convs, "
        "gate products, global context, LayerNorm and head in FP16",
    ),
    "all": QDQPreset("all", frozenset(ROLES), residual_qdq=True, layernorm_qdq=True,
                     description="INT8 on every weighted op, including the depthwise focal convs and the head"),
    "gemm-only": QDQPreset("gemm-only", frozenset({"f", "h", "proj", "fc1", "fc2", "head"}),
                           residual_qdq=True,
                           description="INT8 only on 1×1 convs and the Linear head (matrix multiplies)"),
}


def get_preset(name: str) -> QDQPreset:
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        raise BadInput(f"unknown Q/DQ preset '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""),
                       hint=f"use one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def module_path(node, initializers: set[str]) -> str | None:
    """The torch module a node belongs to: from its weight initializer, else from exporter metadata."""
    if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in initializers:
        name = node.input[1]
        if name.endswith(".weight"):
            return name[: -len(".weight")]
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            mods = [s for s in scopes[:-1] if s]  # the last scope is the aten op itself
            return mods[-1] if mods else None
    return None


def role_of(path: str | None) -> str | None:
    if not path:
        return None
    for pattern, role in _ROLE_PATTERNS:
        if re.search(pattern, path):
            return role
    return None


def focalnet_label(path: str | None) -> str:
    """A module path in FocalNet terms, for reports: 'stage 3 block 1 modulation h', 'stage 2 focal level 0'."""
    if not path:
        return "(unknown)"
    m = re.match(r"layers\.(\d+)\.(?:blocks\.(\d+)\.)?(.*)$", path)
    if not m:
        return {"stem.proj": "stem conv", "head.fc": "head", "head": "head", "norm": "final LayerNorm"}.get(path, path)
    stage, block, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
    where = f"stage {stage}" + (f" block {int(block) + 1}" if block is not None else "")
    lvl = re.match(r"modulation\.focal_layers\.(\d+)", rest)
    if lvl:
        return f"{where} focal level {lvl.group(1)} (depthwise)"
    rest = {"downsample.proj": "downsample conv", "mlp.fc1": "mlp fc1", "mlp.fc2": "mlp fc2"}.get(rest, rest)
    return f"{where} {rest.replace('.', ' ')}"


@dataclass
class WeightedNode:
    name: str
    op_type: str
    module: str | None
    role: str | None


def weighted_nodes(model) -> list[WeightedNode]:
    """Every Conv/Gemm/MatMul with an initializer weight, with its module path and FocalNet role."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in inits:
            path = module_path(node, inits)
            out.append(WeightedNode(node.name, node.op_type, path, role_of(path)))
    return out


def split_by_preset(model, preset: QDQPreset | str) -> tuple[list[WeightedNode], list[WeightedNode]]:
    """(INT8 nodes, float nodes) of the weighted ops under `preset`. Unknown roles stay in float."""
    if isinstance(preset, str):
        preset = get_preset(preset)
    nodes = weighted_nodes(model)
    if not any(n.role for n in nodes):
        raise BadInput("the ONNX graph has no FocalNet modules the Q/DQ presets know (stem, f, h, proj, fc1, ...)",
                       hint="export a timm FocalNet with edgefocal's exporter, which keeps module names on weights")
    int8 = [n for n in nodes if n.role in preset.int8_roles]
    fp = [n for n in nodes if n.role not in preset.int8_roles]
    return int8, fp


def count_roles(nodes: Iterable[WeightedNode]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.role or "other"] = counts.get(n.role or "other", 0) + 1
    return dict(sorted(counts.items()))
