"""LayerNorm over the channel axis of NCHW, without the transposes around it, for runtimes that keep NCHW.

timm's LayerNorm2d (every FocalNet norm) permutes NCHW → NHWC, normalizes the last axis and permutes back,
so the ONNX export holds `Transpose → LayerNormalization → Transpose`: ONNX's LayerNormalization can only
normalize trailing axes. OpenVINO runs those transposes with its reference kernel and reorders the
blocked layouts around them (measured on focalnet_tiny_srf INT8, batch 1: 2.8 of 21.9 ms; the same
normalization written over axis 1 runs fused in its elementwise subgraphs, 16.5 ms in all). The rewrite
below computes the same normalization over axis 1: (x − mean) / sqrt(var + eps) · γ + β, with mean and var
taken over the channels. TensorRT (its normalization layer) and Core ML (layer_norm) keep the original
node; this is for the runtimes that measured faster with it.

Hand-written on the ONNX graph rather than with onnxscript's rewriter because every new node must carry
the LayerNorm's own name as a prefix: the precision plan, NNCF's ignored scope and the per-module profiles
find the norm's module through it."""
from __future__ import annotations

import numpy as np

from edgefocal.naming import consumers
from edgefocal.onnx_graph import attribute, drop_unread_initializers

TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]


def _perm(node) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def _matches(model) -> list[tuple]:
    """(transpose in, LayerNormalization, transpose out) triples where the norm runs over the channels of an
    NCHW tensor and nothing else reads the NHWC tensors."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    readers = consumers(graph.node)
    out = []
    for ln in graph.node:
        if ln.op_type != "LayerNormalization" or attribute(ln, "axis", -1) not in (-1, 3):
            continue
        before = producer.get(ln.input[0])
        after = readers.get(ln.output[0], [])
        if (before is None or before.op_type != "Transpose" or _perm(before) != TO_NHWC
                or len(after) != 1 or after[0].op_type != "Transpose" or _perm(after[0]) != TO_NCHW
                or len(readers.get(before.output[0], [])) != 1 or len(ln.output) > 1 and any(ln.output[1:])):
            continue
        out.append((before, ln, after[0]))
    return out


def _initializer(model, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    return next((numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name), None)


def layernorm_on_channels(model) -> int:
    """Rewrite, in place, every `Transpose(0,2,3,1) → LayerNormalization → Transpose(0,3,1,2)` of an ONNX
    model into the same normalization over axis 1; returns how many were rewritten. Nodes are named
    `<LayerNorm node name>/<op>`, so they keep the norm's module path."""
    from onnx import numpy_helper

    graph = model.graph
    rewritten = 0
    for before, ln, after in _matches(model):
        gamma = _initializer(model, ln.input[1])
        beta = _initializer(model, ln.input[2]) if len(ln.input) > 2 and ln.input[2] else None
        if gamma is None or gamma.ndim != 1:
            continue
        consts = {"axes": np.array([1], dtype=np.int64), "eps": np.array(attribute(ln, "epsilon", 1e-5), dtype=gamma.dtype),
                  "gamma": gamma.reshape(-1, 1, 1)}
        if beta is not None:
            consts["beta"] = beta.reshape(-1, 1, 1)
        for key, value in consts.items():
            graph.initializer.append(numpy_helper.from_array(value, f"{ln.name}/{key}"))
        nodes = _channel_norm(ln.name, before.input[0], after.output[0], beta is not None)
        for n in nodes:  # keep the exporter's module scopes, which naming.roles reads
            n.metadata_props.extend(ln.metadata_props)
        position = list(graph.node).index(before)
        for old in (before, ln, after):
            graph.node.remove(old)
        for i, n in enumerate(nodes):
            graph.node.insert(position + i, n)
        rewritten += 1
    drop_unread_initializers(model)
    return rewritten


def _channel_norm(base: str, x: str, y: str, shift: bool) -> list:
    """(x − mean) / sqrt(var + eps) · γ + β over axis 1, every tensor and node named under `base`."""
    from onnx import helper

    def t(name: str) -> str:
        return f"{base}/{name}"

    nodes = [
        helper.make_node("ReduceMean", [x, t("axes")], [t("mean")], t("ReduceMean"), keepdims=1),
        helper.make_node("Sub", [x, t("mean")], [t("centered")], t("Sub")),
        helper.make_node("Mul", [t("centered"), t("centered")], [t("squared")], t("Square")),
        helper.make_node("ReduceMean", [t("squared"), t("axes")], [t("var")], t("ReduceMean_var"), keepdims=1),
        helper.make_node("Add", [t("var"), t("eps")], [t("var_eps")], t("AddEps")),
        helper.make_node("Sqrt", [t("var_eps")], [t("std")], t("Sqrt")),
        helper.make_node("Div", [t("centered"), t("std")], [t("normalized")], t("Div")),
        helper.make_node("Mul", [t("normalized"), t("gamma")], [t("scaled") if shift else y], t("Scale")),
    ]
    if shift:
        nodes.append(helper.make_node("Add", [t("scaled"), t("beta")], [y], t("Shift")))
    return nodes
