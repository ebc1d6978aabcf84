"""Does a Q/DQ ONNX follow TensorRT's explicit-quantization rules? Checked on any ONNX, before any engine.

TensorRT reads precision from Q/DQ nodes and rejects or silently de-optimises what breaks its rules; an
engine build on a Jetson is the wrong place to find out. Rules (TensorRT developer guide, "Explicit
Quantization"):

- opset ≥ 17 (one LayerNormalization node; FP16 LayerNorm overflows when decomposed)
- signed INT8 only, symmetric: every zero point is 0 (and given, since a missing one means uint8)
- every QuantizeLinear feeds only DequantizeLinear nodes, with the same scale
- weights per-channel along the output-channel axis (axis 0 for Conv and Gemm with transB=1)
- activations per-tensor (a scalar scale)
- a quantized Conv/ConvTranspose/Gemm/MatMul has Q/DQ on every input except the bias
- the output of a weighted op is not quantized directly (TensorRT keeps it in higher precision)
- no Cast between a DequantizeLinear and its Conv/Gemm/MatMul: TensorRT cannot fuse the DQ through it, so
  the op runs in float (an FP16 conversion that leaves Q/DQ in FP32 produces exactly this)
- (warning) the skip input of a residual Add next to an INT8 conv is quantized: TensorRT fuses the Add into
  the conv either way, but "the precision of the first input to the element-wise addition layer determines
  the precision of the output of the fusion" ("Q/DQ Layer-Placement Recommendations"), so a float skip keeps
  the fused layer's output float and a Q after it cannot fuse

A rule is an "error" (TensorRT rejects the graph or runs it wrong) or a "warning" (it runs, slower).

`check_fusion` adds the fusion spots (fusion.py): Q/DQ that TensorRT accepts but cannot fuse into its INT8
kernels (channel counts off the INT8 alignment such as `f`'s 2C+L+1, transposes between a DQ and its conv,
Q/DQ around a LayerNorm or inside a GELU, DQ into an op without INT8, a Q after a float residual Add). They
are warnings, never errors; the CLI prints them with the engine's layer list predicted on paper (on_paper.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefocal.errors import BadInput
from edgefocal import naming
from edgefocal.backends.tensorrt.fusion import fusion_spots
from edgefocal.backends.tensorrt.qdq_graph import TRANSPARENT_OPS, WEIGHTED_OPS, QDQGraph, constants, feeding_dq, load

MIN_OPSET = 17


@dataclass(frozen=True)
class Violation:
    rule: str
    node: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.severity}: {self.node}: {self.message} [{self.rule}]"


def _weight_axis(node) -> int:
    """The output-channel axis of a weighted op's weight."""
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return -1
    return 0


def check_tensorrt_qdq(model_or_path, warnings: bool = True) -> list[Violation]:
    """All rule violations in the graph, errors first. An empty list means TensorRT-conformant."""
    model = load(model_or_path)
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = naming.consumers(g.node)
    const = constants(g, producer)
    out: list[Violation] = []

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        out.append(Violation("opset", "(model)", f"opset {opset} is below {MIN_OPSET}; LayerNorm would be "
                             "decomposed and can overflow in FP16"))
    out.extend(_qdq_node_rules(g, const, consumers))
    out.extend(_weighted_op_rules(g, const, producer, consumers))
    out.extend(_casts_after_dq(g, producer))
    if warnings:
        out.extend(_residual_warnings(g, producer, lambda tensor: feeding_dq(producer, tensor)))
    return sorted(out, key=lambda v: v.severity != "error")


def _qdq_node_rules(g, const, consumers: dict) -> list[Violation]:
    """Rules on each Q/DQ node itself: standard domain, constant positive scales, signed int8, symmetric,
    Q feeding only DQ with the same scale."""
    out: list[Violation] = []
    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        out.append(Violation("no-qdq", "(model)", "the graph has no QuantizeLinear/DequantizeLinear nodes; "
                             "TensorRT ≥10.1 builds INT8 only from explicit Q/DQ"))
    for n in qdq:
        if n.domain not in ("", "ai.onnx"):
            out.append(Violation("domain", n.name, f"{n.op_type} is in domain '{n.domain}', TensorRT reads only "
                                 "the standard ONNX domain"))
        scale = const(n.input[1]) if len(n.input) > 1 else None
        if scale is None:
            out.append(Violation("constant-scale", n.name, "scale is not a constant initializer"))
        elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            out.append(Violation("scale", n.name, "scale has a non-positive or non-finite value"))
        zp = const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if n.op_type == "QuantizeLinear":
            if zp is None:
                out.append(Violation("signed-int8", n.name, "no zero point given, so the output is uint8; "
                                     "TensorRT needs int8 (give an int8 zero point of 0)"))
            elif zp.dtype != np.int8:
                out.append(Violation("signed-int8", n.name, f"zero point is {zp.dtype}, TensorRT needs int8"))
            for c in consumers.get(n.output[0], []):
                if c.op_type != "DequantizeLinear":
                    out.append(Violation("q-then-dq", n.name, f"feeds {c.op_type} {c.name}; a QuantizeLinear "
                                         "must feed only DequantizeLinear"))
                elif scale is not None and (s2 := const(c.input[1])) is not None and (
                        s2.shape != scale.shape or not np.allclose(s2, scale)):
                    out.append(Violation("q-dq-scale", c.name, f"scale differs from its QuantizeLinear {n.name}"))
        else:
            src = const(n.input[0])
            if src is not None and src.dtype != np.int8:
                out.append(Violation("signed-int8", n.name, f"dequantizes {src.dtype} weights, TensorRT needs int8"))
            if zp is not None and zp.dtype != np.int8:
                out.append(Violation("signed-int8", n.name, f"zero point is {zp.dtype}, TensorRT needs int8"))
        if zp is not None and np.any(zp != 0):
            bad = int(np.count_nonzero(zp))
            out.append(Violation("symmetric", n.name, f"zero point is not 0 ({bad} of {zp.size} values, e.g. "
                                 f"{int(zp.flat[np.flatnonzero(zp)[0]])}); TensorRT supports symmetric "
                                 "quantization only"))
    return out


def _weighted_op_rules(g, const, producer: dict, consumers: dict) -> list[Violation]:
    """Rules on each quantized Conv/ConvTranspose/Gemm/MatMul: every input quantized, per-channel weights
    along the output channels, per-tensor activations, output not quantized directly."""
    out: list[Violation] = []

    def dq_of(tensor: str):
        return feeding_dq(producer, tensor)

    for n in g.node:
        if n.op_type not in WEIGHTED_OPS:
            continue
        data_inputs = list(n.input[:2])
        dqs = [dq_of(t) for t in data_inputs]
        if not any(dqs):
            continue  # a float op: allowed (partial INT8 placement)
        for idx, (t, dq) in enumerate(zip(data_inputs, dqs)):
            role = "activation" if idx == 0 else "weight"
            if dq is None:
                out.append(Violation("all-inputs", n.name, f"{n.op_type} has Q/DQ on some inputs but not on its "
                                     f"{role} '{t}'; TensorRT needs every input of a quantized op quantized"))
                continue
            scale = const(dq.input[1])
            if scale is None:
                continue
            is_weight = const(dq.input[0]) is not None or (
                (q := producer.get(dq.input[0])) is not None and q.op_type == "QuantizeLinear"
                and const(q.input[0]) is not None)
            if idx == 1 and n.op_type != "MatMul" or is_weight:
                w = const(dq.input[0])
                if w is None and (q := producer.get(dq.input[0])) is not None:
                    w = const(q.input[0])
                axis = _weight_axis(n)
                if w is not None:
                    axis = axis % w.ndim
                    channels = w.shape[axis]
                    dq_axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % max(w.ndim, 1)
                    if scale.size == 1 and channels > 1:
                        out.append(Violation("per-channel-weights", dq.name, f"weight of {n.op_type} {n.name} has "
                                             f"a per-tensor scale; TensorRT expects per-channel scales along axis "
                                             f"{axis} ({channels} output channels)"))
                    elif scale.size != 1 and (dq_axis != axis or scale.size != channels):
                        out.append(Violation("per-channel-weights", dq.name, f"weight of {n.op_type} {n.name} is "
                                             f"quantized along axis {dq_axis} ({scale.size} scales); expected axis "
                                             f"{axis} with {channels} scales"))
            elif scale.size != 1:
                out.append(Violation("per-tensor-activations", dq.name, f"activation input of {n.op_type} {n.name} "
                                     f"has {scale.size} scales; TensorRT supports per-tensor activation scales"))
        for c in consumers.get(n.output[0], []):
            if c.op_type == "QuantizeLinear":
                out.append(Violation("weighted-output", c.name, f"quantizes the output of {n.op_type} {n.name} "
                                     "directly; keep weighted-op outputs in higher precision"))
    return out


def _casts_after_dq(g, producer) -> list[Violation]:
    """A Cast between a DequantizeLinear and a weighted op hides the Q/DQ pair from TensorRT's fusion: the
    op is then no longer INT8, and the rest of the checker sees a float op (so it must be caught here)."""
    out = []
    for n in g.node:
        if n.op_type not in WEIGHTED_OPS:
            continue
        for t in n.input[:2]:
            p = producer.get(t)
            while p is not None and p.op_type in TRANSPARENT_OPS:
                p = producer.get(p.input[0])
            dq = feeding_dq(producer, p.input[0]) if p is not None and p.op_type == "Cast" else None
            if p is None or dq is None:
                continue
            out.append(Violation("cast-after-dq", p.name, f"Cast between DequantizeLinear "
                                 f"{dq.name} and {n.op_type} {n.name}; TensorRT cannot "
                                 f"fuse the Q/DQ into the {n.op_type}, which then runs in float (give the Q/DQ scales "
                                 "the compute type instead: FP16 scales need opset ≥19)"))
    return out


def _residual_warnings(g, producer, dq_of) -> list[Violation]:
    """An Add of an INT8 conv's output and an unquantized skip tensor: fused, but with a float output."""
    out = []
    for n in g.node:
        if n.op_type != "Add" or len(n.input) != 2:
            continue
        for i, j in ((0, 1), (1, 0)):
            conv = producer.get(n.input[i])
            if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or not dq_of(conv.input[0]):
                continue
            other = producer.get(n.input[j])
            if other is None or other.op_type == "Constant" or dq_of(n.input[j]) is not None:
                continue
            out.append(Violation("residual-add", n.name, f"skip input '{n.input[j]}' of the residual Add after INT8 "
                                 f"{conv.op_type} {conv.name} is not quantized; TensorRT fuses the Add into the conv "
                                 "but keeps the fused output float, so no Q after it can fuse", severity="warning"))
            break
    return out


def check_fusion(model_or_path) -> list[Violation]:
    """The fusion spots (fusion.py) as warnings: where a Q/DQ pair costs TensorRT a layer or an FP16 op."""
    return [Violation(s.rule, s.node, f"{s.part}: {s.why}; {s.consequence}", "warning")
            for s in fusion_spots(model_or_path)]


def assert_tensorrt_qdq(model_or_path, allow_warnings: bool = True) -> list[Violation]:
    """Raise BadInput naming the first offending node(s); return the remaining warnings."""
    found = check_tensorrt_qdq(model_or_path)
    errors = [v for v in found if v.severity == "error" or not allow_warnings]
    if errors:
        where = model_or_path if isinstance(model_or_path, (str, Path)) else "the Q/DQ model"
        first = "; ".join(str(v) for v in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise BadInput(f"{where} does not follow TensorRT's Q/DQ rules: {first}{more}",
                       hint="rebuild it with edgefocal's tensorrt target (symmetric int8, per-channel weights), "
                            "or run `python -m edgefocal.backends.tensorrt.conformance FILE` to list every violation")
    return [v for v in found if v.severity != "error"]


def main(argv: list[str] | None = None) -> int:
    """`python -m edgefocal.backends.tensorrt.conformance FILE.onnx [--layers]`: print every violation, the
    fusion spots and the layer counts predicted on paper (--layers: every predicted layer); exit 1 on errors
    (fusion spots are warnings and never fail)."""
    import argparse

    from edgefocal.backends.tensorrt.on_paper import predict_layers

    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("onnx", type=Path)
    p.add_argument("--layers", action="store_true", help="print every layer predicted on paper")
    args = p.parse_args(argv)
    try:
        graph = QDQGraph(load(args.onnx))
        found, spots = check_tensorrt_qdq(graph.model), check_fusion(graph)
    except BadInput as e:
        print(f"error: {e}\nhint: {e.hint}")
        return 2
    for v in found + spots:
        print(v)
    paper = predict_layers(graph)
    if args.layers:
        for layer in paper.layers:
            print(f"{layer.kind:<14} {layer.precision:>4} → {layer.out:<4} {layer.part:<40} {layer.name}")
    errors = sum(v.severity == "error" for v in found)
    print(f"{args.onnx}: {errors} errors, {len(found) - errors} warnings, {len(spots)} fusion spots; "
          f"on paper: {_summary_line(paper.summary())}")
    return 1 if errors else 0


def _summary_line(summary: dict) -> str:
    return (f"{summary['layers']} layers, {summary['int8']} INT8 and {summary['float']} float compute, "
            f"{summary['reformats']} reformats, {summary['data_movement']} slices/gathers (a prediction, not an engine)")


if __name__ == "__main__":
    raise SystemExit(main())
