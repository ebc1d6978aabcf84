"""The one precision policy: every preset decides by FocalNet role, float_modules override by module path,
and no backend module decides precision on its own."""
from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest

from edgefocal.errors import BadInput
from edgefocal.export import onnx_from_torch
from edgefocal.precision.policy import PRESETS, ROLES, WEIGHTED_ROLES, get_preset, plan_precision

PACKAGE = Path(__file__).resolve().parents[2] / "edgefocal"


@pytest.fixture(scope="module")
def tiny_graph(tiny_focalnet, tmp_path_factory):
    return onnx.load(str(onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("pol") / "t.onnx")))


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


def test_precision_is_decided_in_one_module():
    """No module but policy.py names the float op types or roles to choose precision (issue: three copies
    of the policy disagreed)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "policy.py":
            continue
        text = path.read_text()
        if re.search(r"""["'](GroupConvolution|Multiply)["']""", text) or re.search(r"types=\[", text):
            offenders.append(str(path.relative_to(PACKAGE)))
        if re.search(r"int8_roles\s*=|frozenset\(\{\s*\"stem\"", text):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []
    assert set(WEIGHTED_ROLES) <= set(ROLES)
