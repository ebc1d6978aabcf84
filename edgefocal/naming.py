"""FocalNet names for graph nodes: the torch module path and FocalNet role of every node of the exported ONNX.

The dynamo exporter names nodes after aten ops (`node_conv2d_17`), but records each node's module scopes in
its `pkg.torch.onnx.name_scopes` metadata. `name_onnx_nodes` renames every node `<module path>/<op type>`
(`layers.2.blocks.1.mlp.fc1/Conv`), so the names survive into the OpenVINO IR (its op names are the ONNX
node names), NNCF's ignored scopes, Q/DQ graphs, reports and errors. `role_of` gives the FocalNet role of a
node (timm/models/focalnet.py: stem, downsample, f, focal levels, gate products, global context, h, proj,
MLP, LayerNorm, head), which is what the precision policy (precision/policy.py) decides on.
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from typing import Mapping, Sequence

SCOPES_KEY = "pkg.torch.onnx.name_scopes"
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

#: module path → role of the weighted op it holds; the first match wins
_WEIGHTED_ROLES: list[tuple[str, str]] = [
    (r"^stem\.proj$", "stem"),
    (r"^layers\.\d+\.downsample\.proj$", "downsample"),
    (r"\.modulation\.f$", "f"),
    (r"\.modulation\.focal_layers\.\d+\.0$", "focal"),
    (r"\.modulation\.h$", "h"),
    (r"\.modulation\.proj$", "proj"),
    (r"\.mlp\.fc1$", "fc1"),
    (r"\.mlp\.fc2$", "fc2"),
    (r"^head(\.fc)?$", "head"),
]


def scope_of(node) -> str | None:
    """The innermost torch module of a node ('' for the model itself), or None without exporter metadata."""
    for prop in node.metadata_props:
        if prop.key == SCOPES_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            # the last scope is the aten op itself; "_..." scopes are torch.export's own hooks, not modules
            mods = [s for s in scopes[:-1] if s and not s.startswith("_")]
            return mods[-1] if mods else ""
    return None


def consumers(nodes) -> dict[str, list]:
    """Tensor name → the nodes that read it (the rewrites and the conformance checks walk graphs both ways)."""
    out: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _scopes(nodes) -> dict[str, str]:
    """node name → module path; a node the optimizer added (a Split, no metadata) takes its producer's."""
    producer = {o: n for n in nodes for o in n.output}
    out: dict[str, str] = {}
    for n in nodes:
        scope = scope_of(n)
        if scope is None:
            p = producer.get(n.input[0]) if n.input else None
            scope = out.get(p.name, "") if p is not None else ""
        out[n.name] = scope
    return out


def name_onnx_nodes(model) -> None:
    """Rename every node `<module path>/<op type>` (`_1`, `_2`... where a module holds several)."""
    scopes = _scopes(model.graph.node)
    seen: dict[str, int] = {}
    for n in model.graph.node:
        base = f"{scopes[n.name] or 'model'}/{n.op_type}"
        k = seen.get(base, 0)
        seen[base] = k + 1
        n.name = base if k == 0 else f"{base}_{k}"


def module_of(node_name: str) -> str:
    """The module path in a name given by `name_onnx_nodes` (also an OpenVINO op name derived from it)."""
    return node_name.split("/", 1)[0]


def made_from(node_name: str, names) -> bool:
    """Whether a node is one of `names` or made from one by a graph rewrite, which names what it makes
    `<original name>/<part>` (conv_split.py, pointwise_matmul.py)."""
    return any(node_name == n or node_name.startswith(n + "/") for n in names)


def weighted_role(module: str) -> str | None:
    for pattern, role in _WEIGHTED_ROLES:
        if re.search(pattern, module):
            return role
    return None


def role_of(node, module: str, producer: dict) -> str | None:
    """The FocalNet role of one ONNX node, or None for data movement (Transpose, Reshape, ...)."""
    op = node.op_type
    if op in WEIGHTED_OPS:
        return weighted_role(module)
    if op == "LayerNormalization":
        return "norm"
    if re.search(r"(\.act|\.focal_layers\.\d+\.1)$", module):
        return "context" if module.endswith("modulation.act") else "act"
    if module.endswith(".modulation"):
        if op == "ReduceMean":
            return "context"
        if op == "Mul":
            from_h = any(weighted_role(module_of(p.name)) == "h" for t in node.input if (p := producer.get(t)))
            return "modulator" if from_h else "gates"
    if op == "Add" and re.search(r"^layers\.\d+\.blocks\.\d+$", module):
        return "residual"
    if op == "ReduceMean" and module.startswith("head"):
        return "pool"
    return None


def roles(model) -> dict[str, tuple[str, str]]:
    """{node name: (module path, role)} for every node with a FocalNet role."""
    producer = {o: n for n in model.graph.node for o in n.output}
    scopes = _scopes(model.graph.node)
    out = {}
    for n in model.graph.node:
        role = role_of(n, scopes[n.name], producer)
        if role is not None:
            out[n.name] = (scopes[n.name], role)
    return out


def focalnet_label(module: str | None, role: str | None = None) -> str:
    """A module path in FocalNet terms, for reports: 'stage 3 block 2 mlp fc1', 'stage 2 block 1 focal level 0'."""
    if not module:
        return "(unknown)"
    m = re.match(r"layers\.(\d+)\.(?:blocks\.(\d+)\.?)?(.*)$", module)
    if not m:
        return {"stem.proj": "stem conv", "head.fc": "head", "head": "head"}.get(module, module.replace(".", " "))
    stage, block, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
    where = f"stage {stage}" + (f" block {int(block) + 1}" if block is not None else "")
    level = re.match(r"modulation\.focal_layers\.(\d+)", rest)
    if level:
        return f"{where} focal level {level.group(1)}"
    if rest == "modulation" and role in ("gates", "modulator", "context"):
        rest = {"gates": "gate products", "modulator": "modulator product q·h", "context": "global context"}[role]
    rest = {"downsample.proj": "downsample conv", "": role or ""}.get(rest, rest)
    return f"{where} {rest.replace('.', ' ')}".strip()


# ---------------------------------------------------------------- runtime profiles back to modules

OTHER = "other"


def module_of_op(name: str) -> str:
    """'layers.0.blocks.0.mlp.fc1/Conv/WithoutBiases' → 'layers.0.blocks.0.mlp.fc1'; runtime-made ops → other."""
    head = name.split("/", 1)[0]
    return head if "/" in name and re.match(r"^(stem|layers|head|norm|model)\b", head) else OTHER


def by_module(op_times: dict[str, float]) -> dict[str, float]:
    """ms per torch module path (and "other" for the runtime's own ops)."""
    out: dict[str, float] = defaultdict(float)
    for op, ms in op_times.items():
        out[module_of_op(op)] += ms
    return dict(out)


def by_stage(module_times: dict[str, float]) -> dict[str, float]:
    """ms per FocalNet stage ('0'..'3'; the stem, head and runtime ops under "other")."""
    out: dict[str, float] = defaultdict(float)
    for module, ms in module_times.items():
        m = re.match(r"layers\.(\d+)\.", module + ".")
        out[m.group(1) if m else OTHER] += ms
    return dict(out)


# ---------------------------------------------------------------- executed ops back to modules

#: how an executed op was given its module: its own name, a graph op fused into it, the ops it feeds, the ops
#: that feed it (verify/profile.py reports the time each rule attributed)
BY_NAME, BY_FUSED, BY_CONSUMERS, BY_PRODUCERS = "name", "fused op", "feeds", "fed by"


def attribute(graph: Mapping[str, Sequence[str]], named: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """{op: (module, rule)} for the ops of an executed graph ({op: the ops feeding it}, in execution order)
    whose module can be told: first `named` (what the runtime's own names say, by BY_NAME or BY_FUSED); then an
    op that feeds only ops of one module belongs to it (a layout reorder before a conv, the pieces of a
    LayerNorm the runtime decomposed under names of its own); then an op fed only by one module's ops (a bias
    add the runtime named after the graph output). Graph outputs and constants have no say; an op that feeds,
    or is fed by, two modules stays unattributed."""
    readers: dict[str, list[str]] = defaultdict(list)
    for op, inputs in graph.items():
        for i in inputs:
            readers[i].append(op)
    found = {op: named[op] for op in graph if op in named and named[op][0] != OTHER}
    changed = True
    while changed:
        changed = any([_by_neighbours(op, readers.get(op, ()), readers, found, BY_CONSUMERS) for op in reversed(graph)])
        changed = any([_by_neighbours(op, graph[op], graph, found, BY_PRODUCERS) for op in graph]) or changed
    return found


def _by_neighbours(op: str, neighbours: Sequence[str], further: Mapping, found: dict, rule: str) -> bool:
    """Attribute `op` to the one module all its neighbours belong to (a neighbour that leads nowhere further,
    a graph output or a constant, has no say); True when it did."""
    if op in found:
        return False
    modules = {found[n][0] if n in found else None for n in neighbours if n in found or further.get(n)}
    if len(modules) != 1 or None in modules:
        return False
    found[op] = (modules.pop(), rule)
    return True


#: module path → the kind of FocalNet part it is, for profiles (weighted modules take their role); first match
_PART_KINDS: list[tuple[str, str]] = [
    (r"(^|\.)norm\d?$", "norm"),
    (r"\.focal_layers\.\d+\.1$", "focal act"),
    (r"\.modulation\.act$", "context"),
    (r"\.modulation$", "modulation"),
    (r"\.mlp\.act$", "act"),
    (r"^layers\.\d+\.blocks\.\d+$", "residual"),
    (r"^head\.global_pool", "pool"),
    (r"^(head|stem|model)\b", r"\1"),
]


def part_kind(module: str) -> str:
    """'layers.2.blocks.1.mlp.fc1' → 'fc1', 'layers.0.blocks.0.norm2' → 'norm': what kind of FocalNet part a
    module is, whatever its stage and block."""
    if module == OTHER:
        return OTHER
    if (role := weighted_role(module)) is not None:
        return role
    for pattern, kind in _PART_KINDS:
        if m := re.search(pattern, module):
            return m.expand(kind)
    return module


def stage_of(module: str) -> str:
    """'stage 1'..'stage N' for the modules of layers.0..N-1; 'stem', 'head' (the final norm too), 'model'."""
    if m := re.match(r"layers\.(\d+)\.", module + "."):
        return f"stage {int(m.group(1)) + 1}"
    head = module.split(".", 1)[0]
    return {"norm": "head", "head": "head", "stem": "stem", "model": "model"}.get(head, OTHER)
