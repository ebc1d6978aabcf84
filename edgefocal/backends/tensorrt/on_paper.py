"""The engine's layer list on paper: what TensorRT's explicit-quantization fusions should make of a Q/DQ
ONNX, predicted from the graph alone, for machines without TensorRT.

This is a prediction, not an engine. It walks the graph the way NVIDIA documents the fusions (sources in
fusion.py's SOURCES) and stops where the documents stop:
- weights' Q/DQ fold into their layer; a Conv/Gemm/MatMul whose inputs all come from DequantizeLinear is one
  INT8 layer ("[DQ, DQ] > Node > Q" fuses into one quantized node), with its bias, the pointwise op or erf GELU
  after it (Convolution and GELU only when input and output precision agree) and a residual Add (Convolution
  and ElementWise); its output is INT8 when every reader quantizes it and the Add's other input is INT8;
- a non-weighted op with an INT8 implementation whose inputs are dequantized and whose output is quantized
  runs INT8 ("DQ > Node > Q"); adjacent pointwise ops fuse into one PointWise layer; a transpose fuses into a
  reduce after it (Shuffle and Reduce) or into the next transpose (Shuffle and Shuffle);
- DQ moves forward and Q backward across data-movement ops (Q/DQ propagation), which then run INT8; reshapes
  and transposes of size-1 axes are identities on the data and are omitted;
- a DequantizeLinear or QuantizeLinear nothing absorbs is a layer of its own (Dequantize, Quantize). The one
  after a LayerNorm or a float pointwise layer is predicted standalone, as the developer guide's residual
  example says of a float-output layer; TensorRT's graph compiler may yet fuse some, so the count of
  standalone Quantize layers is an upper bound;
- float layers run in FP16: the engine is built from an FP16 conversion with FP32 I/O (strong_typing.py), so
  the input and output each get a Cast.
Shape and index arithmetic (integer tensors) is not counted. When a real engine's layer information exists
(the Polygraphy/TensorRT inspector on the device: `layers` in the engine row), that replaces this."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from edgefocal.backends.tensorrt.fusion import (
    INT8_OPS,
    POINTWISE,
    dq_fuses_into,
    fusion_spots,
    gelu_nodes,
    quantized_output,
)
from edgefocal.backends.tensorrt.qdq_graph import TRANSPARENT_OPS, WEIGHTED_OPS, QDQGraph, load

INT8 = "INT8"
REFORMATS = ("Shuffle", "Quantize", "Dequantize", "Cast")  # layers that only convert or reorder data
DATA_MOVEMENT = ("Slice", "Gather", "GatherElements", "GatherND", "Concat", "Pad", "Expand", "Tile")
NOTE = ("a prediction from the Q/DQ ONNX (TensorRT's documented Q/DQ fusions), not an engine; the layer list of "
        "an engine built on the device replaces it")
LAYERS_FILE = "engine_on_paper.json"


@dataclass(frozen=True)
class Layer:
    name: str  # the main ONNX nodes it fuses, joined by " + " as TensorRT names fused layers
    kind: str  # Conv, Gemm, MatMul, Normalization, PointWise, Reduce, Shuffle, Slice, Quantize, Dequantize, Cast...
    precision: str  # what it computes in: INT8, FP16 or FP32
    out: str  # the precision it writes
    part: str  # the FocalNet part

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OnPaper:
    layers: list[Layer]
    float_precision: str = "FP16"

    def summary(self) -> dict:
        compute = [layer for layer in self.layers if layer.kind not in REFORMATS + DATA_MOVEMENT]
        return {"layers": len(self.layers), "float_precision": self.float_precision,
                "int8": sum(layer.precision == INT8 for layer in compute),
                "float": sum(layer.precision != INT8 for layer in compute),
                "reformats": sum(layer.kind in REFORMATS for layer in self.layers),
                "data_movement": sum(layer.kind in DATA_MOVEMENT for layer in self.layers),
                "by_kind": dict(Counter(layer.kind for layer in self.layers))}

    def as_dict(self) -> dict:
        return {"note": NOTE, "summary": self.summary(), "layers": [layer.as_dict() for layer in self.layers]}


def predict_layers(model_or_path, float_precision: str = "FP16") -> OnPaper:
    """The ordered layer list TensorRT should build from this Q/DQ ONNX (see the module docstring)."""
    g = model_or_path if isinstance(model_or_path, QDQGraph) else QDQGraph(load(model_or_path))
    return OnPaper(_Walk(g, float_precision).layers(), float_precision)


def report_facts(model, out_dir: Path) -> dict:
    """What the report says of a Q/DQ ONNX before any engine: its fusion spots, and the layer counts predicted on
    paper (every predicted layer goes to `out_dir`/engine_on_paper.json, beside the ONNX; report.json keeps the
    counts and the file's path)."""
    g = QDQGraph(model)
    paper = predict_layers(g)
    (out_dir / LAYERS_FILE).write_text(json.dumps(paper.as_dict(), indent=1) + "\n")
    return {"fusion_spots": [s.as_dict() for s in fusion_spots(g)],
            "engine_on_paper": {"note": NOTE, **paper.summary(), "layers_file": f"{out_dir.name}/{LAYERS_FILE}"}}


class _Walk:
    """Groups the graph's nodes into predicted layers, then lists them in graph order."""

    def __init__(self, g: QDQGraph, float_precision: str):
        self.g, self.fp = g, float_precision
        self.group: dict[str, int] = {}  # node name → index into self.groups
        self.groups: list[Layer] = []
        self.int8_out: set[int] = set()  # groups whose output TensorRT keeps INT8 (their Q is fused)

    def layers(self) -> list[Layer]:
        for weighted_first in (True, False):  # a conv claims its epilogue before pointwise ops group up
            for n in self.g.nodes:
                if n.name not in self.group and not self._skipped(n) and (n.op_type in WEIGHTED_OPS) == weighted_first:
                    self._claim(n)
        return self._emit()

    def _skipped(self, n) -> bool:
        """Nodes listed where they stand (_standalone) or not at all (shape arithmetic)."""
        return self.g.index_math(n) or n.op_type in ("QuantizeLinear", "DequantizeLinear") + TRANSPARENT_OPS

    def _add(self, nodes: list, kind: str, precision: str, out: str) -> int:
        idx = len(self.groups)
        self.groups.append(Layer(" + ".join(m.name for m in nodes), kind, precision, out, self.g.part(nodes[0])))
        for m in nodes:
            self.group[m.name] = idx
        if out == INT8:
            self.int8_out.add(idx)
        return idx

    def _claim(self, n) -> None:
        if n.op_type in WEIGHTED_OPS:
            self._weighted(n)
        elif n.op_type in POINTWISE:
            self._pointwise(n)
        elif n.op_type == "LayerNormalization":
            self._add([n], "Normalization", self.fp, self.fp)
        elif n.op_type.startswith("Reduce"):
            self._add([n], "Reduce", self.fp, self.fp)
        else:
            int8 = n.op_type in INT8_OPS and self._dq_in_q_out(n)
            self._add([n], n.op_type, INT8 if int8 else self.fp, INT8 if int8 else self.fp)

    def _dq_in_q_out(self, n) -> bool:
        """TensorRT's "DQ > Node > Q": every data input dequantized, every reader quantizing."""
        inputs = self.g.data_inputs(n)
        return bool(inputs) and all(self.g.dq_of(t) is not None for t in inputs) and quantized_output(self.g, n)

    def _weighted(self, w) -> None:
        g = self.g
        nodes, skip, gelu_at = _epilogue(g, w)
        int8 = g.int8_weighted(w)
        out_int8 = int8 and (skip is None or g.dq_of(skip) is not None) and quantized_output(g, nodes[-1])
        if int8 and not out_int8 and gelu_at is not None:
            nodes = nodes[:gelu_at]  # Convolution and GELU: input and output precision must agree
        out = INT8 if out_int8 else self.fp
        kind = "Conv" if w.op_type.startswith("Conv") else w.op_type
        self._add(nodes, kind, INT8 if int8 else self.fp, out)

    def _pointwise(self, n) -> None:
        """Adjacent unclaimed pointwise ops, one PointWise layer (TensorRT's PointWise fusion)."""
        component, names, todo = [], set(), [n]
        while todo:
            m = todo.pop()
            if m.name in self.group or m.name in names:
                continue
            component.append(m)
            names.add(m.name)
            todo += [c for c in self.g.consumers.get(m.output[0], []) if c.op_type in POINTWISE]
            todo += [p for t in m.input if (p := self.g.producer.get(t)) is not None and p.op_type in POINTWISE]
        component.sort(key=self._order)
        int8 = len(component) == 1 and n.op_type in INT8_OPS and self._dq_in_q_out(n)
        self._add(component, "PointWise", INT8 if int8 else self.fp, INT8 if int8 else self.fp)

    def _order(self, node) -> int:
        if "order" not in self.g.memo:
            self.g.memo["order"] = {m.name: i for i, m in enumerate(self.g.nodes)}
        return self.g.memo["order"][node.name]

    def _emit(self) -> list[Layer]:
        out, seen = self._io_cast("network input"), set()
        for n in self.g.nodes:
            if n.name in self.group:
                if self.group[n.name] not in seen:
                    seen.add(self.group[n.name])
                    out += self._expanded(n, self.groups[self.group[n.name]])
            elif not self.g.index_math(n):
                out += self._standalone(n)
        return out + self._io_cast("network output")

    def _expanded(self, n, layer: Layer) -> list[Layer]:
        """A Split is one Slice layer per output (how TensorRT's ONNX parser imports it)."""
        if n.op_type != "Split":
            return [layer]
        return [Layer(f"{n.name}[{i}]", "Slice", layer.precision, layer.out, layer.part) for i in range(len(n.output))]

    def _io_cast(self, where: str) -> list[Layer]:
        if self.fp == "FP32":
            return []
        return [Layer(f"({where} cast)", "Cast", "FP32" if where == "network input" else self.fp,
                      self.fp if where == "network input" else "FP32", where)]

    def _standalone(self, n) -> list[Layer]:
        """Q, DQ and Transpose nodes nothing fused: each its own layer, or none."""
        if n.op_type == "DequantizeLinear":
            return self._dequantize(n)
        if n.op_type == "QuantizeLinear":
            return self._quantize(n)
        if n.op_type == "Transpose":
            return self._shuffle(n)
        return []  # reshapes and the like: identities on the data

    def _dequantize(self, dq) -> list[Layer]:
        g = self.g
        if g.is_constant(dq.input[0]):
            return []  # a weight's DQ folds into its layer
        readers = [(r, path) for r, path in g.readers(dq.output[0]) if not g.index_math(r)]
        unfused = [r for r, path in readers if not self._absorbs(r, path[-1].output[0] if path else dq.output[0])]
        if not unfused:
            return []
        return [Layer(dq.name, "Dequantize", INT8, self.fp, g.part(unfused[0]))]

    def _absorbs(self, reader, tensor: str) -> bool:
        """Whether the layer `reader` belongs to reads this INT8 tensor itself."""
        idx = self.group.get(reader.name)
        if idx is None or reader.op_type == "QuantizeLinear":
            return False
        int8_layer = self.groups[idx].precision == INT8 or reader.op_type == "LayerNormalization"
        return int8_layer and dq_fuses_into(self.g, reader, tensor)

    def _quantize(self, q) -> list[Layer]:
        g = self.g
        if g.is_constant(q.input[0]):
            return []
        src, _ = g.source(q.input[0])
        if src is not None and self.group.get(src.name) in self.int8_out:
            return []  # fused into the layer that writes INT8
        reader = next((r for dq, _ in g.readers(q.output[0]) for r, _ in g.readers(dq.output[0])), q)
        return [Layer(q.name, "Quantize", self.fp if src is not None else "FP32", INT8, g.part(reader))]

    def _shuffle(self, t) -> list[Layer]:
        g = self.g
        if not g.moves_data(t):
            return []
        nxt = g.only_consumer(t.output[0])
        if nxt is not None and (nxt.op_type.startswith("Reduce") or (nxt.op_type == "Transpose" and g.moves_data(nxt))):
            return []  # Shuffle and Reduce / Shuffle and Shuffle: fused with the next layer
        int8 = g.dq_of(t.output[0]) is not None or self._int8_source(t)
        precision = INT8 if int8 else self.fp
        reader = next((r for r, _ in g.readers(t.output[0])), t)
        return [Layer(t.name, "Shuffle", precision, precision, g.part(reader))]

    def _int8_source(self, t) -> bool:
        src, _ = self.g.source(t.output[0])
        return src is not None and self.group.get(src.name) in self.int8_out


def _epilogue(g: QDQGraph, w) -> tuple[list, str | None, int | None]:
    """(w and the nodes TensorRT fuses behind it, the residual Add's other input or None, the index in that
    list where a GELU starts or None)."""
    nodes, t, skip, gelu_at = [w], w.output[0], None, None
    while t not in g.outputs:
        readers = g.consumers.get(t, [])
        gelu = next((gn for r in readers if (gn := gelu_nodes(g, r)) is not None), None)
        if gelu is not None and {r.name for r in readers} <= {m.name for m in gelu}:
            gelu_at = len(nodes) if gelu_at is None else gelu_at
            nodes, t = nodes + gelu, gelu[-1].output[0]
            continue
        c = g.only_consumer(t)
        if c is None or c.op_type not in POINTWISE:
            break
        inputs = g.data_inputs(c)
        if len(inputs) == 1:  # a generic activation: one input, one output
            nodes, t = nodes + [c], c.output[0]
            continue
        if c.op_type == "Add" and len(inputs) == 2 and w.op_type != "MatMul":  # Convolution and ElementWise
            skip = next(x for x in inputs if x != t)
            nodes.append(c)
        break
    return nodes, skip, gelu_at
