"""A Conv whose output is only split along the channels becomes one Conv per part, for OpenVINO and ONNX Runtime.

FocalModulation's `f` is one conv whose 2C + L + 1 output channels are split into q, ctx and the L + 1
gates. OpenVINO's CPU plugin runs that split with its reference kernel (`ref_bf16` in its profile;
measured on focalnet_tiny_srf INT8 with 30 % of MACs pruned, batch 1: the same graph with three convs in
place of conv + split ran 3–5 % faster). ONNX Runtime's Split of the channels-last MatMul output took 3 %
of that model's unpruned INT8 time (onnxruntime/pointwise_matmul.py). Each part's conv computes exactly the
channels of its split output: same weights, same input, so the same INT8 input quantizer.

Hand-written on the ONNX graph, like nchw_layernorm.py, because every new node must carry the conv's own
name as a prefix (`<conv name>/split<i>`): the precision plan's ignored scopes and the per-module profiles
find the module through it."""
from __future__ import annotations

import numpy as np

from edgefocal.naming import consumers
from edgefocal.onnx_graph import attribute, drop_unread_initializers


def _array(model, name: str) -> np.ndarray | None:
    """An initializer or Constant node's value."""
    from onnx import numpy_helper

    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name and n.attribute and n.attribute[0].name == "value":
            return numpy_helper.to_array(n.attribute[0].t)
    return None


def _split_sizes(model, split) -> list[int] | None:
    """The channel sizes of a Split over axis 1, or None (another axis, or sizes that are not constant)."""
    if attribute(split, "axis", 0) != 1:
        return None
    if len(split.input) > 1 and split.input[1]:
        sizes = _array(model, split.input[1])
        return None if sizes is None else [int(s) for s in sizes]
    sizes = attribute(split, "split", None)
    return None if sizes is None else [int(s) for s in sizes]


def _matches(model) -> list[tuple]:
    """(conv, split, sizes, weight, bias) where the Split over channels is the conv output's only reader and
    the conv is dense (group 1: a grouped conv's output channels depend on their group's inputs only) with
    constant weights and bias (None when it has none)."""
    readers = consumers(model.graph.node)
    out = []
    for conv in model.graph.node:
        dense = conv.op_type == "Conv" and attribute(conv, "group", 1) == 1
        after = readers.get(conv.output[0], []) if dense else []
        if len(after) != 1 or after[0].op_type != "Split":
            continue
        has_bias = len(conv.input) > 2 and bool(conv.input[2])
        weight = _array(model, conv.input[1])
        bias = _array(model, conv.input[2]) if has_bias else None
        sizes = _split_sizes(model, after[0])
        if weight is not None and (bias is not None or not has_bias) and sizes and len(sizes) == len(after[0].output):
            out.append((conv, after[0], sizes, weight, bias))
    return out


def split_convs(model) -> int:
    """Rewrite, in place, every Conv → Split(axis 1) of an ONNX model into one Conv per split output;
    returns how many convs were split. New nodes are named `<conv name>/split<i>`."""
    from onnx import helper, numpy_helper

    graph = model.graph
    matches = _matches(model)
    for conv, split, sizes, weight, bias in matches:
        bounds = np.cumsum([0, *sizes])
        parts = []
        for i, output in enumerate(split.output):
            inputs = [conv.input[0], f"{conv.name}/split{i}/weight"]
            graph.initializer.append(numpy_helper.from_array(weight[bounds[i]:bounds[i + 1]], inputs[1]))
            if bias is not None:
                inputs.append(f"{conv.name}/split{i}/bias")
                graph.initializer.append(numpy_helper.from_array(bias[bounds[i]:bounds[i + 1]], inputs[2]))
            part = helper.make_node("Conv", inputs, [output], f"{conv.name}/split{i}")
            part.attribute.extend(conv.attribute)
            part.metadata_props.extend(conv.metadata_props)  # the exporter's module scopes, which naming reads
            parts.append(part)
        position = list(graph.node).index(conv)
        graph.node.remove(conv)
        graph.node.remove(split)
        for i, part in enumerate(parts):
            graph.node.insert(position + i, part)
    drop_unread_initializers(model)
    return len(matches)
