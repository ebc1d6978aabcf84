"""The one precision policy: every preset decides by FocalNet role, float_modules override by module path,
and a backend quantizes what the plan says and nothing else."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefocal.errors import BadInput
from edgefocal.naming import made_from
from edgefocal.export import onnx_from_torch
from edgefocal.plan import PRESETS, ROLES, WEIGHTED_ROLES, get_preset
from edgefocal.precision.policy import plan_precision


@pytest.fixture(scope="module")
def tiny_path(tiny_focalnet, tmp_path_factory):
    return onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("pol") / "t.onnx")


@pytest.fixture(scope="module")
def tiny_graph(tiny_path):
    return onnx.load(str(tiny_path))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_each_part_follows_its_role(preset, tiny_graph):
    plan = plan_precision(tiny_graph, preset)
    assert {p.role for p in plan.parts} <= set(ROLES)
    for part in plan.parts:
        assert part.int8 == (part.role in PRESETS[preset].int8_roles), part
        assert part.why == f"preset {preset}"
    assert set(plan.nodes(True)).isdisjoint(plan.nodes(False))


def test_focalnet_preset(tiny_graph):
    plan = plan_precision(tiny_graph, "focalnet")
    assert plan.role_counts(True) == {"downsample": 3, "f": 4, "fc1": 4, "fc2": 4, "h": 4, "proj": 4, "stem": 1}
    assert set(plan.role_counts(False)) == {"focal", "gates", "modulator", "context", "act", "head", "pool", "norm",
                                            "residual"}
    assert plan.float_modules() == [f"layers.{s}.blocks.0.modulation.focal_layers.{lv}.0"
                                    for s in range(4) for lv in (0, 1)] + ["head.fc"]


def test_float_modules_override_the_preset(tiny_graph):
    plan = plan_precision(tiny_graph, "focalnet", [r"^layers\.3\..*mlp\.fc2$", r"^stem"])
    forced = {p.module for p in plan.parts if p.why == "quantize.float_modules"}
    # a regex matches the stem LayerNorm too, but the preset keeps it float already
    assert forced == {"layers.3.blocks.0.mlp.fc2", "stem.proj"}
    assert plan.module_is_int8("layers.3.blocks.0.mlp.fc2") is False
    assert plan.module_is_int8("layers.2.blocks.0.mlp.fc2") is True
    assert "layers.3.blocks.0.mlp.fc2" in plan.summary()["float_modules"]


def test_unknown_preset_and_foreign_graph(tmp_path):
    with pytest.raises(BadInput, match="did you mean 'focalnet'"):
        get_preset("focalnt")
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                               [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    with pytest.raises(BadInput, match="no FocalNet modules"):
        plan_precision(onnx.helper.make_model(g))


@pytest.mark.parametrize("preset,float_modules", [("focalnet", None), ("gemm-only", None),
                                                   ("focalnet", [r"^layers\.1\.", r"^stem"])])
def test_a_backend_quantizes_exactly_the_plans_int8_parts(preset, float_modules, tiny_path, tiny_graph):
    """ONNX Runtime's quantizer, left to the plan, gives Q/DQ inputs to the plan's INT8 weighted nodes only
    (in the graph rewritten for ORT, a node the plan names may be several: f's split parts)."""
    from edgefocal.backends.onnxruntime.quantize import float_model, quantize

    plan = plan_precision(tiny_graph, preset, float_modules)
    calibration = np.random.default_rng(0).random((4, 1, 32, 32), dtype=np.float32)
    q = quantize(float_model(tiny_path), plan, calibration)
    dequantized = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    weighted = set(plan.nodes(True, WEIGHTED_ROLES) + plan.nodes(False, WEIGHTED_ROLES))
    int8 = {p for p in weighted for n in q.graph.node if made_from(n.name, [p]) and n.input[0] in dequantized}
    assert int8 == set(plan.nodes(int8=True, roles_=WEIGHTED_ROLES)) != set()
    assert set(WEIGHTED_ROLES) <= set(ROLES)
