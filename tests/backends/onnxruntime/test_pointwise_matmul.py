"""1×1 convs as channels-last MatMuls for ONNX Runtime: the same FP32 outputs, names the plan still finds, and
INT8 MatMuls that ORT runs as MatMulIntegerToFloat, with no quantize/dequantize pair on their outputs."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgefocal.backends.onnxruntime.pointwise_matmul import pointwise_convs_to_matmul
from edgefocal.backends.onnxruntime.quantize import float_model, plan_nodes, quantize
from edgefocal.export import onnx_from_torch
from edgefocal.precision import plan_precision


@pytest.fixture(scope="module")
def exported(tiny_focalnet, tmp_path_factory):
    return onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("pointwise") / "t.onnx")


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _pointwise_convs(model) -> list[str]:
    inits = {t.name: t for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and tuple(inits[n.input[1]].dims[2:]) == (1, 1)]


def test_every_1x1_conv_becomes_a_matmul_with_the_same_outputs_and_name(exported):
    original = onnx.load(str(exported))
    pointwise = _pointwise_convs(original)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(original)

    assert pointwise_convs_to_matmul(rewritten) == len(pointwise) > 0
    onnx.checker.check_model(rewritten)
    assert _pointwise_convs(rewritten) == []
    assert sorted(n.name for n in rewritten.graph.node if n.op_type == "MatMul") == sorted(pointwise)
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_run(rewritten, x), _run(original, x), atol=1e-5)
    # the depthwise focal convs and the strided stem/downsample convs are no matrix product per pixel
    assert {n.name for n in rewritten.graph.node if n.op_type == "Conv"} == \
        {n.name for n in original.graph.node if n.op_type == "Conv"} - set(pointwise)


def test_the_plan_finds_its_parts_in_the_rewritten_graph(exported):
    """f is split per part, then each part is a MatMul: `<f conv>/split<i>` nodes compute the plan's f;
    the rewrites' transposes and bias adds belong to no part."""
    plan = plan_precision(onnx.load(str(exported)))
    rewritten = float_model(exported)
    int8 = plan_nodes(rewritten, plan, int8=True)
    kinds = collections.Counter(n.op_type for n in rewritten.graph.node if n.name in int8)
    assert set(kinds) == {"MatMul", "Conv"}  # 1×1 convs, and the strided stem and downsample convs
    f_parts = [n for n in int8 if "modulation.f/" in n]
    assert f_parts and all("/split" in n for n in f_parts)
    assert len(f_parts) == 3 * sum(1 for n in plan.nodes(int8=True) if "modulation.f/" in n)  # q, ctx, gates


def test_onnx_runtime_runs_the_int8_matmuls_with_float_outputs(exported, tmp_path):
    plan = plan_precision(onnx.load(str(exported)))
    rewritten = float_model(exported)
    int8 = quantize(rewritten, plan, np.random.default_rng(0).random((4, 1, 32, 32), dtype=np.float32))
    producer = {o: n for n in int8.graph.node for o in n.output}
    quantized_outputs = [n.input[0] for n in int8.graph.node if n.op_type == "QuantizeLinear"]
    assert not [t for t in quantized_outputs if t in producer and producer[t].op_type == "MatMul"]

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(int8.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    kinds = collections.Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)
    int8_matmuls = sum(1 for n in rewritten.graph.node if n.op_type == "MatMul" and n.name in plan_nodes(rewritten, plan, True))
    assert kinds["MatMulIntegerToFloat"] == int8_matmuls > 0 and kinds["MatMul"] == 0
