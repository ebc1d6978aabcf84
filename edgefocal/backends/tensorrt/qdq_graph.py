"""The view of a Q/DQ ONNX graph that TensorRT's rules are checked on: producers, consumers, constant
values, tensor shapes, and which DequantizeLinear feeds a tensor once TensorRT has moved it forward.

Shared by the conformance rules (conformance.py), the fusion spots (fusion.py) and the layer list predicted
on paper (on_paper.py), so that all three read the graph the same way."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefocal import naming
from edgefocal.errors import BadInput

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: ops TensorRT moves Q/DQ across ("commuting" layers in its explicit-quantization rules)
TRANSPARENT_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
_INDEX_TYPES = (6, 7, 9)  # onnx.TensorProto INT32, INT64, BOOL


def load(model_or_path):
    """The ModelProto of a path (BadInput naming the file when it is missing or not ONNX), or the model."""
    import onnx

    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.is_file():
            raise BadInput(f"ONNX file {path} does not exist", hint="pass the Q/DQ ONNX written by the build")
        try:
            return onnx.load(str(path))
        except Exception as e:  # onnx raises DecodeError and others for a foreign file
            raise BadInput(f"{path} is not a readable ONNX model ({type(e).__name__})",
                           hint="pass an .onnx file") from e
    return model_or_path


def constants(g, producer: dict):
    """name -> the value of a constant tensor (initializer or Constant node), else None; cached."""
    from onnx import numpy_helper

    inits = {i.name: i for i in g.initializer}
    consts: dict[str, np.ndarray] = {}

    def const(name: str) -> np.ndarray | None:
        if name in consts:
            return consts[name]
        if name in inits:
            consts[name] = numpy_helper.to_array(inits[name])
            return consts[name]
        node = producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[name] = numpy_helper.to_array(a.t)
                    return consts[name]
        return None

    return const


def feeding_dq(producer: dict, tensor: str):
    """The DequantizeLinear feeding `tensor`, looking through data-movement ops: TensorRT propagates
    DQ forward across them (LayerNorm → Q/DQ → Transpose → Conv fuses like Q/DQ → Conv)."""
    p = producer.get(tensor)
    while p is not None and p.op_type in TRANSPARENT_OPS:
        p = producer.get(p.input[0])
    return p if p is not None and p.op_type == "DequantizeLinear" else None


@dataclass
class QDQGraph:
    """One Q/DQ model, indexed once: every rule and the layer prediction walk the same maps."""

    model: Any  # onnx.ModelProto
    producer: dict = field(init=False)
    consumers: dict = field(init=False)
    shapes: dict = field(init=False)
    memo: dict = field(init=False, default_factory=dict)  # analyses derived once per graph (fusion.gelus)

    def __post_init__(self):
        g = self.model.graph
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers = naming.consumers(g.node)
        self.const = constants(g, self.producer)
        self.shapes, self.dtypes = _shapes(self.model)
        self.outputs = {o.name for o in g.output}

    @property
    def nodes(self):
        return self.model.graph.node

    def dq_of(self, tensor: str):
        return feeding_dq(self.producer, tensor)

    def source(self, tensor: str) -> tuple[Any, list]:
        """(the node producing `tensor` once data-movement ops are looked through, those ops in graph order)."""
        path = []
        p = self.producer.get(tensor)
        while p is not None and p.op_type in TRANSPARENT_OPS:
            path.insert(0, p)
            p = self.producer.get(p.input[0])
        return p, path

    def readers(self, tensor: str) -> list[tuple[Any, list]]:
        """[(a node reading `tensor` once data-movement ops are looked through, those ops in order)]."""
        out = []
        for c in self.consumers.get(tensor, []):
            if c.op_type in TRANSPARENT_OPS:
                out += [(r, [c, *path]) for r, path in self.readers(c.output[0])]
            else:
                out.append((c, []))
        return out

    def moves_data(self, node) -> bool:
        """Whether a Transpose reorders memory. One that only moves axes of size 1 (NHWC↔NCHW on a 1×1 map)
        does not; TensorRT omits shuffles that are identities on the data, as it does every reshape (TensorRT
        developer guide, Performance Best Practices, "Optimizing Layer Performance": Shuffle)."""
        if node.op_type != "Transpose":
            return False
        dims = self.shape(node.input[0])
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if not dims or perm is None:
            return True
        moved = [axis for axis in perm if dims[axis] != 1]
        return moved != sorted(moved)

    def is_constant(self, tensor: str) -> bool:
        """A weight, a bias, or a Q/DQ of one (TensorRT folds the weight's Q/DQ into its layer)."""
        p = self.producer.get(tensor)
        if p is not None and p.op_type in ("QuantizeLinear", "DequantizeLinear"):
            return self.is_constant(p.input[0])
        return self.const(tensor) is not None

    def int8_weighted(self, node) -> bool:
        """A Conv/Gemm/MatMul whose data inputs all come from DequantizeLinear: one INT8 layer in the engine."""
        return node.op_type in WEIGHTED_OPS and all(self.dq_of(t) is not None for t in node.input[:2])

    def only_consumer(self, tensor: str):
        """The single node reading `tensor`, or None (several readers, or a graph output)."""
        readers = self.consumers.get(tensor, [])
        return readers[0] if len(readers) == 1 and tensor not in self.outputs else None

    def shape(self, tensor: str) -> list | None:
        return self.shapes.get(tensor)

    def data_inputs(self, node) -> list[str]:
        """The inputs that carry activations: not weights, biases or constants, not shapes or indices."""
        return [t for t in node.input if t and not self.is_constant(t) and self.dtypes.get(t) not in _INDEX_TYPES]

    def index_math(self, node) -> bool:
        """A node computing shapes or indices (integer or bool outputs, or a Shape): TensorRT evaluates these
        as shape calculations, not as layers of the network's data path."""
        if node.op_type in ("Shape", "Size", "Constant", "ConstantOfShape"):
            return True
        return bool(node.output) and all(self.dtypes.get(t) in _INDEX_TYPES for t in node.output)

    def channels(self, node) -> tuple[int, int] | None:
        """(input channels per group, output channels) of a Conv; (K, N) of a Gemm/MatMul with a constant
        weight: the dimensions TensorRT's Tensor Core kernels want aligned."""
        w = self.const(_through_qdq(self.producer, node.input[1])) if len(node.input) > 1 else None
        if w is None or w.ndim < 2:
            return None
        if node.op_type == "Conv":
            return int(w.shape[1]), int(w.shape[0])
        if node.op_type == "ConvTranspose":
            return int(w.shape[0]), int(w.shape[1]) * group_of(node)
        if node.op_type == "Gemm" and next((a.i for a in node.attribute if a.name == "transB"), 0):
            return int(w.shape[1]), int(w.shape[0])
        return int(w.shape[-2]), int(w.shape[-1])

    def part(self, node) -> str:
        """The FocalNet part a node belongs to, in report words ('stage 1 block 1 modulation f')."""
        module = naming.module_of(node.name)
        if "/" not in node.name:
            return "(added by the quantizer)"
        role = naming.role_of(node, module, self.producer)
        return naming.focalnet_label(module, role)


def group_of(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _through_qdq(producer: dict, tensor: str) -> str:
    """The tensor behind a weight's DequantizeLinear (and its QuantizeLinear, if any)."""
    p = producer.get(tensor)
    while p is not None and p.op_type in ("QuantizeLinear", "DequantizeLinear"):
        tensor = p.input[0]
        p = producer.get(tensor)
    return tensor


def _shapes(model) -> tuple[dict[str, list], dict[str, int]]:
    """Tensor name → its inferred shape (a dim is an int, or a str for a symbolic one like the batch), and
    tensor name → its ONNX element type."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # a graph ONNX cannot infer (a foreign op): rules that need shapes then skip
        return {}, {}
    shapes, dtypes = {}, {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = v.type.tensor_type
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
        dtypes[v.name] = t.elem_type
    return shapes, dtypes
