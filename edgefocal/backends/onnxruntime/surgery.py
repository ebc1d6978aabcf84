"""Putting some parts of a Q/DQ ONNX (ONNX Runtime's U8S8, TensorRT's S8S8) back in float without
quantizing again: the unit of the mixed-precision search, which tries many such variants of one calibrated
model. A part goes float when its inputs stop being quantized: a DequantizeLinear feeding it is bypassed, a
weight is the FP32 one again (from the FP32 model, matched by node name: export names every node after its
torch module, and the quantizers keep those names). Hand-written because neither NNCF nor ONNX Runtime can
drop quantizers from a calibrated model by node."""
from __future__ import annotations

from typing import Iterable

from edgefocal.core import Probe
from edgefocal.imagestore import batch_size
from edgefocal.naming import made_from

TRANSPARENT = ("Transpose", "Reshape")


def qdq_onnx_with_float(qdq_model, fp32_model, float_nodes: Iterable[str]):
    """A copy of a Q/DQ ONNX where the named nodes read float inputs; unused Q/DQ nodes are removed.
    None when none of them read a quantized input (the variant is the INT8 model itself)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(qdq_model)
    wanted = set(float_nodes)
    g = m.graph
    chosen = [n for n in g.node if made_from(n.name, wanted)]  # the rewrites' `<name>/<part>` nodes too
    producer = {o: n for n in g.node for o in n.output}
    fp_nodes = {n.name: n for n in fp32_model.graph.node}
    fp_inits = {i.name: i for i in fp32_model.graph.initializer}
    have = {i.name for i in g.initializer}
    changed = False
    for node in chosen:
        for i, tensor in enumerate(node.input):
            reader, slot = node, i
            dq = producer.get(tensor)
            while dq is not None and dq.op_type in TRANSPARENT:  # DQ → Transpose → node reads INT8 too
                reader, slot, dq = dq, 0, producer.get(dq.input[0])
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            changed = True
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                reader.input[slot] = q.input[0]
            elif node.name in fp_nodes and i < len(fp_nodes[node.name].input):
                node.input[i] = _float_weight(g, fp_inits, fp_nodes[node.name].input[i], have)
    changed |= _restore_biases(g, chosen, fp_nodes, fp_inits, have)
    changed |= _unquantize_outputs(g, chosen)
    if not changed:
        return None
    _remove_unused(g)
    return m


def _restore_biases(g, nodes, fp_nodes: dict, fp_inits: dict, have: set[str]) -> bool:
    """The FP32 bias of a weighted node going float: NNCF's bias correction adjusted it for the node's own
    weight rounding, which a float node no longer has."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in g.initializer}
    changed = False
    for node in nodes:
        src = fp_nodes.get(node.name)
        if node.op_type not in ("Conv", "Gemm") or src is None or len(node.input) < 3 or len(src.input) < 3:
            continue
        mine, theirs = inits.get(node.input[2]), fp_inits.get(src.input[2])
        if mine is not None and theirs is not None and not (numpy_helper.to_array(mine) == numpy_helper.to_array(theirs)).all():
            restored = onnx.TensorProto()
            restored.CopyFrom(theirs)
            restored.name = f"{src.input[2]}.fp32"
            if restored.name not in have:
                g.initializer.append(restored)
                have.add(restored.name)
            node.input[2] = restored.name
            changed = True
    return changed


def _unquantize_outputs(g, nodes) -> bool:
    """Readers of a Q→DQ pair on these nodes' outputs read the float output again (ONNX Runtime's U8S8
    quantizes a conv's output for its QLinearConv fusion: that rounding belongs to the conv's INT8)."""
    consumers: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    changed = False
    for node in nodes:
        for out in node.output:
            for q in [c for c in consumers.get(out, []) if c.op_type == "QuantizeLinear"]:
                for dq in [c for c in consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"]:
                    for reader in consumers.get(dq.output[0], []):
                        reader.input[:] = [out if t == dq.output[0] else t for t in reader.input]
                        changed = True
    return changed


def _float_weight(g, fp_inits: dict, name: str, have: set[str]) -> str:
    """The FP32 initializer `name` in `g`, renamed where the quantizer reuses the name for its DQ output."""
    import onnx

    if name not in fp_inits:
        return name
    outputs = {o for n in g.node for o in n.output}
    new = name if name not in outputs else f"{name}.fp32"
    if new not in have:
        init = onnx.TensorProto()
        init.CopyFrom(fp_inits[name])
        init.name = new
        g.initializer.append(init)
        have.add(new)
    return new


def _remove_unused(g) -> None:
    needed = {o.name for o in g.output}
    kept = []
    for node in reversed(list(g.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    del g.node[:]
    g.node.extend(reversed(kept))
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)


def onnx_probe(target: str, qdq_model, fp32, threads: int | None = None):
    """A mixed-precision Probe (precision/search.py) over a Q/DQ ONNX and the FP32 ONNX it was quantized from
    (both onnx.ModelProto), run and profiled in ONNX Runtime's CPU provider (for TensorRT, ONNX Runtime
    stands in: the engine cannot run here)."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import onnx
    import onnxruntime as ort

    from edgefocal.backends.onnxruntime import session_options
    from edgefocal.backends.onnxruntime.profile import onnxruntime_op_times
    from edgefocal.naming import by_module

    opts = session_options(threads)  # as the verifying runner runs the artifact

    def run(model, images):
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        name, batch = sess.get_inputs()[0].name, batch_size(images.shape)
        return np.concatenate([sess.run(None, {name: images[i:i + batch]})[0] for i in range(0, len(images), batch)])

    def logits(float_nodes, images):
        variant = qdq_onnx_with_float(qdq_model, fp32, float_nodes) if float_nodes else None
        return run(variant, images) if variant is not None else _cached(base, images, lambda: run(qdq_model, images))

    base: dict = {}

    def module_ms(int8: bool, sample: np.ndarray):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            onnx.save(qdq_model if int8 else fp32, str(path))
            return by_module(onnxruntime_op_times(path, sample[:1], threads))

    return Probe(target, logits, module_ms)


def _cached(cache: dict, images, compute):
    """The INT8 model's own logits, computed once per image set (most parts change nothing on some runtime:
    OpenVINO leaves residual adds unquantized, for instance)."""
    key = (id(images), len(images))
    if key not in cache:
        cache[key] = compute()
    return cache[key]
