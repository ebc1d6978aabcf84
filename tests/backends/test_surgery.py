"""Parts of a calibrated INT8 model put back in float by surgery: with every INT8 part float the model is
the FP32 one again (up to bias correction), with none it is unchanged, and a part that reads no quantized
input leaves the model as it is (None)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefocal.export import onnx_from_torch
from edgefocal.precision import plan_precision
from edgefocal.backends.onnxruntime.surgery import qdq_onnx_with_float
from edgefocal.backends.openvino.surgery import ov_with_float
from edgefocal.recipe import QuantizeSpec


@pytest.fixture(scope="module")
def setup(default_model, fmnist_calibration, tmp_path_factory):
    path = onnx_from_torch(default_model.model, (1, 32, 32), tmp_path_factory.mktemp("surgery") / "m.onnx")
    return path, onnx.load(str(path)), plan_precision(onnx.load(str(path))), fmnist_calibration[:64]


def _ort(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


@pytest.mark.parametrize("backend", ["ort-u8s8", "trt-qdq"])
def test_qdq_onnx_all_float_is_fp32_again(backend, setup, fmnist_eval):
    from edgefocal.backends.onnxruntime import quantize as ort_q
    from edgefocal.backends.tensorrt import qdq as tensorrt_qdq

    path, fp32, plan, calib = setup
    if backend == "ort-u8s8":  # ORT quantizes the export rewritten for it (1×1 convs as MatMuls, f split)
        fp32 = ort_q.float_model(path)
        int8 = ort_q.quantize(fp32, plan, calib)
    else:
        int8 = tensorrt_qdq.quantize(path, plan, calib, QuantizeSpec(fast_bias_correction=False), log=lambda m: None)[0]
    x = fmnist_eval[0][:200]
    ref, q = _ort(fp32, x), _ort(int8, x)
    back = qdq_onnx_with_float(int8, fp32, plan.nodes(int8=True))
    readers = {n.name: n.op_type for n in back.graph.node}
    dq_outputs = {n.output[0] for n in back.graph.node if n.op_type == "DequantizeLinear"}
    # only the input's Shape may still read a dequantized tensor: no arithmetic does
    assert {readers[n.name] for n in back.graph.node if set(n.input) & dq_outputs} <= {"Shape"}
    assert np.abs(_ort(back, x) - ref).max() < 1e-4 < np.abs(q - ref).max()
    assert qdq_onnx_with_float(int8, fp32, ["head.fc/Gemm"]) is None  # the head is float already


def test_openvino_all_float_is_fp32_again(setup, fmnist_eval):
    import openvino as ov

    from edgefocal.backends.openvino import quantize as ov_q

    path, _, plan, calib = setup
    fp32 = ov.convert_model(str(path))
    int8 = ov_q.quantize(ov.convert_model(str(path)), plan, calib, QuantizeSpec(fast_bias_correction=False))
    x = fmnist_eval[0][:200]
    core = ov.Core()
    run = lambda m: core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0]  # noqa: E731
    back = ov_with_float(int8, fp32, plan.nodes(int8=True))
    fq_readers = {t.get_node().get_type_name() for op in back.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
                  for t in op.output(0).get_target_inputs()}
    assert fq_readers <= {"ShapeOf"}  # only the input's shape may still read a quantized tensor
    assert np.abs(run(back) - run(fp32)).max() < 1e-4 < np.abs(run(int8) - run(fp32)).max()
    assert ov_with_float(int8, fp32, ["layers.0.blocks.0/Add"]) is None  # residual adds are not quantized
