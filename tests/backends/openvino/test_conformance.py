"""OpenVINO through the shared backend conformance template (tests/conformance.py)."""
from __future__ import annotations

import pytest

pytest.importorskip("openvino")

from conformance import BackendConformance  # noqa: E402


class TestOpenVINOConformance(BackendConformance):
    backend_name = "openvino"
