"""INT8 for ONNX Runtime on x86: U8S8 Q/DQ ONNX (uint8 asymmetric activations, int8 symmetric per-channel
weights), the flavour ORT fuses into QLinear kernels; S8S8 Q/DQ runs slower than FP32 there.

ONNX Runtime's own `quantize_static` places and calibrates the Q/DQ pairs (it puts them where ORT's graph
fusions expect them), with the precision plan's float nodes in `nodes_to_exclude`."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgefocal.plan import PrecisionPlan


def quantize(onnx_fp32: Path, plan: PrecisionPlan, calibration: np.ndarray):
    """The U8S8 Q/DQ onnx.ModelProto of `onnx_fp32` under `plan`."""
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
