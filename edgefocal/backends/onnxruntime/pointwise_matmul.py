"""Every 1×1 conv as a MatMul over channels-last, so that ONNX Runtime's INT8 writes float where float is read.

ONNX Runtime fuses DequantizeLinear → MatMul into MatMulIntegerToFloat when no QuantizeLinear follows: uint8
activations times int8 per-channel weights, scaled and biased to float in the GEMM's own output pass. A conv
has no such kernel: QLinearConv must write uint8, so a conv whose reader is float pays a requantize and then
a DequantizeLinear of its whole output. In a FocalNet every conv's reader is float (f's split, h's modulator
product, proj's and fc2's residual adds, fc1's GELU): on focalnet_tiny_srf at 224², batch 1, 2 threads, the
DequantizeLinears alone took 14 % of the INT8 time, more than fc1's GELUs. This rewrite, with f split per
part (conv_split.py), took 0.74× the batch-1 time of the conv graph side by side, and leaves out a rounding of
every conv output (the MatMul outputs are not quantized: backends/onnxruntime/quantize.py).

Conv(x, W, b) with a 1×1 kernel, stride 1, no padding and one group becomes
Transpose(x, NCHW→NHWC) → MatMul(Wᵀ) → Add(b) → Transpose(NHWC→NCHW). ONNX Runtime's transpose optimizer
cancels the transposes between consecutive channels-last ops and folds the Add into the MatMul's bias.
The MatMul keeps the conv's node name (the precision plan and the search address parts by node name, and
profiles attribute it to the conv's module); the rest are `<conv name>/to_nhwc`, `/bias` and `/to_nchw`.

Hand-written on the ONNX graph like conv_split.py: ONNX Runtime's transformers optimizer rewrites
attention and LayerNorm patterns, not convs."""
from __future__ import annotations

import numpy as np

from edgefocal.onnx_graph import attribute, drop_unread_initializers

TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _pointwise(node, inits: dict) -> bool:
    """A dense 1×1 conv with constant weights (and bias) that computes a per-pixel matrix product."""
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
        return False
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return False
    shape = tuple(inits[node.input[1]].dims)
    return (len(shape) == 4 and shape[2:] == (1, 1) and attribute(node, "group", 1) == 1
            and all(s == 1 for s in attribute(node, "strides", [1, 1]))
            and not any(attribute(node, "pads", [0])) and attribute(node, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"))


def pointwise_convs_to_matmul(model) -> int:
    """Rewrite, in place, every 1×1 conv of an ONNX model into a channels-last MatMul; returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    to_nhwc: dict[str, str] = {}  # one transpose per conv input, shared by f's parts
    rewritten, nodes = 0, []
    for node in graph.node:
        if not _pointwise(node, inits):
            nodes.append(node)
            continue
        made = []
        if node.input[0] not in to_nhwc:
            to_nhwc[node.input[0]] = f"{node.name}/to_nhwc"
            made.append(helper.make_node("Transpose", [node.input[0]], [to_nhwc[node.input[0]]],
                                         f"{node.name}/to_nhwc", perm=TO_NHWC))
        weight = numpy_helper.to_array(inits[node.input[1]])[:, :, 0, 0]
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), f"{node.name}/matmul_weight"))
        product = f"{node.name}/product"
        made.append(helper.make_node("MatMul", [to_nhwc[node.input[0]], f"{node.name}/matmul_weight"], [product], node.name))
        if len(node.input) > 2 and node.input[2]:
            made.append(helper.make_node("Add", [product, node.input[2]], [f"{node.name}/biased"], f"{node.name}/bias"))
            product = f"{node.name}/biased"
        made.append(helper.make_node("Transpose", [product], [node.output[0]], f"{node.name}/to_nchw", perm=TO_NCHW))
        for new in made:
            new.metadata_props.extend(node.metadata_props)  # the exporter's module scopes, which naming reads
        nodes.extend(made)
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    drop_unread_initializers(model)
    return rewritten
