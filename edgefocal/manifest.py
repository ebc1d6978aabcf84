"""manifest.json: everything needed to reproduce and audit the artifacts of one build, and to use them: the
exact preprocessing of their input and the names of their outputs' classes (`edgefocal inspect` prints it,
`edgefocal predict` follows it)."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
from pathlib import Path

from edgefocal.machine import machine

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


def artifacts(rows: list[dict], workdir: Path, onnx_fp32: Path) -> list[dict]:
    """Every file the build wrote for a row, and the exported ONNX, with sha256 and size."""
    from edgefocal.backends import files_of
    from edgefocal.outputs import artifact_sha256, artifact_size

    out = []
    for r in rows:
        if "path" in r and (path := workdir / r["path"]).exists():
            files = files_of(r["target"], path)
            out.append({"path": r["path"], "target": r["target"], "precision": r["precision"], "label": r["label"],
                        "sha256": artifact_sha256(path, files), "size_bytes": artifact_size(files)})
    out.append({"path": onnx_fp32.name, "target": "onnx", "precision": "fp32", "label": "exported ONNX",
                "sha256": artifact_sha256(onnx_fp32, [onnx_fp32]), "size_bytes": artifact_size([onnx_fp32])})
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

    from edgefocal.core import jsonable

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
