"""OpenVINO target through the shared round trip, on the trained default."""
from __future__ import annotations

import copy
import re

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
    quantized_inputs = {op.get_friendly_name() for op in model.get_ordered_ops()
                        if any(_fed_by_fake_quantize(op, i, through=("Convert", "Reshape", "Transpose"))
                               for i in range(op.get_input_size()))}
    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    assert any(n.startswith("layers.0.blocks.0.modulation.f/") for n in quantized_inputs)
    assert not [n for n in quantized_inputs if "focal_layers" in n or n.startswith("head.fc/")]
    assert any("focal_layers" in n for n in names)


def test_a_head_without_bias_stays_float_as_the_plan_says(tiny_focalnet, fmnist_calibration, tmp_path):
    """OpenVINO names the op producing the output after the output; with no bias to add, that op is the
    head's MatMul itself, which must still be found by its ONNX node name and left float."""
    import openvino as ov
    import torch
    from timm.data import resolve_model_data_config

    model = copy.deepcopy(tiny_focalnet)
    with torch.no_grad():
        model.head.fc.bias.zero_()  # the converter folds a zero bias away: the MatMul is the output op
    ctx = make_context(model, resolve_model_data_config(model), fmnist_calibration[:32], tmp_path)
    model = ov.Core().read_model(str(build("openvino", "int8", ctx)[-1].path))
    head = model.get_results()[0].input_value(0).get_node()
    assert head.get_type_name() == "MatMul" and head.get_friendly_name() == "head.fc/Gemm"
    assert not any(_fed_by_fake_quantize(head, i, through=("Convert", "Reshape", "Multiply")) for i in range(2))
    assert {o.get_any_name() for o in model.outputs} == {"logits"}


def test_ir_computes_each_part_of_f_with_its_own_int8_conv(ctx):
    """conv_split.py: no split of a conv output is left in the IR, and each part of every modulation f is
    an INT8 conv (its input quantized), named under f."""
    import openvino as ov

    artifacts = build("openvino", "int8", ctx)  # the FP32 IR, then the INT8 one
    for artifact in artifacts:
        model = ov.Core().read_model(str(artifact.path))
        assert not [op for op in model.get_ordered_ops() if op.get_type_name() in ("Split", "VariadicSplit")]
        parts = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"
                 and re.search(r"modulation\.f/Conv/split\d", op.get_friendly_name())]
        assert len(parts) == 3 * len({re.sub(r"/Conv/.*", "", op.get_friendly_name()) for op in parts}) > 0
    assert all(_fed_by_fake_quantize(op) for op in parts)  # the INT8 IR's


def _fed_by_fake_quantize(op, index: int = 0, through=("Convert", "Reshape")) -> bool:
    """Whether the op's input `index` comes from a FakeQuantize, through any ops of the types `through`."""
    node = op.input_value(index).get_node()
    while node.get_type_name() in through:
        node = node.input_value(0).get_node()
    return node.get_type_name() == "FakeQuantize"


def test_ir_normalizes_over_channels_without_transposes(ctx):
    """The LayerNorms run over the channel axis (nchw_layernorm.py): no Transpose is left in the IR, the FP32
    IR's norms are MVNs, the INT8 IR's NormalizeL2s (normalize_l2.py), and the norms stay float as the plan
    says."""
    import openvino as ov

    for artifact in build("openvino", "int8", ctx):
        model = ov.Core().read_model(str(artifact.path))
        types = [op.get_type_name() for op in model.get_ordered_ops()]
        norm, other = ("NormalizeL2", "MVN") if artifact.precision == "int8" else ("MVN", "NormalizeL2")
        assert "Transpose" not in types and norm in types and other not in types, artifact.path
        norm_inputs = [op.input_value(0).get_node() for op in model.get_ordered_ops() if op.get_type_name() == norm]
        if norm == "NormalizeL2":  # its input is x − mean: what feeds the Subtract is what fed the MVN
            norm_inputs = [node.input_value(0).get_node() for node in norm_inputs]
        assert not [node for node in norm_inputs if node.get_type_name() == "FakeQuantize"]
