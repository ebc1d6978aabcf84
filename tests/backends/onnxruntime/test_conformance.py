"""ONNX Runtime through the shared backend conformance template (tests/conformance.py)."""
from __future__ import annotations

from conformance import BackendConformance


class TestOnnxRuntimeConformance(BackendConformance):
    backend_name = "onnxruntime"
