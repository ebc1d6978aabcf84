"""`compare_engine` (the library side of `edgefocal engine --compare`): Polygraphy's Comparator and
CompareFunc.simple over ONNX Runtime on the Q/DQ ONNX and torch FP32, for real; the engine runner is
left out here with its reason (the three-way comparison runs in test_tensorrt.py's `tensorrt` tests)."""
from __future__ import annotations

import pytest

from edgefocal.errors import BadInput
from edgefocal.export import onnx_from_torch
from qdq_helpers import qdq_onnx_for_tensorrt

pytest.importorskip("polygraphy", reason="compare uses Polygraphy's Comparator: pip install 'edgefocal[tensorrt]'")

from edgefocal.backends.tensorrt.cross_check import compare_engine  # noqa: E402


@pytest.fixture(scope="module")
def tiny_paths(tiny_focalnet, fmnist_calibration, tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    fp32 = onnx_from_torch(tiny_focalnet, (1, 32, 32), d / "tiny.onnx")
    qdq = d / "tiny_qdq.onnx"
    qdq_onnx_for_tensorrt(fp32, fmnist_calibration[:32], "focalnet", qdq, log=lambda s: None)
    return fp32, qdq


def test_fp32_onnx_matches_torch_tightly(tiny_paths, tiny_focalnet, fmnist_calibration):
    result = compare_engine(None, tiny_paths[0], tiny_focalnet, fmnist_calibration[:20], atol=1e-4, rtol=1e-4,
                            batch=8, log=lambda s: None)
    (pair,) = result["pairs"]
    assert result["runners"] == ["onnxruntime-qdq", "torch-fp32"] and result["images"] == 20
    assert pair["passed"] and result["passed"] and pair["max_abs_diff"] < 1e-4 and pair["top1_agreement"] == 1.0


def test_qdq_tolerances_decide_the_verdict(tiny_paths, tiny_focalnet, fmnist_calibration, tmp_path):
    images = fmnist_calibration[:24]
    lines = []
    tight = compare_engine(tmp_path / "absent.engine", tiny_paths[1], tiny_focalnet, images, atol=1e-5, rtol=1e-5,
                           log=lines.append)
    loose = compare_engine(None, tiny_paths[1], tiny_focalnet, images, atol=1.0, rtol=1.0, log=lambda s: None)
    assert not tight["passed"] and loose["passed"]
    assert tight["pairs"][0]["max_abs_diff"] == loose["pairs"][0]["max_abs_diff"] > 1e-5  # INT8 rounding
    assert "not importable" in tight["skipped"]["tensorrt"] and "tensorrt" not in tight["runners"]
    assert any("FAIL" in line for line in lines) and any("tensorrt: skipped" in line for line in lines)


def test_nothing_to_compare_is_refused(tiny_paths, fmnist_calibration, tmp_path):
    with pytest.raises(BadInput, match="nothing to compare: only onnxruntime-qdq"):
        compare_engine(tmp_path / "absent.engine", tiny_paths[1], None, fmnist_calibration[:4], atol=0.1, rtol=0.1,
                       log=lambda s: None)
    with pytest.raises(BadInput, match="does not exist"):
        compare_engine(None, tmp_path / "nope.onnx", None, fmnist_calibration[:4], atol=0.1, rtol=0.1)
