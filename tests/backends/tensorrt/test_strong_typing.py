"""The ONNX a strongly typed TensorRT network parses: which TensorRT versions and precisions get one, the
FP16 conversion that keeps every DequantizeLinear → Conv pair fusable, and the conformance rule that
guards it (a Cast between DequantizeLinear and its Conv). test_tensorrt_engine checks the rule runs on
exactly the converted file. No TensorRT needed."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgefocal.errors import BadInput
from edgefocal.export import onnx_from_torch
from edgefocal.backends.tensorrt.conformance import assert_tensorrt_qdq, check_tensorrt_qdq
from qdq_helpers import qdq_onnx_for_tensorrt
from edgefocal.backends.tensorrt.strong_typing import TypingPlan, fp16_onnx_for_strong_typing, typing_plan

pytest.importorskip("onnx_graphsurgeon", reason="the FP16 conversion needs it: pip install 'edgefocal[tensorrt]'")


@pytest.fixture(scope="module")
def tiny_paths(tiny_focalnet, fmnist_calibration, tmp_path_factory):
    d = tmp_path_factory.mktemp("strong")
    fp32 = onnx_from_torch(tiny_focalnet, (1, 32, 32), d / "tiny.onnx")
    qdq = d / "tiny_qdq.onnx"
    qdq_onnx_for_tensorrt(fp32, fmnist_calibration[:32], "focalnet", qdq, log=lambda s: None)
    return fp32, qdq


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("version,precision,want", [
    ("11.4.0", "int8", TypingPlan(strongly_typed=True, fp16_onnx=True)),
    ("10.3.0.30", "int8", TypingPlan(strongly_typed=True, fp16_onnx=True)),
    ("10.13.0", "fp16", TypingPlan(strongly_typed=True, fp16_onnx=True)),
    ("10.3.0", "fp32", TypingPlan(strongly_typed=True, fp16_onnx=False)),
    ("8.6.2", "int8", TypingPlan(strongly_typed=False, fp16_onnx=False, fp16_flag=True, int8_flag=True)),
    ("8.5.2", "fp16", TypingPlan(strongly_typed=False, fp16_onnx=False, fp16_flag=True)),
])
def test_typing_plan_per_version(version, precision, want):
    assert typing_plan(version, precision) == want


def test_typing_plan_refuses_unknown_version_and_precision():
    with pytest.raises(BadInput, match="cannot read the TensorRT version 'unknown'"):
        typing_plan("unknown", "int8")
    with pytest.raises(BadInput, match="unknown TensorRT precision 'int4'"):
        typing_plan("10.3.0", "int4")


def test_fp16_qdq_conversion_keeps_dq_next_to_conv(tiny_paths, fmnist_calibration, tmp_path):
    _, qdq = tiny_paths
    out = fp16_onnx_for_strong_typing(qdq, tmp_path / "m.fp16.onnx", log=lambda s: None)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)  # includes graph order: parsers read nodes in order
    assert {v.rule for v in check_tensorrt_qdq(model)} <= {"residual-add"}  # no errors; the residual stream is float
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    producer = _producers(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    fed_by_dq = [n for n in convs if producer.get(n.input[1]) is not None
                 and producer[n.input[1]].op_type == "DequantizeLinear"]
    assert fed_by_dq and not any(n.op_type == "Cast" and producer.get(n.input[0]) is not None
                                 and producer[n.input[0]].op_type == "DequantizeLinear" for n in model.graph.node)
    inits = {i.name: i for i in model.graph.initializer}
    scale = inits[producer[fed_by_dq[0].input[1]].input[1]]
    assert scale.data_type == onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # callers feed FP32
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = fmnist_calibration[:16]
    want, got = _run(qdq, x), _run(out, x)
    assert np.abs(got - want).max() < 0.1 and (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_fp16_conversion_of_plain_fp32_graph(tiny_paths, tmp_path):
    fp32, _ = tiny_paths
    out = fp16_onnx_for_strong_typing(fp32, tmp_path / "m.fp16.onnx", log=lambda s: None)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_cast_inserted_between_dq_and_conv_is_flagged(tiny_paths):
    model = onnx.load(str(tiny_paths[1]))
    g = model.graph
    producer = _producers(model)
    conv = next(n for n in g.node if n.op_type == "Conv" and producer.get(n.input[1]) is not None
                and producer[n.input[1]].op_type == "DequantizeLinear")
    g.node.append(onnx.helper.make_node("Cast", [conv.input[1]], ["w_cast"], name="Cast_between",
                                        to=onnx.TensorProto.FLOAT))
    conv.input[1] = "w_cast"
    errors = [v for v in check_tensorrt_qdq(model) if v.severity == "error"]
    cast = [v for v in errors if v.rule == "cast-after-dq"]
    assert [v.node for v in cast] == ["Cast_between"] and conv.name in str(cast[0])
    # the conv now reads a quantized activation and a float weight: also reported as such
    assert {(v.rule, v.node) for v in errors} == {("cast-after-dq", "Cast_between"), ("all-inputs", conv.name)}
    with pytest.raises(BadInput, match="cast-after-dq"):
        assert_tensorrt_qdq(model)
