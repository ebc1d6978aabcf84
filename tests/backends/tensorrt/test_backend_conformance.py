"""TensorRT through the shared backend conformance template (tests/conformance.py). Without TensorRT
(here, CI) the Q/DQ ONNX still packages and runs through its ONNX Runtime proxy runner; the engine is skipped
with its reason. (test_conformance.py next to this file tests the Q/DQ rule checker, not this template.)"""
from __future__ import annotations

from conformance import BackendConformance


class TestTensorRTConformance(BackendConformance):
    backend_name = "tensorrt"
    skip_reason = ("the TensorRT engine builds and runs only where TensorRT is (a Jetson or GPU machine); "
                   "its Q/DQ ONNX is packaged and verified here through the ONNX Runtime proxy runner")
