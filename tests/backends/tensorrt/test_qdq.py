"""Q/DQ placement for TensorRT on real exported FocalNets: which ops are INT8 under each preset, where
the fusion Q/DQ pairs go, and (slow) the accuracy of the default preset on the trained default."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefocal.errors import BadInput
from edgefocal.export import onnx_from_torch
from edgefocal.plan import PRESETS, WEIGHTED_ROLES, get_preset
from edgefocal.precision.policy import plan_precision
from qdq_helpers import qdq_onnx_for_tensorrt


@pytest.fixture(scope="module")
def tiny_onnx(tiny_focalnet, tmp_path_factory):
    return onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("qdq") / "tiny.onnx")


def _quantized_inputs(model) -> dict[str, set[int]]:
    """node name → indices of inputs fed (directly or through a Transpose) by a DequantizeLinear."""
    producer = {o: n for n in model.graph.node for o in n.output}

    def from_dq(t):
        p = producer.get(t)
        while p is not None and p.op_type == "Transpose":
            p = producer.get(p.input[0])
        return p is not None and p.op_type == "DequantizeLinear"

    return {n.name: {i for i, t in enumerate(n.input) if from_dq(t)} for n in model.graph.node}


def _roles(model):
    """node name → role of every weighted node."""
    from edgefocal.naming import roles

    return {name: role for name, (_, role) in roles(model).items() if role in WEIGHTED_ROLES}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_placement(preset, tiny_onnx, fmnist_calibration, tmp_path):
    out = tmp_path / "q.onnx"
    stats = qdq_onnx_for_tensorrt(tiny_onnx, fmnist_calibration[:32], preset, out, log=lambda s: None)
    model = onnx.load(str(out))
    roles = _roles(onnx.load(str(tiny_onnx)))
    q_in = _quantized_inputs(model)
    int8 = {name for name, role in roles.items() if role in PRESETS[preset].int8_roles}
    for name, role in roles.items():
        # INT8 ops have every data input quantized, float ops none
        assert q_in[name] == ({0, 1} if name in int8 else set()), (preset, name, role)
    assert set(stats["int8_nodes"]) == int8
    # gate products, the global-context mean and GELU stay float: no Q/DQ on their inputs
    for n in model.graph.node:
        if n.op_type in ("Mul", "ReduceMean", "Erf", "Div"):
            assert q_in[n.name] == set(), (preset, n.name)


def test_focalnet_preset_keeps_depthwise_and_head_float(tiny_onnx):
    plan = plan_precision(onnx.load(str(tiny_onnx)), "focalnet")
    weighted = lambda int8: {p.role for p in plan.parts if p.int8 == int8 and p.role in WEIGHTED_ROLES}  # noqa: E731
    assert weighted(True) == {"stem", "downsample", "f", "h", "proj", "fc1", "fc2"}
    assert weighted(False) == {"focal", "head"}
    assert get_preset("gemm-only").int8_roles.isdisjoint({"stem", "downsample", "focal"})


def test_fusion_qdq_at_layernorm_and_residual(tiny_onnx, fmnist_calibration, tmp_path):
    out = tmp_path / "q.onnx"
    stats = qdq_onnx_for_tensorrt(tiny_onnx, fmnist_calibration[:32], "focalnet-fused", out, log=lambda s: None)
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}
    # tiny FocalNet: 1 stem + 3 downsample convs feed Transpose → LayerNorm; 4 blocks × 2 residual Adds
    assert stats["fusion_qdq"] == {"layernorm": 4, "residual": 8}
    plain = qdq_onnx_for_tensorrt(tiny_onnx, fmnist_calibration[:32], "focalnet", tmp_path / "p.onnx", log=lambda s: None)
    assert plain["fusion_qdq"] == {"layernorm": 0, "residual": 0}  # the focalnet policy keeps the residual stream float
    for n in model.graph.node:
        if n.op_type == "LayerNormalization" and producer[n.input[0]].op_type == "DequantizeLinear":
            t = producer[producer[producer[n.input[0]].input[0]].input[0]]
            assert t.op_type == "Transpose" and producer[t.input[0]].op_type == "Conv"
    assert stats["conformance_warnings"] == []


def test_bad_preset_and_empty_calibration(tiny_onnx, tmp_path):
    with pytest.raises(BadInput, match="did you mean 'focalnet'"):
        get_preset("focalnt")
    with pytest.raises(BadInput, match="calibration"):
        qdq_onnx_for_tensorrt(tiny_onnx, np.zeros((0, 1, 32, 32), np.float32), "focalnet", tmp_path / "q.onnx")


@pytest.mark.slow
def test_default_preset_accuracy_on_trained_default(default_model, fmnist_calibration, fmnist_eval, tmp_path):
    """ORT executing the Q/DQ graph agrees with FP32 on ≥99 % of 2000 Fashion-MNIST test images."""
    import onnxruntime as ort

    from edgefocal.metrics import compare

    fp32 = onnx_from_torch(default_model.model, (1, 32, 32), tmp_path / "default.onnx")
    out = tmp_path / "default_qdq.onnx"
    qdq_onnx_for_tensorrt(fp32, fmnist_calibration, "focalnet", out, log=lambda s: None)
    images, labels = fmnist_eval

    def run(path):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.concatenate([sess.run(None, {"input": images[i:i + 500]})[0] for i in range(0, len(images), 500)])

    c = compare(run(out), run(fp32), labels)
    assert c["agreement"] >= 0.99
    assert c["top1_drop"] <= 0.5
