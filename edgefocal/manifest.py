"""manifest.json: everything needed to reproduce and audit the artifacts of one build."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
from pathlib import Path

PACKAGES = ("edgefocal", "torch", "torchvision", "timm", "numpy", "onnx", "onnxruntime", "openvino", "nncf",
            "coremltools", "tensorrt")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import torch

    info = {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    l4t = Path("/etc/nv_tegra_release")
    if l4t.exists():
        info["l4t"] = l4t.read_text().splitlines()[0].strip()
    return info


def manifest(*, model: dict, recipe: dict, calibration: dict, artifacts: list[dict], extra: dict | None = None) -> dict:
    return {
        "schema": 1,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "recipe": recipe,
        "calibration": calibration,
        "packages": package_versions(),
        "machine": machine(),
        "artifacts": artifacts,
        **(extra or {}),
    }
