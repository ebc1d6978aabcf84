"""The engine's layer list predicted on paper: each documented fusion on a hand-made graph, then the whole
Q/DQ ONNX edgefocal writes for the embedded default (slow)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefocal.backends.tensorrt.fusion import fusion_spots
from edgefocal.backends.tensorrt.on_paper import NOTE, predict_layers
from edgefocal.backends.tensorrt.qdq_graph import QDQGraph
from edgefocal.export import onnx_from_torch
from hand_graphs import HandGraph
from qdq_helpers import qdq_onnx_for_tensorrt


def _kinds(model) -> list[tuple[str, str, str]]:
    return [(layer.kind, layer.precision, layer.out) for layer in predict_layers(model).layers]


def test_conv_gelu_q_conv_is_two_int8_layers_behind_one_input_quantize():
    h = HandGraph()
    a = h.gelu(h.conv("input", 32, 128, "layers.0.blocks.0.mlp.fc1"), "layers.0.blocks.0.mlp.act")
    y = h.conv(a, 128, 32, "layers.0.blocks.0.mlp.fc2")
    paper = predict_layers(h.model(y))
    assert [(layer.kind, layer.precision, layer.out) for layer in paper.layers] == [
        ("Cast", "FP32", "FP16"), ("Quantize", "FP32", "INT8"), ("Conv", "INT8", "INT8"), ("Conv", "INT8", "FP16"),
        ("Cast", "FP16", "FP32")]
    fc1 = paper.layers[2]
    assert fc1.part == "stage 1 block 1 mlp fc1" and fc1.name.endswith("layers.0.blocks.0.mlp.act/Mul_1")  # GELU fused
    assert paper.summary() == {"layers": 5, "float_precision": "FP16", "int8": 2, "float": 0, "reformats": 3, "data_movement": 0,
                               "by_kind": {"Cast": 2, "Quantize": 1, "Conv": 2}}
    assert paper.as_dict()["note"] == NOTE and "not an engine" in NOTE


def test_gelu_stays_out_of_an_int8_conv_whose_output_is_float():
    """Convolution and GELU fuse only when input and output precision agree."""
    h = HandGraph()
    y = h.gelu(h.conv("input", 32, 128, "layers.0.blocks.0.mlp.fc1"), "layers.0.blocks.0.mlp.act")
    assert _kinds(h.model(y))[2:4] == [("Conv", "INT8", "FP16"), ("PointWise", "FP16", "FP16")]


@pytest.mark.parametrize("skip_int8", [False, True])
def test_residual_add_fuses_and_its_skip_decides_whether_the_q_does(skip_int8):
    h = HandGraph()
    c = h.conv("input", 32, 32, "layers.0.blocks.0.modulation.proj")
    add = h.node("Add", [h.qdq("input") if skip_int8 else "input", c], "layers.0.blocks.0/Add")
    y = h.conv(add, 32, 64, "layers.1.downsample.proj")
    layers = predict_layers(h.model(y)).layers
    proj = next(layer for layer in layers if layer.kind == "Conv" and layer.part.endswith("modulation proj"))
    assert proj.name.endswith("layers.0.blocks.0/Add") and proj.out == ("INT8" if skip_int8 else "FP16")
    standalone_q = [layer for layer in layers if layer.kind == "Quantize" and layer.part == "stage 2 downsample conv"]
    assert len(standalone_q) == (0 if skip_int8 else 1)


@pytest.mark.parametrize("shape, layers", [((1, 8, 8, 32), [("Shuffle", "INT8", "INT8")]), ((1, 1, 1, 32), [])])
def test_transpose_between_dq_and_conv_runs_int8_unless_it_is_an_identity(shape, layers):
    h = HandGraph(shape)
    t = h.transpose(h.qdq("input"), [0, 3, 1, 2], "layers.0.blocks.0.norm1")
    r = h.node("Reshape", [t, h.const(np.array([1, 32, shape[1], shape[2]], np.int64))], "layers.0.blocks.0/Reshape")
    w = h.weight(32, 32)
    y = h.node("Conv", [r, w, h.const(np.zeros(32, np.float32))], "layers.0.blocks.0.modulation.h/Conv",
               kernel_shape=[1, 1])
    kinds = _kinds(h.model(y))
    assert [k for k in kinds if k[0] == "Shuffle"] == layers and ("Conv", "INT8", "FP16") in kinds  # reshape: free


def test_dq_into_an_op_without_int8_is_a_dequantize_layer():
    h = HandGraph()
    y = h.node("ReduceMean", [h.qdq("input")], "layers.0.blocks.0.modulation/ReduceMean", axes=[2, 3], keepdims=1)
    assert _kinds(h.model(y))[1:4] == [("Quantize", "FP32", "INT8"), ("Dequantize", "INT8", "FP16"),
                                       ("Reduce", "FP16", "FP16")]


def test_adjacent_pointwise_ops_are_one_layer_and_a_split_is_one_slice_per_output():
    h = HandGraph()
    h.node("Split", ["input", h.const(np.array([8, 8, 16], np.int64))], "layers.0.blocks.0.modulation.f/Split",
           outputs=3, axis=1)
    q, ctx, _ = h.nodes[-1].output
    m = h.node("Mul", [q, ctx], "layers.0.blocks.0.modulation/Mul")
    y = h.node("Add", [m, q], "layers.0.blocks.0.modulation/Add")
    kinds = _kinds(h.model(y))
    assert [k[0] for k in kinds] == ["Cast", "Slice", "Slice", "Slice", "PointWise", "Cast"]


@pytest.fixture(scope="module")
def default_qdq(default_model, fmnist_calibration, tmp_path_factory):
    d = tmp_path_factory.mktemp("paper-default")
    fp32 = onnx_from_torch(default_model.model, (1, 32, 32), d / "default.onnx")
    info = qdq_onnx_for_tensorrt(fp32, fmnist_calibration, "focalnet", d / "qdq.onnx", log=lambda s: None)
    return onnx.load(str(d / "qdq.onnx")), info


@pytest.mark.slow
def test_the_embedded_default_on_paper(default_qdq):
    """Every INT8 conv of the plan is one INT8 layer; every other data-path node lands in exactly one layer
    (or is an identity TensorRT omits); the predicted extra layers match the fusion spots."""
    model, info = default_qdq
    g = QDQGraph(model)
    paper = predict_layers(g)
    int8 = [layer for layer in paper.layers if layer.precision == "INT8" and layer.kind == "Conv"]
    assert len(int8) == len(info["int8_nodes"]) == 29  # stem, 3 downsample, 5 blocks × f, h, proj, fc1, fc2
    assert sorted(layer.name.split(" + ")[0] for layer in int8) == sorted(info["int8_nodes"])
    named = [name for layer in paper.layers for name in layer.name.split(" + ")]
    assert len(named) == len(set(named))
    spots = fusion_spots(g)
    shuffles = [layer for layer in paper.layers if layer.kind == "Shuffle" and layer.precision == "INT8"]
    assert {s.node for s in spots if s.rule == "int8-shuffle"} == {layer.name for layer in shuffles}
    lone_q = {layer.name for layer in paper.layers if layer.kind == "Quantize"}
    assert {s.node for s in spots if s.rule == "q-after-float-add"} <= lone_q
    s = paper.summary()
    assert s["int8"] == 29 and s["layers"] == len(paper.layers)
    assert s["reformats"] == sum(s["by_kind"].get(k, 0) for k in ("Shuffle", "Quantize", "Dequantize", "Cast"))
    assert {layer.part for layer in paper.layers if layer.kind == "Normalization"} >= {"stem norm", "norm"}
