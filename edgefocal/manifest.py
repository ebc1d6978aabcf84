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


def artifacts(rows: list[dict], workdir: Path, onnx_fp32: Path) -> list[dict]:
    """Every file the build wrote for a row, and the exported ONNX, with sha256."""
    from edgefocal.outputs import artifact_sha256

    out = [{"path": r["path"], "target": r["target"], "precision": r["precision"],
            "sha256": artifact_sha256(workdir / r["path"])}
           for r in rows if "path" in r and (workdir / r["path"]).exists()]
    out.append({"path": onnx_fp32.name, "target": "onnx", "precision": "fp32", "sha256": artifact_sha256(onnx_fp32)})
    return out


def assemble(*, loaded, recipe, report: dict, workdir: Path, onnx_fp32: Path) -> dict:
    """manifest.json of one build."""
    model = {"name": loaded.name, "arch": loaded.arch, "checkpoint": report["model"]["checkpoint"],
             "checkpoint_sha256": loaded.checkpoint_sha256, "data_config": loaded.data_config}
    return manifest(model=model, recipe=recipe.model_dump(mode="json"), calibration=report["calibration"],
                    artifacts=artifacts(report["rows"], workdir, onnx_fp32))


def write(man: dict, out: Path) -> None:
    import json

    from edgefocal.report import jsonable

    (out / "manifest.json").write_text(json.dumps(jsonable(man), indent=2) + "\n")


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
