"""The TensorRT Q/DQ conformance checker: passes on what edgefocal produces (tiny FocalNet, the embedded
default, focalnet_tiny_srf), and names the node for each deliberately broken rule."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgefocal.errors import BadInput
from edgefocal.export import onnx_from_torch
from edgefocal.backends.tensorrt.conformance import assert_tensorrt_qdq, check_tensorrt_qdq, main
from qdq_helpers import qdq_onnx_for_tensorrt


@pytest.fixture(scope="module")
def tiny_qdq(tiny_focalnet, fmnist_calibration, tmp_path_factory):
    d = tmp_path_factory.mktemp("conf")
    fp32 = onnx_from_torch(tiny_focalnet, (1, 32, 32), d / "tiny.onnx")
    out = d / "tiny_qdq.onnx"
    qdq_onnx_for_tensorrt(fp32, fmnist_calibration[:64], "focalnet", out, log=lambda s: None)
    return onnx.load(str(out))


def _errors(model):
    return [v for v in check_tensorrt_qdq(model) if v.severity == "error"]


def _init(model, name):
    return next(i for i in model.graph.initializer if i.name == name)


def _set(model, name, array):
    _init(model, name).CopyFrom(numpy_helper.from_array(array, name))


def test_produced_qdq_passes(tiny_qdq, tiny_focalnet, fmnist_calibration, tmp_path):
    assert _errors(tiny_qdq) == []
    # the focalnet policy keeps the residual stream float: TensorRT is told it cannot fuse those Adds
    assert {v.rule for v in assert_tensorrt_qdq(tiny_qdq)} == {"residual-add"}
    fp32 = onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path / "tiny.onnx")
    qdq_onnx_for_tensorrt(fp32, fmnist_calibration[:64], "focalnet-fused", tmp_path / "fused.onnx", log=lambda s: None)
    assert assert_tensorrt_qdq(onnx.load(str(tmp_path / "fused.onnx"))) == []  # residual Adds quantized: no warnings


def test_asymmetric_zero_point_names_the_node(tiny_qdq):
    m = copy.deepcopy(tiny_qdq)
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    _set(m, q.input[2], np.array(3, dtype=np.int8))
    errors = _errors(m)
    assert any(v.rule == "symmetric" and v.node == q.name for v in errors)
    with pytest.raises(BadInput, match=q.name):
        assert_tensorrt_qdq(m)


def test_per_tensor_weight_scale_names_the_node(tiny_qdq):
    m = copy.deepcopy(tiny_qdq)
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in
              {i.name for i in m.graph.initializer} and numpy_helper.to_array(_init(m, n.input[1])).size > 1)
    w = numpy_helper.to_array(_init(m, dq.input[0]))
    _set(m, dq.input[1], np.array(0.01, dtype=np.float32))
    _set(m, dq.input[2], np.array(0, dtype=np.int8))
    del dq.attribute[:]
    errors = _errors(m)
    assert w.shape[0] > 1
    assert [v.node for v in errors if v.rule == "per-channel-weights"] == [dq.name]
    with pytest.raises(BadInput, match="per-tensor scale"):
        assert_tensorrt_qdq(m)


def test_uint8_and_half_quantized_conv_name_the_nodes(tiny_qdq):
    m = copy.deepcopy(tiny_qdq)
    g = m.graph
    q = next(n for n in g.node if n.op_type == "QuantizeLinear")
    del q.input[2]  # no zero point: the output type defaults to uint8
    producer = {o: n for n in g.node for o in n.output}
    conv = next(n for n in g.node if n.op_type == "Conv" and n.input[1] in producer
                and producer[n.input[1]].op_type == "DequantizeLinear")
    weight_dq = producer[conv.input[1]]
    w = numpy_helper.to_array(_init(m, weight_dq.input[0])).astype(np.float32)
    g.initializer.append(numpy_helper.from_array(w, "float_weight"))
    conv.input[1] = "float_weight"  # Q/DQ on the activation only
    rules = {(v.rule, v.node) for v in _errors(m)}
    assert ("signed-int8", q.name) in rules
    assert ("all-inputs", conv.name) in rules


def test_weighted_output_and_opset(tiny_qdq):
    m = copy.deepcopy(tiny_qdq)
    g = m.graph
    conv = next(n for n in g.node if n.op_type == "Conv")
    zp = numpy_helper.from_array(np.array(0, dtype=np.int8), "zp0")
    sc = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "sc0")
    g.initializer.extend([zp, sc])
    g.node.append(onnx.helper.make_node("QuantizeLinear", [conv.output[0], "sc0", "zp0"], ["qo"], name="Q_out"))
    g.node.append(onnx.helper.make_node("DequantizeLinear", ["qo", "sc0", "zp0"], ["dqo"], name="DQ_out"))
    m.opset_import[0].version = 16
    rules = {(v.rule, v.node) for v in _errors(m)}
    assert ("weighted-output", "Q_out") in rules
    assert ("opset", "(model)") in rules


def test_plain_fp32_graph_is_not_int8(tmp_path, tiny_focalnet):
    fp32 = onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path / "fp32.onnx")
    assert [v.rule for v in _errors(onnx.load(str(fp32)))] == ["no-qdq"]
    assert main([str(fp32)]) == 1


def test_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        check_tensorrt_qdq(tmp_path / "nope.onnx")


@pytest.mark.slow
def test_embedded_default_qdq_passes(default_model, fmnist_calibration, tmp_path):
    fp32 = onnx_from_torch(default_model.model, (1, 32, 32), tmp_path / "default.onnx")
    out = tmp_path / "default_qdq.onnx"
    qdq_onnx_for_tensorrt(fp32, fmnist_calibration, "focalnet", out, log=lambda s: None)
    assert {v.rule for v in check_tensorrt_qdq(out)} <= {"residual-add"}  # no errors; the residual stream is float


@pytest.mark.slow
def test_focalnet_tiny_srf_qdq_passes(tmp_path):
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("focalnet_tiny_srf", pretrained=False).eval()
    fp32 = onnx_from_torch(model, (3, 224, 224), tmp_path / "srf.onnx")
    cal = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)
    out = tmp_path / "srf_qdq.onnx"
    stats = qdq_onnx_for_tensorrt(fp32, cal, "focalnet", out, log=lambda s: None)
    weighted = {r: n for r, n in stats["int8_roles"].items() if r in ("stem", "downsample", "f", "h", "proj", "fc1", "fc2",
                                                                    "focal", "head")}
    assert weighted == {"downsample": 3, "f": 12, "fc1": 12, "fc2": 12, "h": 12, "proj": 12, "stem": 1}
    assert {v.rule for v in check_tensorrt_qdq(out)} <= {"residual-add"}  # no errors; the residual stream is float
