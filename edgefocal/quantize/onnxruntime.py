"""INT8 for ONNX Runtime on x86: U8S8 Q/DQ ONNX (uint8 asymmetric activations, int8 symmetric per-channel
weights), the flavour ORT fuses into QLinear kernels; S8S8 Q/DQ runs slower than FP32 there.

By default ONNX Runtime's own `quantize_static` places and calibrates the Q/DQ pairs (it puts them where
ORT's graph fusions expect them), with the precision plan's float nodes in `nodes_to_exclude`. With
`quantize.max_agreement_drop`, NNCF's accuracy control does it instead (ORT has no accuracy control), its
int8 activations rewritten to the equivalent uint8 grid."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgefocal._deps import require
from edgefocal.quantize.nncf_common import (
    advanced_parameters,
    agreement_metric,
    dataset,
    ignored_scope,
    quiet_nncf,
    validation_dataset,
)
from edgefocal.quantize.policy import PrecisionPlan
from edgefocal.recipe import QuantizeSpec


def quantize(onnx_fp32: Path, plan: PrecisionPlan, calibration: np.ndarray, spec: QuantizeSpec,
             validation: tuple[np.ndarray, np.ndarray] | None = None):
    """The U8S8 Q/DQ onnx.ModelProto of `onnx_fp32` under `plan`."""
    if spec.max_agreement_drop is not None and validation is not None:
        return _with_accuracy_control(onnx.load(str(onnx_fp32)), plan, calibration, spec, validation)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "int8.onnx"
        _quantize_static(onnx_fp32, out, calibration, plan.nodes(int8=False), _int8_op_types(onnx_fp32, plan))
        return onnx.load(str(out))


def _int8_op_types(onnx_fp32: Path, plan: PrecisionPlan) -> list[str]:
    """The op types of the plan's INT8 parts: ORT then quantizes those ops and nothing else on its own
    (left alone, it also quantizes every Transpose, Split, Slice and Add it can, which the plan keeps float)."""
    int8 = set(plan.nodes(int8=True))
    return sorted({n.op_type for n in onnx.load(str(onnx_fp32), load_external_data=False).graph.node if n.name in int8})


def _quantize_static(fp32: Path, out: Path, calibration: np.ndarray, excluded: list[str], op_types: list[str]) -> None:
    import onnxruntime.quantization as q
    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self._items = iter([{input_name: calibration[i: i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self._items, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns on the root logger for every LayerNorm weight
    try:
        q.quantize_static(str(fp32), str(out), Reader(), quant_format=q.QuantFormat.QDQ,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8, per_channel=True,
                          calibrate_method=q.CalibrationMethod.MinMax, nodes_to_exclude=excluded,
                          op_types_to_quantize=op_types)
    finally:
        root.setLevel(level)


def _with_accuracy_control(model, plan: PrecisionPlan, calibration: np.ndarray, spec: QuantizeSpec,
                           validation: tuple[np.ndarray, np.ndarray]):
    nncf = require("nncf", "quantize")
    input_name = model.graph.input[0].name

    def predict(candidate, images):
        import onnxruntime as ort

        sess = ort.InferenceSession(candidate.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {input_name: images})[0]

    with quiet_nncf():
        q = nncf.quantize_with_accuracy_control(
            model, dataset(calibration, lambda x: {input_name: x}), validation_dataset(validation),
            agreement_metric(predict), max_drop=spec.max_agreement_drop, subset_size=len(calibration),
            fast_bias_correction=spec.fast_bias_correction, preset=nncf.QuantizationPreset.MIXED,
            model_type=nncf.ModelType.TRANSFORMER, ignored_scope=ignored_scope(plan),
            advanced_quantization_parameters=advanced_parameters(spec))
    return activations_to_uint8(q)


def activations_to_uint8(onnx_model):
    """Rewrite int8 activation Q/DQ pairs as uint8 with the zero point shifted by 128: the same grid
    (q_u8 = q_s8 + 128), so the numbers do not change, but ONNX Runtime on x86 then fuses the pairs into
    its fast U8S8 kernels. Hand-written because NNCF's transformer model type always emits int8
    activations."""
    from onnx import numpy_helper

    inits = {i.name: i for i in onnx_model.graph.initializer}
    nodes = onnx_model.graph.node
    activation_zps = {n.input[2] for n in nodes if n.op_type == "QuantizeLinear" and len(n.input) > 2
                      and n.input[0] not in inits}
    weight_zps = {n.input[2] for n in nodes if n.op_type == "DequantizeLinear" and len(n.input) > 2
                  and n.input[0] in inits}
    converted = set()
    for name in activation_zps - weight_zps:
        init = inits.get(name)
        if init is None or init.data_type != onnx.TensorProto.INT8:
            continue
        shifted = (numpy_helper.to_array(init).astype(np.int16) + 128).astype(np.uint8)
        init.CopyFrom(numpy_helper.from_array(shifted, name))
        converted.add(name)
    # the quantized tensors' recorded types are now stale: drop them and let the runtime infer
    outputs = {n.output[0] for n in nodes if n.op_type == "QuantizeLinear" and len(n.input) > 2
               and n.input[2] in converted}
    kept = [v for v in onnx_model.graph.value_info if v.name not in outputs]
    del onnx_model.graph.value_info[:]
    onnx_model.graph.value_info.extend(kept)
    return onnx_model
