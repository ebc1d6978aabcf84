"""Fusion spots: Q/DQ placements TensorRT accepts but cannot fuse into its INT8 kernels. The engine still
builds and runs; each spot costs an extra layer (a Quantize, Dequantize or Shuffle of its own), padded
work, or an op left in FP16. Every rule rests on NVIDIA's own words or code, cited in SOURCES:

- `int8-channels`: an INT8 conv/GEMM whose channel count is not a multiple of 32. TensorRT's INT8 Tensor
  Core kernels want channels aligned to 32 and pad the rest (developer guide, Performance Best Practices,
  "Optimizing for Tensor Cores": INT8, 32 elements; INT8 tensors are laid out NC/4HW4 or NC/32HW32, "Data
  Format Descriptions"). FocalNet's modulation `f` has 2C+L+1 outputs (query, context, L+1 gates): 67 for
  C=32, never a multiple of 32. ModelOpt leaves convs under 16 channels that are not multiples of 8 float
  (modelopt/onnx/quantization/graph_utils.py: find_nodes_from_convs_to_exclude, _MIN_MATMUL_DIM).
- `int8-shuffle`: a Transpose that reorders memory between a DequantizeLinear and its INT8 conv. TensorRT
  moves the DQ forward past it (Q/DQ propagation across commuting layers, developer guide, "Explicit
  Quantization") but runs the permutation as its own Shuffle layer; only shuffles that are identities on
  the data are omitted (Best Practices, "Optimizing Layer Performance": Shuffle). FocalNet's LayerNorm runs
  channels-last, so every `f` and `fc1` conv reads through one.
- `qdq-layernorm`: Q/DQ on a LayerNormalization's input that no conv/GEMM produces. LayerNormalization has
  no INT8 implementation (onnx-tensorrt docs/operators.md: FP32, FP16, BF16); ModelOpt quantizes a
  LayerNorm's input only after a conv partition (graph_utils.find_conv_to_layernorm_nodes) and otherwise
  leaves LayerNorm partitions without Q/DQ (partitioning.find_layer_norm_partitions).
- `qdq-gelu`: Q/DQ inside the erf GELU (Div, Erf, Add, Mul, Mul). TensorRT fuses that pattern into one GELU
  and the GELU into the conv before it (developer guide, "Types of Fusions": GELU; Convolution and GELU
  Activation); ModelOpt never quantizes inside it (partitioning.find_hardcoded_patterns).
- `dq-float-op`: a DequantizeLinear read by an op with no INT8 implementation, or by a quantizable op whose
  output is not quantized: "non-weighted layers with INT8 inputs also require INT8 outputs" (developer
  guide, "Q/DQ Layer-Placement Recommendations"); the DQ then runs as its own layer.
- `q-after-float-add`: a QuantizeLinear after a residual Add that TensorRT fuses into an INT8 conv while the
  Add's other input is float: "the output of the fused convolution is limited to floating-point, and the
  trailing Q-layer cannot be fused" (developer guide, "Q/DQ Layer-Placement Recommendations").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from edgefocal.backends.tensorrt.qdq_graph import WEIGHTED_OPS, QDQGraph, group_of, load

INT8_ALIGNMENT = 32  # "Optimizing for Tensor Cores": suggested INT8 tensor dimension alignment
INT8_VECTOR = 4  # NC/4HW4, TensorRT's narrow INT8 layout ("Data Format Descriptions")
GELU = ("Div", "Erf", "Add", "Mul", "Mul")  # the exported erf GELU (ModelOpt's hard-coded pattern too)
#: pointwise ops TensorRT fuses with their neighbours ("PointWise Fusion": Activation, ElementWise, Unary)
POINTWISE = ("Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Exp", "Log", "Neg", "Abs", "Reciprocal",
             "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "Softplus", "Gelu")
#: non-weighted ops with an INT8 implementation (onnx-tensorrt docs/operators.md, TensorRT 8.x INT8 column;
#: Add: the developer guide's quantized element-wise addition; Gelu: TensorRT 10's column)
INT8_OPS = ("Add", "AveragePool", "GlobalAveragePool", "MaxPool", "GlobalMaxPool", "LpPool", "Concat", "Gather",
            "GatherElements", "GatherND", "Slice", "Pad", "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "Elu",
            "Selu", "HardSigmoid", "Softplus", "Softsign", "PRelu", "Round", "Sign", "Gelu")

EXPLICIT = ("TensorRT developer guide, Explicit Quantization (docs.nvidia.com/deeplearning/tensorrt/latest/"
            "inference-library/quantized-types-explicit-quantization.html)")
SOURCES = {
    "int8-channels": "TensorRT developer guide, Performance Best Practices, Optimizing for Tensor Cores (INT8: 32); "
                     "Data Format Descriptions (NC/4HW4, NC/32HW32); ModelOpt graph_utils.find_nodes_from_convs_to_exclude",
    "int8-shuffle": f"{EXPLICIT}: Q/DQ propagation; Best Practices, Optimizing Layer Performance: Shuffle",
    "qdq-layernorm": "onnx-tensorrt docs/operators.md (LayerNormalization: FP32, FP16, BF16); ModelOpt "
                     "graph_utils.find_conv_to_layernorm_nodes, partitioning.find_layer_norm_partitions",
    "qdq-gelu": "TensorRT developer guide, Types of Fusions (GELU; Convolution and GELU Activation); ModelOpt "
                "partitioning.find_hardcoded_patterns",
    "dq-float-op": f"{EXPLICIT}: Q/DQ Layer-Placement Recommendations; onnx-tensorrt docs/operators.md",
    "q-after-float-add": f"{EXPLICIT}: Q/DQ Layer-Placement Recommendations (element-wise addition fusion)",
}

#: what each rule costs, in a few words (report.md's table)
COST = {
    "int8-channels": "channels padded to a multiple of 32 in the INT8 kernel, or no Tensor Cores",
    "int8-shuffle": "an extra INT8 Shuffle (transpose) layer before the conv",
    "qdq-layernorm": "a Quantize and a Dequantize layer around an FP16 LayerNorm",
    "qdq-gelu": "GELU not fused into the conv; standalone Quantize and Dequantize",
    "dq-float-op": "a Dequantize layer; the op runs in FP16",
    "q-after-float-add": "a Quantize layer after the conv + residual Add",
}


@dataclass(frozen=True)
class Spot:
    """One place TensorRT cannot fuse a Q/DQ pair: the node, the FocalNet part, why, and what it costs."""

    rule: str
    node: str
    part: str
    why: str
    consequence: str

    def as_dict(self) -> dict:
        return {**asdict(self), "cost": COST[self.rule]}

    def __str__(self) -> str:
        return f"{self.node} ({self.part}): {self.why}; {self.consequence} [{self.rule}]"


def fusion_spots(model_or_path) -> list[Spot]:
    """Every spot in a Q/DQ ONNX, rule by rule, in graph order within a rule."""
    g = model_or_path if isinstance(model_or_path, QDQGraph) else QDQGraph(load(model_or_path))
    return (_channel_spots(g) + _shuffle_spots(g) + _layernorm_spots(g) + _gelu_spots(g)
            + _float_op_spots(g) + _add_output_spots(g))


def padded(channels: int, alignment: int = INT8_ALIGNMENT) -> int:
    return -(-channels // alignment) * alignment


def _channel_spots(g: QDQGraph) -> list[Spot]:
    out = []
    for n in g.nodes:
        dims = g.channels(n) if g.int8_weighted(n) else None
        if dims is None:
            continue
        names = ("input channels", "output channels") if n.op_type.startswith("Conv") else ("K", "N")
        checks = list(zip(names, dims))[1:] if n.op_type == "Conv" and group_of(n) > 1 else list(zip(names, dims))
        bad = [(what, c) for what, c in checks if c % INT8_ALIGNMENT]
        if bad:
            cost = _channel_cost(bad) + ("; ModelOpt would leave this op float" if modelopt_keeps_float(g, n) else "")
            out.append(Spot("int8-channels", n.name, g.part(n), _channel_why(g, n, bad), cost))
    return out


def modelopt_keeps_float(g: QDQGraph, node) -> bool:
    """ModelOpt's own small-channel exclusions (modelopt/onnx/quantization/graph_utils.py): a Conv under 16
    input or output channels unless 8-aligned with a square kernel (grouped: output 8-aligned, kernel ≥ 3),
    a Gemm/MatMul with K or N under 16 (_MIN_MATMUL_DIM)."""
    dims = g.channels(node)
    if dims is None:
        return False
    ic, oc = dims
    if node.op_type != "Conv":
        return min(ic, oc) < 16
    if ic >= 16 and oc >= 16:
        return False
    kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [1, 1])
    if group_of(node) > 1:
        return not (oc % 8 == 0 and all(k >= 3 for k in kernel))
    on_input = _prev_through_qdq(g, node.input[0]) is None  # the first layer, reading the network input
    aligned = oc % 8 == 0 or ic % 8 == 0
    return not (aligned and (on_input or max(ic, oc) >= 16) and len(set(kernel)) == 1)


def _channel_why(g: QDQGraph, node, bad: list[tuple[str, int]]) -> str:
    counts = ", ".join(f"{c} {what}" for what, c in bad)
    f_note = " (the modulation's f: 2C+L+1 outputs for query, context and L+1 gates)" if \
        g.part(node).endswith("modulation f") else ""
    return f"INT8 {node.op_type} with {counts}{f_note}, not a multiple of {INT8_ALIGNMENT}"


def _channel_cost(bad: list[tuple[str, int]]) -> str:
    parts = []
    for what, c in bad:
        parts.append(f"{what} padded {c} → {padded(c)} in the Tensor Core layout ({1 - c / padded(c):.0%} of that "
                     f"dimension zeros; {padded(c, INT8_VECTOR)} in NC/4HW4)")
    return "; ".join(parts) + ", or TensorRT picks a slower kernel without Tensor Cores"


def _shuffle_spots(g: QDQGraph) -> list[Spot]:
    out = []
    for n in g.nodes:
        if not g.int8_weighted(n):
            continue
        _, path = g.source(n.input[0])
        for t in (p for p in path if g.moves_data(p)):
            out.append(Spot("int8-shuffle", t.name, g.part(n),
                            f"Transpose between the DequantizeLinear and INT8 {n.op_type} {n.name}: TensorRT moves "
                            "the DQ past it but cannot fold the permutation into the kernel",
                            "an extra INT8 Shuffle layer before the conv (a LayerNorm over the channel axis, "
                            "without the transposes, removes it)"))
    return out


def in_conv_partition(g: QDQGraph, node) -> bool:
    """Whether `node` ends a conv/GEMM partition as ModelOpt builds them (the weighted op, or a residual Add
    or pointwise op fused behind it): what a Q/DQ before a LayerNorm must follow to pay off."""
    if node is None:
        return False
    if node.op_type in WEIGHTED_OPS:
        return True
    if node.op_type not in POINTWISE:
        return False
    return any((p := g.producer.get(t)) is not None and (p.op_type in WEIGHTED_OPS or gelu_after_weighted(g, p))
               for t in node.input)


def gelus(g: QDQGraph) -> dict[str, list]:
    """{name of its last Mul: the five nodes} of every erf GELU in the graph, found once per graph."""
    if "gelus" not in g.memo:
        found = (gelu_nodes(g, n) for n in g.nodes if n.op_type == GELU[0])
        g.memo["gelus"] = {nodes[-1].name: nodes for nodes in found if nodes is not None}
    return g.memo["gelus"]


def gelu_after_weighted(g: QDQGraph, last) -> bool:
    """Whether `last` ends an erf GELU that reads a weighted op's output (TensorRT's Conv + GELU fusion)."""
    nodes = gelus(g).get(last.name)
    p = g.producer.get(nodes[0].input[0]) if nodes else None
    return p is not None and p.op_type in WEIGHTED_OPS


def _layernorm_spots(g: QDQGraph) -> list[Spot]:
    out = []
    for n in g.nodes:
        dq = g.dq_of(n.input[0]) if n.op_type == "LayerNormalization" else None
        q = g.producer.get(dq.input[0]) if dq is not None else None
        src = g.source(q.input[0])[0] if q is not None and q.op_type == "QuantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or in_conv_partition(g, src):
            continue
        out.append(Spot("qdq-layernorm", n.name, g.part(n),
                        f"Q/DQ on the input of LayerNormalization, produced by {src.op_type if src else 'the input'} "
                        "rather than a conv; LayerNorm has no INT8 implementation",
                        "a Quantize and a Dequantize layer of their own around an FP16 LayerNorm: two extra "
                        "kernels and the INT8 rounding, no INT8 compute"))
    return out


def gelu_nodes(g: QDQGraph, div) -> list | None:
    """The five nodes of an erf GELU starting at `div` (Div → Erf → Add → Mul → Mul, looking through the Q/DQ
    pairs a quantizer may have put between them), or None."""
    if div.op_type != GELU[0]:
        return None
    nodes, node = [div], div
    for op in GELU[1:]:
        nxt = _next_through_qdq(g, node)
        if nxt is None or nxt.op_type != op:
            return None
        nodes.append(nxt)
        node = nxt
    return nodes


def _prev_through_qdq(g: QDQGraph, tensor: str):
    p = g.producer.get(tensor)
    while p is not None and p.op_type in ("QuantizeLinear", "DequantizeLinear"):
        p = g.producer.get(p.input[0])
    return p


def _next_through_qdq(g: QDQGraph, node):
    """The one non-Q/DQ reader of `node`'s output, looking through Q/DQ pairs, or None."""
    readers = g.consumers.get(node.output[0], [])
    while len(readers) == 1 and readers[0].op_type in ("QuantizeLinear", "DequantizeLinear"):
        readers = g.consumers.get(readers[0].output[0], [])
    pointwise = [r for r in readers if r.op_type in POINTWISE]
    return pointwise[0] if len(pointwise) == 1 else None


def _gelu_spots(g: QDQGraph) -> list[Spot]:
    out = []
    for nodes in gelus(g).values():
        names = {m.name for m in nodes}
        inner = [m for m in nodes[1:] for t in m.input if g.dq_of(t) is not None and
                 (p := _prev_through_qdq(g, t)) is not None and p.name in names]
        if inner:
            out.append(Spot("qdq-gelu", inner[0].name, g.part(nodes[0]),
                            "Q/DQ inside the erf GELU (Div, Erf, Add, Mul, Mul)",
                            "the GELU is not fused into one op nor into the conv before it: separate pointwise "
                            "layers around a standalone Quantize and Dequantize"))
    return out


def dq_fuses_into(g: QDQGraph, reader, tensor: str) -> bool:
    """Whether TensorRT fuses the DequantizeLinear feeding `tensor` of `reader` into `reader`'s layer."""
    if g.int8_weighted(reader):
        return True
    if reader.op_type == "LayerNormalization":
        q = g.producer.get(dq.input[0]) if (dq := g.dq_of(tensor)) is not None else None
        return q is not None and in_conv_partition(g, g.source(q.input[0])[0])
    if reader.op_type == "Add" and residual_conv(g, reader) is not None:
        return True
    return reader.op_type in INT8_OPS and quantized_output(g, reader) and \
        all(g.dq_of(t) is not None for t in g.data_inputs(reader))


def residual_conv(g: QDQGraph, add):
    """The INT8 conv/GEMM a residual Add fuses into (its one input straight from that op), or None."""
    if add.op_type != "Add" or len(g.data_inputs(add)) != 2:
        return None
    for t in add.input:
        p = g.producer.get(t)
        if p is not None and p.op_type in ("Conv", "ConvTranspose", "Gemm") and g.int8_weighted(p) \
                and g.only_consumer(t) is add:
            return p
    return None


def quantized_output(g: QDQGraph, node) -> bool:
    """Whether every reader of `node`'s output (through data movement) is a QuantizeLinear."""
    readers = g.readers(node.output[0])
    return bool(readers) and node.output[0] not in g.outputs and all(r.op_type == "QuantizeLinear" for r, _ in readers)


def _float_op_spots(g: QDQGraph) -> list[Spot]:
    """DQ → an op that cannot take INT8. LayerNorm and the GELU's inner ops have rules of their own."""
    starts = {nodes[0].name for nodes in gelus(g).values()}
    inner = {m.name for nodes in gelus(g).values() for m in nodes[1:]}
    out = []
    for dq in (n for n in g.nodes if n.op_type == "DequantizeLinear" and not g.is_constant(n.input[0])):
        for reader, path in g.readers(dq.output[0]):
            tensor = path[-1].output[0] if path else dq.output[0]
            if reader.op_type in ("LayerNormalization", "QuantizeLinear") or reader.name in inner \
                    or g.index_math(reader) or dq_fuses_into(g, reader, tensor):
                continue
            op = "GELU" if reader.name in starts else reader.op_type
            why = (f"{op} reads INT8 but its output is not quantized (TensorRT wants both)" if op in INT8_OPS
                   else f"{op} has no INT8 implementation")
            out.append(Spot("dq-float-op", reader.name, g.part(reader), f"DequantizeLinear {dq.name} feeds {why}",
                            f"a Dequantize layer of its own; the {op} runs in FP16"))
    return out


def _add_output_spots(g: QDQGraph) -> list[Spot]:
    out = []
    for n in g.nodes:
        conv = residual_conv(g, n)
        if conv is None:
            continue
        skip = next(t for t in n.input if g.producer.get(t) is not conv)
        qs = [r for r, _ in g.readers(n.output[0]) if r.op_type == "QuantizeLinear"]
        if qs and g.dq_of(skip) is None:
            out.append(Spot("q-after-float-add", qs[0].name, g.part(n),
                            f"QuantizeLinear after the residual Add fused into INT8 {conv.op_type} {conv.name}, whose "
                            "skip input is float: the fused layer's output is then float",
                            "a Quantize layer of its own after the conv (quantize the skip input to fuse it)"))
    return out
