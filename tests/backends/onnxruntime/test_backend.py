"""ONNX Runtime target through the shared round trip, on the trained default."""
from __future__ import annotations

import onnx
import pytest
from roundtrip import build, build_and_compare, make_context


@pytest.fixture(scope="module")
def ctx(default_model, fmnist_calibration, tmp_path_factory):
    return make_context(default_model.model, default_model.data_config, fmnist_calibration[:128],
                        tmp_path_factory.mktemp("ort"), class_names=default_model.class_names)


def test_fp32_matches_torch(ctx, fmnist_eval):
    images, labels = fmnist_eval
    (only,) = build_and_compare("onnxruntime", "fp32", ctx, images[:256], labels[:256]).values()
    assert only["max_abs_diff"] < 1e-3 and only["agreement"] == 1.0


def test_int8_agrees_with_fp32(ctx, fmnist_eval):
    images, labels = fmnist_eval
    res = build_and_compare("onnxruntime", "int8", ctx, images, labels)
    int8 = next(v for k, v in res.items() if "int8" in k)
    assert int8["agreement"] >= 0.97 and int8["top1_drop"] <= 1.0, int8


def test_int8_is_u8s8_and_follows_the_plan(ctx):
    """ORT's fast x86 flavour: uint8 activations with zero points, int8 symmetric per-channel weights; the
    plan's float parts (depthwise focal convs, head) keep float weights and compute in float, on the float
    outputs of the INT8 MatMuls before them (pointwise_matmul.py)."""
    model = onnx.load(str(build("onnxruntime", "int8", ctx)[-1].path))
    inits = {i.name: i for i in model.graph.initializer}
    zp_types = {inits[n.input[2]].data_type for n in model.graph.node
                if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits}
    assert onnx.TensorProto.UINT8 in zp_types  # activations
    int8_weights = sum(1 for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                       and inits[n.input[0]].data_type == onnx.TensorProto.INT8)
    assert int8_weights >= 10
    producer = {o: n for n in model.graph.node for o in n.output}
    float_ops = [n for n in model.graph.node if "focal_layers" in n.name and n.op_type == "Conv"
                 or n.name.startswith("head.fc/")]
    assert len(float_ops) == 11  # 5 blocks × 2 focal levels, and the head
    for n in float_ops:
        assert n.input[1] in inits and inits[n.input[1]].data_type == onnx.TensorProto.FLOAT, n.name
    head = float_ops[-1]
    assert producer[head.input[0]].op_type != "DequantizeLinear"
