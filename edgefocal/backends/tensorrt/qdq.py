"""INT8 Q/DQ ONNX for TensorRT's explicit quantization (the only INT8 path in TensorRT 11).

NNCF does the placement and calibration: PERFORMANCE preset (symmetric, signed int8 — its default
preset also gives zero points of 0, but ModelType.TRANSFORMER alone turns activations asymmetric),
per-channel weights, per-tensor activations forced (NNCF otherwise gives the depthwise focal convs
per-channel activation scales, which TensorRT rejects), ModelType.TRANSFORMER so that only inputs of
weighted ops are quantized (without it NNCF also quantizes inside the exported GELU, which breaks
TensorRT's GELU fusion), SmoothQuant off (it inserts a Mul before the head), and the preset's float
ops in the ignored scope.

What NNCF has no option for is added afterwards, by hand (each a few lines over the ONNX graph):
- Q/DQ between Transpose and LayerNorm after an INT8 conv (stem/downsample): TensorRT then fuses the
  Q into the conv (INT8 out) instead of an int8-in/fp16-out kernel plus a reformat layer.
- Q/DQ on the skip input of a residual Add after an INT8 conv, when the preset asks for it: TensorRT
  fuses the Add into the conv, and with an INT8 skip the fused layer can write INT8, so a Q after it fuses
  too (developer guide, "Q/DQ Layer-Placement Recommendations").
- Q/DQ on the activation of a preset INT8 op NNCF left unquantized (the head Linear, behind the
  exporter's Gather/Reshape flattening): TensorRT needs every input of a quantized op quantized.
Their scales are max-calibrated (amax/127) on the same calibration set, via ONNX Runtime.
Which parts get Q/DQ is the precision plan's decision (precision/policy.py): its float nodes go to NNCF's
ignored scope; the residual and LayerNorm-input pairs are added only where the plan makes those parts INT8.
The result is checked by `conformance.check_tensorrt_qdq` before it is returned."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edgefocal._deps import require
from edgefocal.errors import BadInput
from edgefocal.plan import WEIGHTED_ROLES, PrecisionPlan


def _nncf_quantize(model, calibration: np.ndarray, ignored: list[str], spec):
    nncf = require("nncf", "quantize")
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.parameters import ModelType
    from nncf.quantization.advanced_parameters import AdvancedSmoothQuantParameters, QuantizationParameters

    from edgefocal.backends.nncf import advanced_parameters, dataset, quiet_nncf

    input_name = model.graph.input[0].name
    advanced = advanced_parameters(
        spec,
        activations_quantization_params=QuantizationParameters(mode=QuantizationScheme.SYMMETRIC, per_channel=False),
        weights_quantization_params=QuantizationParameters(mode=QuantizationScheme.SYMMETRIC, per_channel=True),
        smooth_quant_alphas=AdvancedSmoothQuantParameters(convolution=-1, matmul=-1),
    )
    with quiet_nncf():
        return nncf.quantize(
            model, dataset(calibration, lambda x: {input_name: x}), subset_size=len(calibration),
            preset=nncf.QuantizationPreset.PERFORMANCE, model_type=ModelType.TRANSFORMER,
            fast_bias_correction=spec.fast_bias_correction,
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
            advanced_parameters=advanced,
        )


def _signed_activations(model) -> int:
    """NNCF quantizes a tensor that never goes negative (min-max ranges of a [0, 1] image input) as uint8 with
    zero point 0; TensorRT takes int8 only. Re-express such pairs as int8, zero point 0, with the scale
    stretched by 255/127 so the same range [0, 255·s] stays representable. Returns the pairs changed."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    changed: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp = inits.get(node.input[2])
        if zp is None or numpy_helper.to_array(zp).dtype != np.uint8 or node.input[2] in changed:
            continue
        scale = inits[node.input[1]]
        scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(255 / 127), scale.name))
        zp.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(zp), dtype=np.int8), zp.name))
        changed.add(node.input[2])
    return len(changed)


def _amax(model, tensors: list[str], calibration: np.ndarray, batch: int | None = None) -> dict[str, float]:
    """max |x| of intermediate tensors of the (quantized) model over the calibration set, a few images at a
    time: every fetched tensor of a batch is held at once (a quarter of imagestore.batch_size: 2 at 224²)."""
    from edgefocal.imagestore import batch_size

    batch = batch or max(1, batch_size(calibration.shape) // 4)
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    for t in tensors:
        m.graph.output.append(onnx.ValueInfoProto(name=t))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    amax = dict.fromkeys(tensors, 0.0)
    for i in range(0, len(calibration), batch):
        for t, v in zip(tensors, sess.run(tensors, {name: calibration[i: i + batch]})):
            amax[t] = max(amax[t], float(np.abs(np.asarray(v)).max()))
    return amax


def _insert_qdq(model, tensor: str, consumer, scale: float) -> str:
    """Q/DQ on `tensor` for one consumer node only (other readers keep the float tensor)."""
    from onnx import helper, numpy_helper

    g = model.graph
    base = f"{tensor}_trt_{consumer.name}"
    g.initializer.extend([numpy_helper.from_array(np.array(scale, dtype=np.float32), f"{base}_scale"),
                          numpy_helper.from_array(np.array(0, dtype=np.int8), f"{base}_zp")])
    q = helper.make_node("QuantizeLinear", [tensor, f"{base}_scale", f"{base}_zp"], [f"{base}_q"], name=f"{base}_Q")
    dq = helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zp"], [f"{base}_dq"],
                          name=f"{base}_DQ")
    for i, t in enumerate(consumer.input):
        if t == tensor:
            consumer.input[i] = f"{base}_dq"
    idx = next(i for i, n in enumerate(g.node) if n is consumer or n.name == consumer.name)
    g.node.insert(idx, dq)
    g.node.insert(idx, q)
    return q.name


def _fusion_sites(model, plan: PrecisionPlan) -> list[tuple[str, object, str]]:
    """(tensor, consumer, why) pairs that need a Q/DQ NNCF did not place."""
    from edgefocal.backends.tensorrt.conformance import feeding_dq

    g = model.graph
    producer = {o: n for n in g.node for o in n.output}

    def from_dq(tensor: str) -> bool:
        return feeding_dq(producer, tensor) is not None

    def int8_conv(tensor: str):
        p = producer.get(tensor)
        return p if p is not None and p.op_type in ("Conv", "ConvTranspose") and from_dq(p.input[0]) else None

    weighted_int8 = set(plan.nodes(int8=True, roles_=WEIGHTED_ROLES))
    sites = []
    for n in g.node:
        if n.name in weighted_int8 and not from_dq(n.input[0]):
            # NNCF leaves the head's activation unquantized behind the exporter's Gather/Reshape
            # flattening; TensorRT needs every input of a quantized op quantized
            sites.append((n.input[0], n, "activation"))
        if n.op_type == "LayerNormalization" and plan.is_int8(n.name):
            t = producer.get(n.input[0])
            if t is not None and t.op_type == "Transpose" and int8_conv(t.input[0]) is not None:
                sites.append((n.input[0], n, "layernorm"))
        if n.op_type == "Add" and len(n.input) == 2 and plan.is_int8(n.name):
            for i, j in ((0, 1), (1, 0)):
                skip = producer.get(n.input[j])
                if int8_conv(n.input[i]) is not None and skip is not None and skip.op_type != "Constant" \
                        and not from_dq(n.input[j]):
                    sites.append((n.input[j], n, "residual"))
                    break
    return sites


def quantize(onnx_fp32: Path, plan: PrecisionPlan, calibration: np.ndarray, spec=None,
             log: Callable[[str], None] = print) -> tuple[object, dict]:
    """A TensorRT-conformant INT8 Q/DQ ONNX (in memory) of `onnx_fp32` under `plan`, and placement facts."""
    import onnx
    from edgefocal.backends.tensorrt.conformance import assert_tensorrt_qdq

    if calibration is None or len(calibration) == 0:
        raise BadInput("INT8 for TensorRT needs calibration images, none were given",
                       hint="set calibration: in the recipe (e.g. calibration: fmnist-train-300)")
    log(f"TensorRT Q/DQ under policy '{plan.preset}': INT8 {plan.role_counts(True)}, float {plan.role_counts(False)}")
    from edgefocal.recipe import QuantizeSpec

    q = _nncf_quantize(onnx.load(str(onnx_fp32)), np.ascontiguousarray(calibration, dtype=np.float32),
                       plan.nodes(int8=False), spec or QuantizeSpec())
    _signed_activations(q)
    sites = _fusion_sites(q, plan)
    if sites:
        tensors = sorted({t for t, _, _ in sites})
        log(f"TensorRT Q/DQ: max-calibrating {len(tensors)} activations on {len(calibration)} images")
        amax = _amax(q, tensors, calibration)
        for tensor, consumer, _ in sites:
            _insert_qdq(q, tensor, consumer, max(amax[tensor], 1e-8) / 127.0)
    warnings = assert_tensorrt_qdq(q)
    return q, {
        "policy": plan.preset,
        "int8_roles": plan.role_counts(True),
        "float_roles": plan.role_counts(False),
        "fusion_qdq": {"layernorm": sum(w == "layernorm" for *_, w in sites),
                       "residual": sum(w == "residual" for *_, w in sites)},
        "added_activation_qdq": sum(w == "activation" for *_, w in sites),
        "qdq_nodes": sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in q.graph.node),
        "conformance": "pass",
        "conformance_warnings": [str(w) for w in warnings],
    }
