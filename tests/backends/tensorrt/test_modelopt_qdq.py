"""ModelOpt as the second TensorRT Q/DQ producer (`tensorrt.qdq_producer: modelopt`).

Without ModelOpt: the plan's translation into ModelOpt's `nodes_to_exclude`, the placement check, and the
one-line install error (also through the CLI, before any heavy work). With ModelOpt (`edgefocal[modelopt]`,
installed by .ci/run): a real quantization of the tiny FocalNet and a real build of the embedded default."""
from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import onnx
import pytest

from edgefocal.errors import MissingDependency
from edgefocal.export import onnx_from_torch
from edgefocal.backends.tensorrt import modelopt_qdq
from edgefocal.plan import WEIGHTED_ROLES
from edgefocal.precision.policy import plan_precision

# installed means usable: a ModelOpt that is found but fails to import fails these tests instead of skipping
needs_modelopt = pytest.mark.skipif(importlib.util.find_spec("modelopt") is None,
                                    reason="ModelOpt is not installed: pip install 'edgefocal[modelopt]'")


@pytest.fixture(scope="module")
def tiny(tiny_focalnet, tmp_path_factory):
    path = onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("mo") / "tiny.onnx")
    model = onnx.load(str(path))
    return path, model, plan_precision(model, "focalnet")


def test_excluded_nodes_are_every_non_int8_node_matched_exactly(tiny):
    _, model, plan = tiny
    patterns = modelopt_qdq.excluded_nodes(model, plan)
    names = [n.name for n in model.graph.node]
    # ModelOpt applies re.match: each pattern must match its own node and no other
    excluded = {name for name in names if any(re.match(p, name) for p in patterns)}
    assert excluded == set(names) - set(plan.nodes(int8=True))
    add = next(n for n in names if n.endswith("modulation/Add"))  # the role-less ctx_all accumulation
    assert add in excluded and f"{add}_1" in names and sum(bool(re.match(p, add)) for p in patterns) == 1
    assert not excluded & set(plan.nodes(int8=True, roles_=WEIGHTED_ROLES))


def _with_qdq_before(model, consumer_name: str):
    """A copy of `model` with a hand-made Q/DQ pair on the first input of one node."""
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = next(n for n in m.graph.node if n.name == consumer_name)
    t = node.input[0]
    m.graph.initializer.extend([numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                                numpy_helper.from_array(np.array(0, np.int8), "z")])
    idx = list(m.graph.node).index(node)
    m.graph.node.insert(idx, helper.make_node("DequantizeLinear", ["tq", "s", "z"], ["tdq"], name="hand_DQ"))
    m.graph.node.insert(idx, helper.make_node("QuantizeLinear", [t, "s", "z"], ["tq"], name="hand_Q"))
    node.input[0] = "tdq"
    return m


def test_outside_plan_flags_a_quantized_float_node_only(tiny):
    _, model, plan = tiny
    assert modelopt_qdq.outside_plan(model, plan) == []
    focal = plan.nodes(int8=False, roles_=("focal",))[0]  # a depthwise focal conv: float under 'focalnet'
    fc1 = plan.nodes(int8=True, roles_=("fc1",))[0]
    assert modelopt_qdq.outside_plan(_with_qdq_before(model, focal), plan) == [focal]
    assert modelopt_qdq.outside_plan(_with_qdq_before(model, fc1), plan) == []


def test_high_precision_dtype_per_runtime():
    assert modelopt_qdq.high_precision_dtype("onnxruntime") == "fp32"
    assert modelopt_qdq.high_precision_dtype("tensorrt") == "fp16"


def _hide_modelopt(monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "modelopt" or m.startswith("modelopt.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "modelopt", None)  # `import modelopt...` raises ImportError


def test_missing_modelopt_is_one_error_with_the_install_command(tiny, monkeypatch):
    _hide_modelopt(monkeypatch)
    path, _, plan = tiny
    with pytest.raises(MissingDependency, match="needs NVIDIA ModelOpt's ONNX PTQ") as e:
        modelopt_qdq.quantize(path, plan, np.zeros((2, 1, 32, 32), np.float32))
    assert e.value.hint == "pip install 'edgefocal[modelopt]'" and "\n" not in str(e.value)


def test_cli_refuses_modelopt_producer_before_loading_anything(tmp_path, monkeypatch, capsys):
    from edgefocal import models
    from edgefocal.cli import main

    _hide_modelopt(monkeypatch)
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("tensorrt: {qdq_producer: modelopt}\n")
    assert main(["build", "--recipe", str(recipe), "--target", "tensorrt", "--precision", "int8",
                 "--output", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: tensorrt.qdq_producer modelopt needs NVIDIA ModelOpt")
    assert err[1] == "hint: pip install 'edgefocal[modelopt]'" and len(err) == 2
    assert not (tmp_path / "o").exists()


@needs_modelopt
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_modelopt_qdq_is_conformant_and_follows_the_plan(tiny, fmnist_calibration, dtype):
    """Both float types stay conformant; FP16 also after the engine path's own FP16 conversion."""
    from edgefocal.backends.tensorrt.conformance import check_tensorrt_qdq
    from edgefocal.backends.tensorrt.strong_typing import fp16_model

    path, _, plan = tiny
    q, info = modelopt_qdq.quantize(path, plan, fmnist_calibration[:32], log=lambda s: None, dtype=dtype)
    assert [v for v in check_tensorrt_qdq(q) if v.severity == "error"] == []
    assert modelopt_qdq.outside_plan(q, plan) == []
    # every INT8 weighted part of the plan got Q/DQ, no float one did
    quantized = info["quantized_parts"]
    assert {r: quantized.get(r, 0) for r in plan.role_counts(True)} == plan.role_counts(True)
    assert not set(quantized) & set(plan.role_counts(False))
    assert info["qdq_producer"] == "modelopt" and info["high_precision_dtype"] == dtype and info["qdq_nodes"] > 0
    assert [v for v in check_tensorrt_qdq(fp16_model(q)) if v.severity == "error"] == []


@needs_modelopt
def test_build_with_modelopt_producer_writes_a_conformant_qdq_onnx_and_a_row(tmp_path):
    from edgefocal.cli import main
    from edgefocal.backends.tensorrt.conformance import check_tensorrt_qdq

    recipe = tmp_path / "mo.yaml"
    recipe.write_text("calibration: {source: fashion-mnist, split: train, size: 64}\n"
                      "eval: {source: fashion-mnist, split: test, size: 300}\n"
                      "bench: {batch_sizes: [1], warmup: 1, iterations: 3, rounds: 1, cold_start_runs: 1}\n"
                      # fewer held-out images than the default's 4000, and a target that makes the search keep
                      # parts float, so that ModelOpt quantizes again with them excluded
                      "quantize: {target_agreement: 0.9999, selection_size: 2000, validation_size: 300, "
                      "search_seconds: 15}\n"
                      "tensorrt: {qdq_producer: modelopt}\n")
    out = tmp_path / "out"
    assert main(["build", "--recipe", str(recipe), "--target", "tensorrt", "--precision", "int8",
                 "--output", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["precision_plan"]["mixed_precision"]["chosen"]  # parts the search kept float
    row = {r["label"]: r for r in report["rows"]}["tensorrt int8 (ModelOpt Q/DQ ONNX via ONNX Runtime)"]
    assert row["qdq_producer"] == "modelopt" and row["conformance"] == "pass" and row["qdq_nodes"] > 0
    assert row["calibration_method"] == "max" and row["agreement"] > 0.95
    assert check_tensorrt_qdq(out / row["path"], warnings=False) == []


@needs_modelopt
def test_onnxruntime_quantizes_after_modelopt_in_the_same_process(tiny, fmnist_calibration, tmp_path):
    """ModelOpt patches ONNX Runtime's calibrator and quantizer classes process-wide; edgefocal undoes that, so
    a build with ModelOpt's Q/DQ and the onnxruntime target (quantize_static) works in one process."""
    from onnxruntime.quantization import CalibrationDataReader, calibrate, quantize_static

    path, _, plan = tiny
    before = calibrate.create_calibrator, calibrate.MinMaxCalibrater.compute_data
    modelopt_qdq.quantize(path, plan, fmnist_calibration[:8], log=lambda *_: None)
    assert (calibrate.create_calibrator, calibrate.MinMaxCalibrater.compute_data) == before

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": fmnist_calibration[i:i + 1]} for i in range(4)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(path), str(tmp_path / "u8s8.onnx"), Reader())
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(tmp_path / "u8s8.onnx")).graph.node)
