"""The LayerNorm-as-NormalizeL2 rewrite of the INT8 ov.Model: same outputs, fewer plugin nodes, names that
keep the module, and no quantizer of its own."""
from __future__ import annotations

import numpy as np
import pytest

from edgefocal.backends.openvino import ov_model_from_onnx
from edgefocal.backends.openvino.normalize_l2 import channel_norms_as_normalize_l2
from edgefocal.export import onnx_from_torch
from edgefocal.naming import module_of


@pytest.fixture
def float_model(tiny_focalnet, tmp_path):
    return ov_model_from_onnx(onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path / "t.onnx"))


def _types(model) -> list[str]:
    return [op.get_type_name() for op in model.get_ordered_ops()]


def _compiled(model):
    import openvino as ov

    model = model.clone()
    model.reshape({model.inputs[0]: [3, 1, 32, 32]})
    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})


def test_every_channel_norm_is_rewritten_with_the_same_outputs(float_model, tiny_focalnet):
    from timm.layers import LayerNorm2d

    mvns = {op.get_friendly_name() for op in float_model.get_ordered_ops() if op.get_type_name() == "MVN"}
    rewritten = float_model.clone()

    assert channel_norms_as_normalize_l2(rewritten) == len(mvns) == sum(isinstance(m, LayerNorm2d)
                                                                        for m in tiny_focalnet.modules())
    assert "MVN" not in _types(rewritten) and _types(rewritten).count("NormalizeL2") == len(mvns)
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    before, after = _compiled(float_model)(x)[0], _compiled(rewritten)(x)[0]
    np.testing.assert_allclose(after, before, atol=1e-5 * np.abs(before).max())
    new = {op.get_friendly_name() for op in rewritten.get_ordered_ops()} - {
        op.get_friendly_name() for op in float_model.get_ordered_ops()}
    # every new op sits under the name of the norm it replaces: the plan's ignored scopes still find it
    assert new and all(any(n.startswith(f"{m}/") for m in mvns) for n in new if not n.startswith("Constant"))
    assert {module_of(n) for n in new if not n.startswith("Constant")} == {module_of(m) for m in mvns}


def test_the_plugin_runs_the_norms_in_fewer_nodes(float_model):
    """Why the rewrite exists: OpenVINO's CPU plugin splits an MVN over the channels into four nodes."""
    rewritten = float_model.clone()
    norms = channel_norms_as_normalize_l2(rewritten)

    def executed(model) -> int:
        ops = _compiled(model).get_runtime_model().get_ordered_ops()
        return sum(op.get_rt_info()["layerType"].astype(str) not in ("Const", "Input", "Output") for op in ops)

    assert norms and executed(rewritten) <= executed(float_model) - norms


def test_an_mvn_over_other_axes_is_left_alone():
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 8, 4, 4], np.float32, name="x")
    spatial = ops.mvn(x, ops.constant(np.array([2, 3], np.int64)), True, 1e-5, "inside_sqrt")
    outside = ops.mvn(x, ops.constant(np.array([1], np.int64)), True, 1e-5, "outside_sqrt")
    model = ov.Model([spatial, outside], [x])

    assert channel_norms_as_normalize_l2(model) == 0 and _types(model).count("MVN") == 2


def test_the_int8_ir_quantizes_what_it_did_before(float_model, fmnist_calibration):
    """Applied after NNCF: no FakeQuantize reads a NormalizeL2's input, and the quantizers are those NNCF
    placed on the MVN graph."""
    from edgefocal.backends.openvino.quantize import quantize
    from edgefocal.plan import PrecisionPlan
    from edgefocal.recipe import QuantizeSpec

    int8 = quantize(float_model, PrecisionPlan("all"), fmnist_calibration[:16], QuantizeSpec())
    types = _types(int8)
    norms = [op for op in int8.get_ordered_ops() if op.get_type_name() == "NormalizeL2"]
    assert norms and "MVN" not in types
    assert all(op.input_value(0).get_node().get_type_name() == "Subtract" for op in norms)
    assert types.count("FakeQuantize") == sum(op.get_type_name() == "FakeQuantize"
                                              for op in _nncf_alone(float_model, fmnist_calibration[:16]))


def _nncf_alone(float_model, calibration):
    """The same quantization without the rewrite."""
    import nncf

    from edgefocal.backends.nncf import advanced_parameters, dataset
    from edgefocal.recipe import QuantizeSpec

    spec = QuantizeSpec()
    return nncf.quantize(float_model, dataset(calibration), advanced_parameters=advanced_parameters(spec),
                         subset_size=len(calibration), fast_bias_correction=spec.fast_bias_correction,
                         model_type=nncf.ModelType.TRANSFORMER).get_ordered_ops()
