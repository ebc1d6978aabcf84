"""Core ML's translation of the precision plan: the plan's float modules get no compression and no
activation Q/DQ, matched to the program's ops through their weight constants."""
from __future__ import annotations

from collections import Counter

import onnx
import pytest

pytest.importorskip("coremltools")

from edgefocal.export import onnx_from_torch  # noqa: E402
from edgefocal.precision import plan_precision  # noqa: E402
from edgefocal.backends.coreml.quantize import _main_ops, float_op_names, insert_activation_qdq  # noqa: E402
from edgefocal.recipe import CoreMLSpec  # noqa: E402
from edgefocal.backends.coreml import coreml_from_torch  # noqa: E402


@pytest.fixture(scope="module")
def program_and_plan(tiny_focalnet, tmp_path_factory):
    from timm.data import resolve_model_data_config

    graph = onnx.load(str(onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("cm") / "t.onnx")))
    ml = coreml_from_torch(tiny_focalnet, resolve_model_data_config(tiny_focalnet), [str(i) for i in range(10)],
                           CoreMLSpec(), "iOS17", "fp16")
    return ml, graph, [n for n, _ in tiny_focalnet.named_modules()]


def _op_types(ml, names):
    ops = {op.name: op.op_type for op in _main_ops(ml)}
    return Counter(ops[n] for n in names if n in ops)


def test_focalnet_plan_keeps_depthwise_head_and_adds_float(program_and_plan):
    ml, graph, modules = program_and_plan
    names = float_op_names(ml, plan_precision(graph, "focalnet"), modules)
    # tiny FocalNet: 4 blocks × 2 focal levels of depthwise convs, the head, and every add: 4 × 2 summing gate
    # products, 4 × 2 residual (the focalnet policy keeps the residual stream float)
    assert _op_types(ml, names) == {"conv": 8, "linear": 1, "add": 16, "const": 9}  # consts: their weights
    fused = float_op_names(ml, plan_precision(graph, "focalnet-fused"), modules)
    assert _op_types(ml, fused) == {"conv": 8, "linear": 1, "add": 8, "const": 9}  # residual adds INT8 there


def test_all_preset_and_float_modules(program_and_plan):
    ml, graph, modules = program_and_plan
    assert float_op_names(ml, plan_precision(graph, "all"), modules) == []
    names = float_op_names(ml, plan_precision(graph, "all", [r"mlp\.fc1$"]), modules)
    assert _op_types(ml, names) == {"conv": 4, "const": 4}


def test_float_ops_get_no_activation_qdq(program_and_plan):
    ml, graph, modules = program_and_plan
    skip = {n: None for n in float_op_names(ml, plan_precision(graph, "focalnet"), modules)}
    stats = {op.outputs[0].name: {"rmin": -4.0, "rmax": 4.0} for op in _main_ops(ml) if op.outputs}
    q = insert_activation_qdq(ml, stats, skip=skip)
    for op in _main_ops(q):
        if op.op_type == "conv" and op.inputs["groups"].val > 1:  # depthwise: float per the plan
            assert op.inputs["x"].op.op_type != "dequantize", op.name
    assert any(op.op_type == "quantize" for op in _main_ops(q))
