"""`edgefocal engine --compare`: the ONNX Runtime (Q/DQ ONNX) and torch FP32 legs run here, for real, with
the recipe's tolerances or the flags'; the engine leg is left out with its reason (no TensorRT here) and
runs in test_tensorrt.py's `tensorrt` tests on a device."""
from __future__ import annotations

import pytest

from edgefocal.cli import main

pytest.importorskip("polygraphy", reason="compare uses Polygraphy's Comparator: pip install 'edgefocal[tensorrt]'")

EVAL = "eval: {source: fashion-mnist, split: test, size: 300}\n"


@pytest.fixture(scope="module")
def default_qdq(default_model, fmnist_calibration, tmp_path_factory):
    """The embedded default's TensorRT Q/DQ ONNX, as `edgefocal build` writes it."""
    from edgefocal.export import onnx_from_torch
    from qdq_helpers import qdq_onnx_for_tensorrt

    d = tmp_path_factory.mktemp("engine_compare")
    fp32 = onnx_from_torch(default_model.model, tuple(default_model.data_config["input_size"]), d / "m.onnx")
    qdq_onnx_for_tensorrt(fp32, fmnist_calibration[:64], "focalnet", d / "m_qdq.onnx", log=lambda s: None)
    return d / "m_qdq.onnx"


def _compare(qdq, recipe, *flags) -> int:
    return main(["engine", "--onnx", str(qdq), "--precision", "int8", "--compare", "--engine",
                 str(qdq.with_suffix(".engine")), "--recipe", str(recipe), "--images", "32", *map(str, flags)])


def test_compare_uses_the_recipe_tolerances_and_flags_override_them(default_qdq, tmp_path, capsys):
    strict = tmp_path / "strict.yaml"
    strict.write_text(EVAL + "tensorrt: {compare_atol: 1.0e-6, compare_rtol: 0.0}\n")
    assert _compare(default_qdq, strict) == 1  # INT8 rounding is far outside 1e-6
    captured = capsys.readouterr()
    assert "onnxruntime-qdq vs torch-fp32: FAIL (atol 1e-06, rtol 0.0)" in captured.out
    assert "tensorrt: skipped (TensorRT's Python bindings are not importable here" in captured.out
    assert captured.err.startswith("error: outside atol 1e-06, rtol 0.0: onnxruntime-qdq vs torch-fp32 (max |diff|")
    assert _compare(default_qdq, strict, "--atol", 1.0, "--rtol", 0.1) == 0
    assert "onnxruntime-qdq vs torch-fp32: PASS (atol 1.0, rtol 0.1)" in capsys.readouterr().out


def test_compare_with_the_default_tolerances_passes_on_the_default(default_qdq, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(EVAL)
    assert _compare(default_qdq, recipe) == 0
    out = capsys.readouterr().out
    assert "comparing on 32 fashion-mnist:test images in batches of 8 (atol 1.0, rtol 0.1)" in out
    assert "top-1 agreement" in out


def test_compare_refuses_a_recipe_of_another_model(default_qdq, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text("model: {name: focalnet_tiny_srf, num_classes: 10}\n" + EVAL)
    assert _compare(default_qdq, other) == 2
    assert "takes inputs of [1, 32, 32], the recipe's model focalnet_tiny_srf [3, 224, 224]" in capsys.readouterr().err


def test_engine_flag_needs_compare_and_compare_needs_an_engine(default_qdq, monkeypatch, capsys):
    from edgefocal.backends.tensorrt import engine as engine_mod

    assert main(["engine", "--onnx", str(default_qdq), "--precision", "int8", "--engine", "x.engine"]) == 2
    assert "--compare is not set" in capsys.readouterr().err
    monkeypatch.setattr(engine_mod, "import_tensorrt", lambda: None)
    monkeypatch.setattr(engine_mod, "find_trtexec", lambda explicit=None: None)
    assert main(["engine", "--onnx", str(default_qdq), "--precision", "int8", "--compare"]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err  # no engine built, nothing compared
