"""`edgefocal inspect`'s summary on hand-made manifest/report files: a skipped engine is listed with its reason
and the command that builds it; a directory without a manifest is refused."""
from __future__ import annotations

import json

import pytest

from edgefocal.buildinfo import read, summary, to_text
from edgefocal.errors import BadInput

COMMAND = "python -m edgefocal engine --onnx out/tensorrt/model_int8_qdq.onnx --precision int8"
MANIFEST = {
    "schema": 2, "created": "2026-11-27T00:00:00+00:00", "packages": {"torch": "2.14.1"},
    "model": {"name": "focalnet", "checkpoint": "w.safetensors", "checkpoint_sha256": "ab" * 32},
    "preprocessing": {"input_size": [3, 32, 32], "layout": "NCHW", "dtype": "float32", "channel_order": "RGB",
                      "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bicubic", "crop_pct": 1.0,
                      "crop_mode": "center", "resize_to": [32, 32], "formula": "x = (p / 255 - mean) / std",
                      "steps": ["convert to PIL mode RGB"]},
    "class_names": ["cat", "dog"],
    "artifacts": [{"path": "tensorrt/model_int8_qdq.onnx", "target": "tensorrt", "precision": "int8",
                   "label": "tensorrt int8 (Q/DQ ONNX via ONNX Runtime)", "sha256": "cd" * 32, "size_bytes": 3_000_000}],
}
REPORT = {"rows": [
    {"label": "tensorrt int8 (Q/DQ ONNX via ONNX Runtime)", "path": "tensorrt/model_int8_qdq.onnx",
     "target": "tensorrt", "precision": "int8", "top1": 0.9, "agreement": 0.99,
     "latency_ms": {"8": {"p50": 9.0}, "1": {"p50": 2.5}}, "engine_command": COMMAND},
    {"label": "tensorrt int8 (engine)", "path": "tensorrt/model_int8.engine", "target": "tensorrt",
     "precision": "int8", "skipped": "TensorRT is not installed here", "engine_command": COMMAND}],
    "gates": [{"gate": "min_agreement", "artifact": "tensorrt int8 (engine)", "value": None, "bound": 0.99,
               "passed": False, "status": "failed"}]}


def test_summary_lists_the_skipped_engine_and_its_command(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    info = summary(*read(tmp_path / "manifest.json"))
    qdq, engine = info["artifacts"]
    assert qdq["p50_ms"] == 2.5 and qdq["agreement"] == 0.99  # the smallest batch's latency
    assert engine["path"] == "tensorrt/model_int8.engine" and engine["skipped"] == "TensorRT is not installed here"
    assert info["engine_commands"] == [COMMAND]
    text = to_text(info)
    assert "(not built here: TensorRT is not installed here)" in text and f"  {COMMAND}" in text
    assert "failed: min_agreement for tensorrt int8 (engine) = – (bound 0.99)" in text
    assert "classes (2): 0 cat, 1 dog" in text and "resize to [32, 32]" in text


def test_a_directory_without_a_manifest_is_refused(tmp_path):
    with pytest.raises(BadInput, match=f"{tmp_path} holds no manifest.json"):
        read(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(BadInput, match="is not JSON"):
        read(tmp_path)
