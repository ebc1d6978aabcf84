"""The ops between ONNX Runtime's channels-last MatMuls kept channels-last: the same FP32 outputs, the names the
plan and the profiles read, and fewer transposes in the graph ORT runs, none left inside the modulation's gated
sum (in the INT8 graph too)."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgefocal.backends.conv_split import split_convs
from edgefocal.backends.onnxruntime.channels_last import ops_channels_last
from edgefocal.backends.onnxruntime.fusions import fuse_gelu
from edgefocal.backends.onnxruntime.pointwise_matmul import pointwise_convs_to_matmul
from edgefocal.backends.onnxruntime.quantize import quantize
from edgefocal.export import onnx_from_torch
from edgefocal.precision import plan_precision


@pytest.fixture(scope="module")
def exported(tiny_focalnet, tmp_path_factory):
    return onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("channels_last") / "t.onnx")


def _matmul_graph(exported) -> onnx.ModelProto:
    """The graph before this rewrite: f split, 1×1 convs as channels-last MatMuls."""
    model = onnx.load(str(exported))
    split_convs(model)
    pointwise_convs_to_matmul(model)
    return model


def _session(model: onnx.ModelProto, optimized=None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    if optimized:
        opts.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _optimized_kinds(model: onnx.ModelProto, path) -> collections.Counter:
    _session(model, path)
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_same_outputs_and_every_computing_node_keeps_its_name(exported):
    before = _matmul_graph(exported)
    after = _matmul_graph(exported)
    assert ops_channels_last(after) > 0
    onnx.checker.check_model(after)
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_session(after).run(None, {"input": x})[0], _session(before).run(None, {"input": x})[0],
                               atol=1e-5)
    computing = {n.name for n in before.graph.node if n.op_type != "Transpose"}
    assert computing <= {n.name for n in after.graph.node}
    # the gated sums (and their slices of the gates) now read channels-last tensors
    twins = [n for n in after.graph.node if n.name.endswith("modulation/Add_1")]
    assert twins and all(n.output[0].endswith("/nhwc") for n in twins)


def test_onnx_runtime_runs_fewer_transposes_and_none_before_h(exported, tmp_path):
    before, after = _matmul_graph(exported), _matmul_graph(exported)
    ops_channels_last(after)
    kinds_before = _optimized_kinds(before, tmp_path / "before.onnx")
    kinds_after = _optimized_kinds(after, tmp_path / "after.onnx")
    assert kinds_after["Transpose"] < kinds_before["Transpose"]

    plan = plan_precision(onnx.load(str(exported)))
    calibration = np.random.default_rng(0).random((4, 1, 32, 32), dtype=np.float32)
    int8 = fuse_gelu(quantize(after, plan, calibration))  # quantize() reads a graph as float_model makes it
    _session(int8, tmp_path / "int8.onnx")
    optimized = onnx.load(str(tmp_path / "int8.onnx")).graph.node
    producer = {o: n for n in optimized for o in n.output}

    def upstream_kinds(node, depth=2) -> set[str]:
        """The op types of the nodes feeding `node`, `depth` steps back."""
        feeding = [producer[i] for i in node.input if i in producer]
        return {f.op_type for f in feeding} | (set().union(*(upstream_kinds(f, depth - 1) for f in feeding))
                                               if depth > 1 and feeding else set())

    h = [n for n in optimized if n.name.endswith("modulation.h/Conv")]
    assert h and all(n.op_type == "MatMulIntegerToFloat" and "Transpose" not in upstream_kinds(n) for n in h)
