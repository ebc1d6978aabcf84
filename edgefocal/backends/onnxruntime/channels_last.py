"""The ops between channels-last MatMuls kept channels-last, so that ONNX Runtime transposes only into and out
of the depthwise convs, where its NCHWc convs read and write channels-last themselves.

After pointwise_matmul.py every 1×1 conv is a channels-last MatMul, and ORT's transpose optimizer cancels the
transposes between consecutive channels-last ops. It gives up inside FocalNet's modulation: the gated sum
ctx_all = Σ ctx_l · gate_l + gelu(mean(ctx_L)) · gate_L mixes the depthwise convs' NCHW outputs with the gates
of f's MatMul, so it moves the gates and the sum to NCHW and transposes the whole sum back for h's MatMul.
focalnet_tiny_srf's INT8 graph as ORT runs it has 62 Transposes, 14 after this rewrite (0.956× the batch-1
time, median of 60 interleaved rounds, 2 threads, AMD EPYC).

Every op that reads a channels-last tensor (an output of a `Transpose(NHWC→NCHW)`) and computes per element,
per channel slice or per spatial mean gets a channels-last twin: elementwise ops, `Slice`s, `ReduceMean`s over
H and W. A conv output it meets is transposed to channels-last, which ORT folds into the conv's ReorderOutput
(channels_last=1); a reader that needs NCHW gets a transpose back, which ORT cancels or keeps. A twin keeps its
original's name and module scopes, so that the precision plan, the search's surgery and the profiles find it.

Hand-written on the ONNX graph like pointwise_matmul.py: ORT's transpose optimizer decides by counts of
transposes, not by which ones its NCHWc convs absorb, and has no option that changes that."""
from __future__ import annotations

import numpy as np

from edgefocal.backends.onnxruntime.pointwise_matmul import TO_NCHW, TO_NHWC
from edgefocal.onnx_graph import attribute, drop_unread_initializers

ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Erf", "Gelu", "Sigmoid", "Tanh", "Relu", "Sqrt", "Pow", "Neg", "Abs"}
NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}  # where an NCHW axis sits in NHWC


class _Rewrite:
    """One pass over the graph in order: `twin` maps an NCHW tensor to its channels-last equivalent."""

    def __init__(self, model):
        self.model = model
        self.inits = {t.name: t for t in model.graph.initializer}
        self.rank = _ranks(model)
        self.twin: dict[str, str] = {}
        self.alias: dict[str, str] = {}  # a dropped Transpose(NCHW→NHWC)'s output: the twin it read
        self.nodes: list = []
        self.twinned = 0

    def run(self) -> int:
        for node in list(self.model.graph.node):
            read = [self.alias.get(i, i) for i in node.input]
            del node.input[:]
            node.input.extend(read)
            perm = attribute(node, "perm", None) if node.op_type == "Transpose" else None
            if perm == TO_NHWC and node.input[0] in self.twin:
                self.alias[node.output[0]] = self.twin[node.input[0]]
                continue
            if perm == TO_NCHW:
                self.twin[node.output[0]] = node.input[0]
            if not self._make_twin(node):
                self.nodes.append(node)
        del self.model.graph.node[:]
        self.model.graph.node.extend(self.nodes)
        _drop_unread_nodes(self.model)
        drop_unread_initializers(self.model)
        return self.twinned

    def _make_twin(self, node) -> bool:
        """Append `node`'s channels-last twin and a transpose back to its NCHW output; False where it has none."""
        if not any(i in self.twin for i in node.input) or len(node.output) != 1:
            return False
        made = self._elementwise(node) if node.op_type in ELEMENTWISE else self._axes_op(node)
        if made is None:
            return False
        twin_out = f"{node.output[0]}/nhwc"
        extra, inputs = made
        twin = _copy(node, inputs, [twin_out], node.name)
        back = _transpose(node, twin_out, node.output[0], f"{node.name}/to_nchw", TO_NCHW)
        self.nodes += extra + [twin, back]
        self.twin[node.output[0]] = twin_out
        self.twinned += 1
        return True

    def _elementwise(self, node):
        """(transposes to add, channels-last inputs) of a per-element op, or None if an input's layout is unknown."""
        extra, inputs = [], []
        for k, name in enumerate(node.input):
            if name in self.twin:
                inputs.append(self.twin[name])
            elif name in self.inits:
                inputs.append(self._constant(name))
            elif self.rank.get(name) == 4:
                to_nhwc = _transpose(node, name, f"{node.name}/to_nhwc{k}", f"{node.name}/to_nhwc{k}", TO_NHWC)
                extra.append(to_nhwc)
                inputs.append(to_nhwc.output[0])
                self.twin[name] = to_nhwc.output[0]  # later readers share it: the last focal level's mean
            else:
                return None
        return extra, inputs

    def _constant(self, name: str) -> str:
        """A constant as broadcast against channels-last tensors: as is where it has one element."""
        from onnx import numpy_helper

        value = numpy_helper.to_array(self.inits[name])
        if value.size == 1:
            return name
        value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(TO_NHWC)
        twin = f"{name}/nhwc"
        if twin not in self.inits:
            self.inits[twin] = numpy_helper.from_array(np.ascontiguousarray(value), twin)
            self.model.graph.initializer.append(self.inits[twin])
        return twin

    def _axes_op(self, node):
        """A Slice or a keepdims ReduceMean of a channels-last input, its constant axes moved to NHWC."""
        if node.op_type == "Slice" and len(node.input) > 3:
            axes_at = 3
        elif node.op_type == "ReduceMean" and attribute(node, "keepdims", 1) and len(node.input) > 1:
            axes_at = 1
        else:
            return None
        if node.input[0] not in self.twin or self.rank.get(node.input[0]) != 4 or node.input[axes_at] not in self.inits:
            return None
        from onnx import numpy_helper

        axes = numpy_helper.to_array(self.inits[node.input[axes_at]])
        moved = np.array([NHWC_AXIS[int(a) % 4] for a in axes.reshape(-1)], dtype=axes.dtype)
        name = f"{node.input[axes_at]}/nhwc{'_'.join(map(str, moved))}"
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(moved, name)
            self.model.graph.initializer.append(self.inits[name])
        inputs = [self.twin[node.input[0]], *node.input[1:]]
        inputs[axes_at] = name
        return [], inputs


def _ranks(model, small: int = 64) -> dict[str, int]:
    """Every tensor's rank, from ONNX shape inference on the graph with its large weights declared by shape only:
    on the whole focalnet_tiny_srf the inference's copy of the weights raised the process's peak RSS from 318 to
    705 MB. Small constants (slice bounds, axes, shapes) stay, since output shapes depend on their values."""
    from onnx import helper, shape_inference

    graph = model.graph
    large = [t for t in graph.initializer if np.prod(t.dims) > small]
    declared = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in large]
    kept = [t for t in graph.initializer if np.prod(t.dims) <= small]
    light = helper.make_model(helper.make_graph(graph.node, graph.name, [*graph.input, *declared], graph.output, kept),
                              opset_imports=model.opset_import)
    inferred = shape_inference.infer_shapes(light).graph
    return {v.name: len(v.type.tensor_type.shape.dim) for v in [*inferred.value_info, *inferred.input, *inferred.output]}


def _copy(node, inputs, outputs, name: str):
    """`node` on other tensors, its attributes and module scopes kept."""
    from onnx import helper

    made = helper.make_node(node.op_type, inputs, outputs, name, domain=node.domain)
    made.attribute.extend(node.attribute)
    made.metadata_props.extend(node.metadata_props)  # the exporter's module scopes, which naming reads
    return made


def _transpose(beside, source: str, output: str, name: str, perm: list[int]):
    """A Transpose in the module scopes of the node `beside` it, so that profiles attribute it there."""
    from onnx import helper

    made = helper.make_node("Transpose", [source], [output], name, perm=perm)
    made.metadata_props.extend(beside.metadata_props)
    return made


def _drop_unread_nodes(model) -> None:
    """Nodes whose outputs nothing reads (the transposes back that no NCHW reader needed), until none is left."""
    while True:
        read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        unread = [n for n in model.graph.node if not any(o in read for o in n.output)]
        if not unread:
            return
        for n in unread:
            model.graph.node.remove(n)


def ops_channels_last(model) -> int:
    """Rewrite, in place, the ops that read channels-last tensors into channels-last twins; returns how many."""
    return _Rewrite(model).run()
