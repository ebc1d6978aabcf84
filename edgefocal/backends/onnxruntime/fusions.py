"""ONNX Runtime's own fusions that its session optimizer misses on a FocalNet export, applied to the artifact.

torch exports GELU as x · ((1 + erf(x / √2)) · 0.5): five float nodes, which ORT's in-session GeluFusion
does not match in that order, so every GELU runs as Div, Erf, Add, Mul, Mul (48 GELUs in a FocalNet-T;
fused, its INT8 model took 0.85× the batch-1 time in one side-by-side run). ORT's transformers optimizer (`onnxruntime.transformers`,
FusionGelu) does match it and writes one com.microsoft Gelu node, which ORT's CPU, CUDA and DirectML
providers run as one kernel. The fused node is named after the module it replaces, so profiles and reports
still attribute it to its FocalNet part (naming.py)."""
from __future__ import annotations

import onnx

FUSED = ("com.microsoft", "Gelu")


def fuse_gelu(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every erf GELU one com.microsoft Gelu node named `<module>/Gelu` (in place; returned)."""
    from onnxruntime.transformers.fusion_gelu import FusionGelu
    from onnxruntime.transformers.onnx_model import OnnxModel

    producer = {out: n for n in model.graph.node for out in n.output}
    module_of_input = {producer[e.input[0]].input[0]: e.name.rsplit("/", 1)[0]
                       for e in model.graph.node if e.op_type == "Erf" and e.input[0] in producer}
    wrapped = OnnxModel(model)
    FusionGelu(wrapped).apply()
    wrapped.prune_graph()
    for node in wrapped.model.graph.node:
        if (node.domain, node.op_type) == FUSED and node.input[0] in module_of_input:
            node.name = f"{module_of_input[node.input[0]]}/Gelu"
    if not any(o.domain == FUSED[0] for o in wrapped.model.opset_import):
        wrapped.model.opset_import.append(onnx.helper.make_opsetid(FUSED[0], 1))
    return wrapped.model
