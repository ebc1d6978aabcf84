"""The conv split for OpenVINO: same outputs, no Split after a conv, names that keep the module."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from edgefocal.backends.conv_split import split_convs
from edgefocal.export import onnx_from_torch
from edgefocal.naming import module_of


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_every_modulation_f_is_split_into_one_conv_per_part_with_the_same_outputs(tiny_focalnet, tmp_path):
    from timm.models.focalnet import FocalModulation

    original = onnx.load(str(onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path / "t.onnx")))
    splits = [n for n in original.graph.node if n.op_type == "Split"]
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(original)

    assert split_convs(rewritten) == len(splits) == sum(isinstance(m, FocalModulation) for m in tiny_focalnet.modules())
    onnx.checker.check_model(rewritten)
    assert "Split" not in [n.op_type for n in rewritten.graph.node]
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_run(rewritten, x), _run(original, x), atol=1e-5)
    before = {n.name for n in original.graph.node}
    new = [n for n in rewritten.graph.node if n.name not in before]
    assert len(new) == sum(len(s.output) for s in splits)
    # each part sits under the name of the conv it came from: the plan's ignored scopes still find it
    assert {module_of(n.name) for n in new} == {module_of(s.name) for s in splits} == {
        name for name, m in tiny_focalnet.named_modules() if name.endswith("modulation.f")}


def test_a_split_over_another_axis_or_with_other_readers_is_left_alone(tiny_focalnet, tmp_path):
    from onnx import helper

    model = onnx.load(str(onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path / "t.onnx")))
    first, second = [n for n in model.graph.node if n.op_type == "Split"][:2]
    conv_out = first.input[0]
    model.graph.node.append(helper.make_node("Identity", [conv_out], ["f_copy"], "reader"))
    model.graph.output.append(helper.make_tensor_value_info("f_copy", onnx.TensorProto.FLOAT, None))
    next(a for a in second.attribute if a.name == "axis").i = 2
    total = sum(n.op_type == "Split" for n in model.graph.node)

    assert split_convs(model) == total - 2
    assert sorted(n.name for n in model.graph.node if n.op_type == "Split") == sorted([first.name, second.name])


def test_a_grouped_conv_is_not_split(tiny_focalnet, tmp_path):
    from onnx import helper

    model = onnx.load(str(onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path / "t.onnx")))
    first = next(n for n in model.graph.node if n.op_type == "Split")
    conv = next(n for n in model.graph.node if first.input[0] in n.output)
    for a in [a for a in conv.attribute if a.name == "group"]:
        conv.attribute.remove(a)
    conv.attribute.append(helper.make_attribute("group", 2))
    total = sum(n.op_type == "Split" for n in model.graph.node)

    assert split_convs(model) == total - 1
