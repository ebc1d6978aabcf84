"""Small Q/DQ graphs built by hand (onnx.helper) for the fusion rules and the layer prediction: each test
builds exactly the pattern one rule is about. Node names follow edgefocal's `<module path>/<op type>`, so
the FocalNet part of a spot is what it would be in an exported model."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class HandGraph:
    """Nodes in graph order; every tensor is float32 NCHW unless said otherwise."""

    def __init__(self, input_shape=(1, 32, 8, 8)):
        self.nodes, self.inits, self.n = [], [], 0
        self.input = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, value, name: str | None = None) -> str:
        name = name or self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, outputs: int = 1, **attrs) -> str:
        outs = [self._name(name.replace("/", "_")) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0]

    def qdq(self, tensor: str, scale: float = 0.05) -> str:
        """A per-tensor symmetric INT8 Q/DQ pair on an activation."""
        s, zp = self.const(np.float32(scale)), self.const(np.int8(0))
        q = self.node("QuantizeLinear", [tensor, s, zp], self._name("QuantizeLinear"))
        return self.node("DequantizeLinear", [q, s, zp], self._name("DequantizeLinear"))

    def weight(self, cout: int, cin: int, k: int = 1, int8: bool = True) -> str:
        """A conv weight: INT8 values behind a per-channel DequantizeLinear, or plain float."""
        rng = np.random.default_rng(self.n)
        if not int8:
            return self.const(rng.standard_normal((cout, cin, k, k)).astype(np.float32))
        w = self.const(rng.integers(-127, 128, (cout, cin, k, k)).astype(np.int8))
        s, zp = self.const(np.full(cout, 0.01, np.float32)), self.const(np.zeros(cout, np.int8))
        return self.node("DequantizeLinear", [w, s, zp], self._name("DequantizeLinear"), axis=0)

    def conv(self, x: str, cin: int, cout: int, module: str, int8: bool = True, k: int = 1, group: int = 1) -> str:
        x = self.qdq(x) if int8 else x
        w = self.weight(cout, cin // group, k, int8)
        b = self.const(np.zeros(cout, np.float32))
        return self.node("Conv", [x, w, b], f"{module}/Conv", kernel_shape=[k, k], pads=[k // 2] * 4, group=group)

    def gelu(self, x: str, module: str, qdq_inside: bool = False) -> str:
        d = self.node("Div", [x, self.const(np.float32(1.4142135))], f"{module}/Div")
        e = self.node("Erf", [d], f"{module}/Erf")
        e = self.qdq(e) if qdq_inside else e
        a = self.node("Add", [e, self.const(np.float32(1.0))], f"{module}/Add")
        m = self.node("Mul", [self.const(np.float32(0.5)), a], f"{module}/Mul")
        return self.node("Mul", [x, m], f"{module}/Mul_1")

    def transpose(self, x: str, perm: list[int], module: str) -> str:
        return self.node("Transpose", [x], f"{module}/Transpose", perm=perm)

    def layernorm(self, x: str, channels: int, module: str) -> str:
        return self.node("LayerNormalization", [x, self.const(np.ones(channels, np.float32)),
                                                self.const(np.zeros(channels, np.float32))], f"{module}/LayerNormalization",
                         axis=-1)

    def model(self, output: str) -> onnx.ModelProto:
        """The graph with `output` as its output (typed by ONNX's shape inference), checked by ONNX."""
        graph = helper.make_graph(self.nodes, "hand", [self.input], [helper.make_empty_tensor_value_info(output)],
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        inferred = onnx.shape_inference.infer_shapes(model)
        typed = next(v for v in inferred.graph.value_info if v.name == output)
        model.graph.output[0].CopyFrom(typed)
        onnx.checker.check_model(model)
        return model
