"""OpenVINO target through the shared round trip, on the trained default."""
from __future__ import annotations

import pytest
from roundtrip import build, build_and_compare, make_context


@pytest.fixture(scope="module")
def ctx(default_model, fmnist_calibration, tmp_path_factory):
    return make_context(default_model.model, default_model.data_config, fmnist_calibration[:128],
                        tmp_path_factory.mktemp("ov"), class_names=default_model.class_names)


def test_fp32_matches_torch(ctx, fmnist_eval):
    images, labels = fmnist_eval
    (only,) = build_and_compare("openvino", "fp32", ctx, images[:256], labels[:256]).values()
    assert only["max_abs_diff"] < 1e-3 and only["agreement"] == 1.0  # the f32 hint: no bf16 on this CPU


def test_int8_agrees_with_fp32(ctx, fmnist_eval):
    images, labels = fmnist_eval
    res = build_and_compare("openvino", "int8", ctx, images, labels)
    int8 = next(v for k, v in res.items() if "int8" in k)
    assert int8["agreement"] >= 0.97 and int8["top1_drop"] <= 1.0, int8


def test_int8_ir_keeps_the_plans_float_parts_float(ctx):
    """The IR's op names are the exported ONNX node names, so the plan reaches OpenVINO: no FakeQuantize
    feeds the depthwise focal convs or the head."""
    import openvino as ov

    model = ov.Core().read_model(str(build("openvino", "int8", ctx)[-1].path))
    quantized_inputs = set()
    for op in model.get_ordered_ops():
        for inp in op.inputs():
            src = inp.get_source_output().get_node()
            while src.get_type_name() in ("Convert", "Reshape", "Transpose"):
                src = src.input_value(0).get_node()
            if src.get_type_name() == "FakeQuantize":
                quantized_inputs.add(op.get_friendly_name())
    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    assert any(n.startswith("layers.0.blocks.0.modulation.f/") for n in quantized_inputs)
    assert not [n for n in quantized_inputs if "focal_layers" in n or n.startswith("head.fc/")]
    assert any("focal_layers" in n for n in names)


def test_ir_normalizes_over_channels_without_transposes(ctx):
    """The LayerNorms run over the channel axis (nchw_layernorm.py): no Transpose is left in the IR, and
    the norms stay float as the plan says."""
    import openvino as ov

    for artifact in build("openvino", "int8", ctx):
        model = ov.Core().read_model(str(artifact.path))
        types = [op.get_type_name() for op in model.get_ordered_ops()]
        assert "Transpose" not in types and "MVN" in types, artifact.path
        fq_fed_norms = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "MVN"
                        and op.input_value(0).get_node().get_type_name() == "FakeQuantize"]
        assert not fq_fed_norms
