"""`edgefocal predict` and `edgefocal inspect` on a real build of the embedded default: predict's top-1 on the
OpenVINO INT8 artifact is the build's own evaluation of those images, image for image."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from edgefocal.cli import main
from edgefocal.data import FASHION_MNIST_CLASSES, balanced_subset, fashion_mnist
from edgefocal.errors import BadInput
from imagefolders import write_imagefolder

FAST = {"calibration": {"source": "fashion-mnist", "split": "train", "size": 64},
        "bench": {"batch_sizes": [1], "warmup": 1, "iterations": 3, "rounds": 1, "cold_start_runs": 1},
        "gates": {"max_latency_rounds": 1}}  # predictions are what is asserted here, not serving or latency


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The default built for openvino, evaluated on 100 Fashion-MNIST test images given as PNG files."""
    root = tmp_path_factory.mktemp("predict")
    test = fashion_mnist("test")
    files = write_imagefolder(root / "images", test, balanced_subset(test.labels, 100, seed=2))
    (root / "fast.yaml").write_text(yaml.safe_dump(FAST))
    code = main(["build", "--recipe", str(root / "fast.yaml"), "--target", "openvino", "--eval-dir",
                 str(root / "images"), "--output", str(root / "out"), "--quiet"])
    assert code == 0
    return root, files


def build_evaluation(root) -> tuple[np.ndarray, np.ndarray]:
    """The build's own evaluation of its INT8 artifact, per image: its data stage (the same recipe, eval set and
    preprocessing) and the runner it verified the artifact with, at its thread count."""
    import os

    from edgefocal import models
    from edgefocal.data import load_data
    from edgefocal.recipe import load_recipe
    from edgefocal.backends.openvino import OpenVINORunner
    from edgefocal.verify.evaluate import predict

    recipe = load_recipe(root / "fast.yaml", {"eval.source": "imagefolder", "eval.path": str(root / "images")})
    loaded = models.load(recipe.model)
    data = load_data(recipe, loaded.data_config, loaded.model.num_classes)
    with OpenVINORunner(root / "out" / "openvino" / "model_int8.xml", os.cpu_count()) as runner:
        return predict(runner, data.eval.images).argmax(1), data.eval.labels


def test_predict_gives_the_builds_top1_for_every_image(built, capsys):
    root, files = built
    capsys.readouterr()
    assert main(["predict", str(root / "out" / "openvino" / "model_int8.xml"), str(root / "images"), "--json"]) == 0
    predictions = {p["image"]: p["top"] for p in json.loads(capsys.readouterr().out)}
    assert len(predictions) == 100
    predicted = np.array([predictions[str(path)][0]["class"] for path, _ in files])
    build_top1, labels = build_evaluation(root)
    assert labels.tolist() == [label for _, label in files]
    report = json.loads((root / "out" / "report.json").read_text())
    int8 = next(r for r in report["rows"] if r["label"] == "openvino int8")
    assert int8["top1"] == (build_top1 == labels).mean()  # the recomputation is the build's own evaluation
    assert predicted.tolist() == build_top1.tolist()  # image for image
    for top in predictions.values():
        assert len(top) == 5 and [t["name"] for t in top] == [FASHION_MNIST_CLASSES[t["class"]] for t in top]
        probs = [t["probability"] for t in top]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6


def test_predict_prints_names_and_refuses_what_it_cannot_trust(built, tmp_path, capsys):
    root, files = built
    capsys.readouterr()
    xml = root / "out" / "openvino" / "model_int8.xml"
    assert main(["predict", str(xml), str(files[-1][0]), "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{files[-1][0]}: 1. ") and " 2. " in line and "%" in line
    copy = tmp_path / "out"
    shutil.copytree(root / "out", copy)
    (copy / "openvino" / "model_int8.bin").write_bytes(b"\0" * 16)
    with pytest.raises(BadInput, match="is not the artifact the build verified"):
        main(["--debug", "predict", str(copy / "openvino" / "model_int8.xml"), str(files[0][0])])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(BadInput, match=f"image {bad} is corrupt"):
        main(["--debug", "predict", str(xml), str(bad)])
    assert main(["predict", str(root / "out" / "report.json"), str(files[0][0])]) == 2
    assert "is not an artifact of the build" in capsys.readouterr().err


def test_inspect_shows_artifacts_gates_preprocessing_and_classes(built, capsys):
    root, _ = built
    capsys.readouterr()
    assert main(["inspect", str(root / "out")]) == 0
    text = capsys.readouterr().out
    assert "openvino/model_int8.xml" in text and "openvino     int8" in text
    assert "preprocessing (NCHW float32, grayscale (PIL mode L))" in text and "mean [0.286]" in text
    assert "9 Ankle boot" in text and "gates:" in text
    assert main(["inspect", str(root / "out"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    int8 = next(a for a in info["artifacts"] if a["path"] == "openvino/model_int8.xml")
    assert int8["size_bytes"] > 0 and int8["top1"] is not None and len(int8["sha256"]) == 64
    assert info["preprocessing"]["resize_to"] == [32, 32] and info["class_names"] == FASHION_MNIST_CLASSES


def test_an_engine_built_later_from_the_builds_onnx_is_accepted(built, tmp_path):
    """The engine `edgefocal engine` builds on the device is not in the manifest; its sidecar's ONNX sha256 ties
    it to the build (here a stand-in file: TensorRT is not installed, so it is not run)."""
    from edgefocal.models import sha256_file
    from edgefocal.predict import find_artifact, runner_for
    from edgefocal.backends.tensorrt import TensorRTRunner

    root, _ = built
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    engine = out / "tensorrt" / "model_fp32.engine"
    engine.parent.mkdir()
    engine.write_bytes(b"engine")
    sidecar = {"onnx_sha256": sha256_file(out / "model_fp32.onnx"), "build": {"spec": {"precision": "fp32", "max_batch": 32}}}
    (out / "tensorrt" / "model_fp32.engine.json").write_text(json.dumps(sidecar))
    found = find_artifact(engine)
    assert found.entry["built_from"] == "model_fp32.onnx" and found.entry["max_batch"] == 32
    assert isinstance(runner_for(found), TensorRTRunner)
    sidecar["onnx_sha256"] = "0" * 64
    (out / "tensorrt" / "model_fp32.engine.json").write_text(json.dumps(sidecar))
    with pytest.raises(BadInput, match="is not an artifact of the build"):
        find_artifact(engine)
