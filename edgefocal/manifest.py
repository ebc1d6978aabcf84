"""manifest.json: everything needed to reproduce and audit the artifacts of one build, and to use them: the
exact preprocessing of their input and the names of their outputs' classes (`edgefocal inspect` prints it,
`edgefocal predict` follows it)."""
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
    """Every file the build wrote for a row, and the exported ONNX, with sha256 and size."""
    from edgefocal.outputs import artifact_sha256, artifact_size

    out = [{"path": r["path"], "target": r["target"], "precision": r["precision"], "label": r["label"],
            "sha256": artifact_sha256(workdir / r["path"]), "size_bytes": artifact_size(workdir / r["path"])}
           for r in rows if "path" in r and (workdir / r["path"]).exists()]
    out.append({"path": onnx_fp32.name, "target": "onnx", "precision": "fp32", "label": "exported ONNX",
                "sha256": artifact_sha256(onnx_fp32), "size_bytes": artifact_size(onnx_fp32)})
    return out


def assemble(*, loaded, recipe, report: dict, workdir: Path, onnx_fp32: Path) -> dict:
    """manifest.json of one build."""
    from edgefocal.preprocessing import describe

    model = {"name": loaded.name, "arch": loaded.arch, "checkpoint": report["model"]["checkpoint"],
             "checkpoint_sha256": loaded.checkpoint_sha256, "num_classes": len(loaded.class_names),
             "data_config": loaded.data_config, "data_config_source": loaded.data_config_source}
    return manifest(model=model, recipe=recipe.model_dump(mode="json"), calibration=report["calibration"],
                    artifacts=artifacts(report["rows"], workdir, onnx_fp32),
                    extra={"preprocessing": describe(loaded.data_config), "class_names": list(loaded.class_names),
                           "outputs": "logits: float32, one row per image, one column per class in class_names "
                                      "order (softmax gives probabilities); a Core ML package with class labels "
                                      "returns the top label and the same logits keyed by class name"})


def write(man: dict, out: Path) -> None:
    import json

    from edgefocal.report import jsonable

    (out / "manifest.json").write_text(json.dumps(jsonable(man), indent=2) + "\n")


def manifest(*, model: dict, recipe: dict, calibration: dict, artifacts: list[dict], extra: dict | None = None) -> dict:
    return {
        "schema": 2,  # 2: preprocessing, class_names, outputs; artifacts carry label and size
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "recipe": recipe,
        "calibration": calibration,
        "packages": package_versions(),
        "machine": machine(),
        "artifacts": artifacts,
        **(extra or {}),
    }
