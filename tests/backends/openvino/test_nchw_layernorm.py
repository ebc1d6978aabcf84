"""The LayerNorm rewrite for NCHW runtimes: same outputs, no transposes, names that keep the module."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from edgefocal.export import onnx_from_torch
from edgefocal.naming import module_of
from edgefocal.backends.openvino.nchw_layernorm import layernorm_on_channels


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_every_focalnet_norm_is_rewritten_with_the_same_outputs(tiny_focalnet, tmp_path):
    from timm.layers import LayerNorm2d

    original = onnx.load(str(onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path / "t.onnx")))
    norms = {n.name for n in original.graph.node if n.op_type == "LayerNormalization"}
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(original)

    assert layernorm_on_channels(rewritten) == len(norms) == sum(isinstance(m, LayerNorm2d) for m in tiny_focalnet.modules())
    onnx.checker.check_model(rewritten)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "LayerNormalization" not in ops and "Transpose" not in ops
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_run(rewritten, x), _run(original, x), atol=1e-5)
    new = [n for n in rewritten.graph.node if n.name not in {m.name for m in original.graph.node}]
    # every new node sits under the name of the norm it replaces: the plan's ignored scopes still find it
    assert new and all(any(n.name.startswith(f"{norm}/") for norm in norms) for n in new)
    assert {module_of(n.name) for n in new} == {module_of(norm) for norm in norms}


def test_a_norm_over_nhwc_read_elsewhere_is_left_alone(tiny_focalnet, tmp_path):
    """When something else reads the NHWC tensor, removing the transpose would change that reader."""
    from onnx import helper

    model = onnx.load(str(onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path / "t.onnx")))
    first = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
    nhwc = first.input[0]
    model.graph.node.append(helper.make_node("Identity", [nhwc], ["nhwc_copy"], "reader"))
    model.graph.output.append(helper.make_tensor_value_info("nhwc_copy", onnx.TensorProto.FLOAT, None))
    total = sum(n.op_type == "LayerNormalization" for n in model.graph.node)

    assert layernorm_on_channels(model) == total - 1
    assert [n.name for n in model.graph.node if n.op_type == "LayerNormalization"] == [first.name]
