"""Core ML through the shared backend conformance template (tests/conformance.py). Core ML itself
predicts only on macOS; elsewhere `backend.runner` is edgefocal's numpy ML-program executor, which runs the
saved .mlpackage, so every conformance check still runs on the actual artifacts."""
from __future__ import annotations

import pytest

pytest.importorskip("coremltools")

from conformance import BackendConformance  # noqa: E402
from edgefocal.backends.coreml import on_macos  # noqa: E402


class TestCoreMLConformance(BackendConformance):
    backend_name = "coreml"
    skip_reason = None if on_macos() else ("Core ML predicts only on macOS: here the .mlpackage runs through "
                                           "edgefocal's numpy ML-program executor, and has no latency")
