"""Putting some parts of an NNCF-quantized ov.Model back in float without quantizing again (the
mixed-precision search's unit, as onnxruntime/surgery.py is for Q/DQ ONNX): a FakeQuantize on the activation
path is bypassed, the compressed weight (int8 Constant → Convert → Multiply) replaced by the FP32 Constant.
Hand-written because NNCF cannot drop quantizers from a calibrated model by node."""
from __future__ import annotations

from typing import Iterable

from edgefocal.backends.onnxruntime.surgery import TRANSPARENT, _cached
from edgefocal.core import Probe
from edgefocal.imagestore import batch_size
from edgefocal.naming import made_from


def ov_with_float(ov_int8, ov_fp32, float_nodes: Iterable[str]):
    """A copy of an NNCF-quantized ov.Model where the ops named after `float_nodes` (ONNX node names; an
    OpenVINO op keeps its node's name, with suffixes like `/WithoutBiases`) read float inputs. None when
    none of them read a quantized input."""
    import openvino as ov

    model = ov_int8.clone()
    fp32_ops = {op.get_friendly_name(): op for op in ov_fp32.get_ordered_ops()}
    prefixes = tuple(set(float_nodes))
    changed = False
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if not name.startswith(prefixes) or op.get_type_name() in ("FakeQuantize", "Constant"):
            continue
        if not made_from(name, prefixes):
            continue
        for i, port in enumerate(op.inputs()):
            src = port.get_source_output().get_node()
            if src.get_type_name() == "Constant" and name in fp32_ops and _restore_constant(port, fp32_ops[name], i):
                changed = True  # a bias that NNCF's bias correction adjusted for the part's INT8 weights
                continue
            if src.get_friendly_name().endswith(f"/fq_weights_{i}"):  # NNCF's decompressed INT8 weight
                weight = fp32_ops[name].input_value(i).get_node()
                port.replace_source_output(ov.opset13.constant(weight.get_data()).output(0))
                changed = True
                continue
            while src.get_type_name() in TRANSPARENT:
                port, src = src.input(0), src.input_value(0).get_node()
            if src.get_type_name() == "FakeQuantize":
                port.replace_source_output(src.input_value(0))
                changed = True
    if not changed:
        return None
    model.validate_nodes_and_infer_types()
    return model


def openvino_probe(target: str, ov_int8, ov_fp32, threads: int | None = None):
    """A mixed-precision Probe over an NNCF-quantized ov.Model, run and profiled by OpenVINO's CPU plugin."""
    import numpy as np
    import openvino as ov

    from edgefocal.backends.openvino.profile import openvino_op_times
    from edgefocal.naming import by_module

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"} | ({"INFERENCE_NUM_THREADS": threads} if threads else {})

    def logits(float_nodes, images):
        variant = ov_with_float(ov_int8, ov_fp32, float_nodes) if float_nodes else None
        return run(variant, images) if variant is not None else _cached(base, images, lambda: run(ov_int8, images))

    base: dict = {}

    def run(model, images):
        model = model.clone()
        batch = min(batch_size(images.shape), len(images))
        model.reshape({model.inputs[0]: [batch, *images.shape[1:]]})
        request = core.compile_model(model, "CPU", config).create_infer_request()
        out = []
        for i in range(0, len(images), batch):
            chunk = images[i:i + batch]
            if len(chunk) < batch:  # static shape: pad the last chunk
                chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            request.infer({0: chunk})
            out.append(request.get_output_tensor(0).data.copy()[: len(images) - i])
        del request  # the compiled variant's memory goes now, not when the next one is compiled
        return np.concatenate(out)

    def module_ms(int8: bool, sample: np.ndarray):
        return by_module(openvino_op_times(ov_int8 if int8 else ov_fp32, sample[:1], threads,
                                           None if int8 else "f32"))

    return Probe(target, logits, module_ms)


def _restore_constant(port, fp32_op, i: int) -> bool:
    import numpy as np
    import openvino as ov

    mine = port.get_source_output().get_node().get_data()
    theirs_node = fp32_op.input_value(i).get_node()
    if theirs_node.get_type_name() != "Constant":
        return False
    theirs = theirs_node.get_data()
    if mine.shape != theirs.shape or np.array_equal(mine, theirs):
        return False
    port.replace_source_output(ov.opset13.constant(theirs).output(0))
    return True
