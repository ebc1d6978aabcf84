"""ONNX Runtime and OpenVINO through the shared round trip, on the trained default."""
from __future__ import annotations

import onnx
import pytest
from roundtrip import build_and_compare, make_context


@pytest.fixture(scope="module")
def ctx(default_model, fmnist_calibration, tmp_path_factory):
    return make_context(default_model.model, default_model.data_config, fmnist_calibration[:128],
                        tmp_path_factory.mktemp("cpu"), class_names=default_model.class_names)


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_fp32_matches_torch(target, ctx, fmnist_eval):
    images, labels = fmnist_eval
    res = build_and_compare(target, "fp32", ctx, images[:256], labels[:256])
    (only,) = res.values()
    assert only["max_abs_diff"] < 1e-3 and only["agreement"] == 1.0


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_int8_agrees_with_fp32(target, ctx, fmnist_eval):
    images, labels = fmnist_eval
    res = build_and_compare(target, "int8", ctx, images, labels)
    int8 = next(v for k, v in res.items() if "int8" in k)
    assert int8["agreement"] >= 0.97 and int8["top1_drop"] <= 1.0, int8


def test_onnxruntime_int8_is_u8s8(ctx):
    """ORT's fast x86 flavour: uint8 activations with zero points, int8 symmetric per-channel weights."""
    model = onnx.load(str(ctx.workdir / "onnxruntime" / "model_int8_u8s8.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    zp_types = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            zp_types[inits[node.input[2]].data_type] = zp_types.get(inits[node.input[2]].data_type, 0) + 1
    assert onnx.TensorProto.UINT8 in zp_types  # activations
    convs_with_int8_weights = sum(
        1 for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8)
    assert convs_with_int8_weights >= 10
