"""INT8 for ONNX Runtime on x86: U8S8 Q/DQ ONNX (uint8 asymmetric activations, int8 symmetric per-channel
weights), the flavour ORT fuses into its integer kernels; S8S8 Q/DQ runs slower than FP32 there.

The graph quantized is the export rewritten for ORT (`float_model`): f split per part (conv_split.py),
every 1×1 conv a MatMul (pointwise_matmul.py) and the ops between them channels-last (channels_last.py).
ONNX Runtime's own `quantize_static` places and calibrates the Q/DQ pairs, with the precision plan's float
nodes in `nodes_to_exclude`, and leaves MatMul outputs float, so that ORT runs each INT8 MatMul as
MatMulIntegerToFloat (uint8 in, float out)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgefocal.naming import WEIGHTED_OPS, made_from
from edgefocal.plan import PrecisionPlan


def float_model(onnx_fp32: Path) -> onnx.ModelProto:
    """The exported FocalNet as ONNX Runtime's INT8 graphs start from: f split, 1×1 convs as MatMuls, the ops
    between them channels-last."""
    from edgefocal.backends.conv_split import split_convs
    from edgefocal.backends.onnxruntime.channels_last import ops_channels_last
    from edgefocal.backends.onnxruntime.pointwise_matmul import pointwise_convs_to_matmul

    model = onnx.load(str(onnx_fp32))
    split_convs(model)
    pointwise_convs_to_matmul(model)
    ops_channels_last(model)
    return model


def quantize(fp32: onnx.ModelProto, plan: PrecisionPlan, calibration: np.ndarray) -> onnx.ModelProto:
    """The U8S8 Q/DQ onnx.ModelProto of `fp32` (a `float_model`) under `plan`."""
    int8 = plan_nodes(fp32, plan, int8=True)
    op_types = sorted({n.op_type for n in fp32.graph.node if n.name in int8})
    excluded = sorted(n.name for n in fp32.graph.node if n.name not in int8)
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(fp32, str(source))
        _quantize_static(source, fp32.graph.input[0].name, out, calibration, excluded, op_types)
        return onnx.load(str(out))


def plan_nodes(model: onnx.ModelProto, plan: PrecisionPlan, int8: bool) -> set[str]:
    """The nodes of `model` that compute the plan's INT8 (or float) parts: the plan names the export's
    nodes; the rewrites keep a weighted node's name or split it into weighted `<name>/<part>` nodes (their
    transposes and bias adds are data movement, no part of the plan's)."""
    named = set(plan.nodes(int8=int8))
    return {n.name for n in model.graph.node
            if n.name in named or (n.op_type in WEIGHTED_OPS and made_from(n.name, named))}


def _quantize_static(fp32: Path, input_name: str, out: Path, calibration: np.ndarray, excluded: list[str],
                     op_types: list[str]) -> None:
    """`excluded` is every node outside the plan's INT8 parts, `op_types` are those parts' op types: left
    alone, ORT also quantizes every Transpose, Split, Slice and Add it can, which the plan keeps float."""
    import onnxruntime.quantization as q

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
                          op_types_to_quantize=op_types,
                          extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]})
    finally:
        root.setLevel(level)
