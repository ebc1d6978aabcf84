"""Bring your own FocalNet: a model this project never trained (examples/focalnet-rgb: 3 channels, embed dim 36,
depths 1-2-2-1, 3 focal levels, bicubic 32×32, its own normalization), described by recipes/focalnet-rgb.yaml,
built on every target from ImageFolders. Its accuracy is measured here, independently of edgefocal's loading:
weights read with safetensors into timm's FocalNet, images preprocessed by its trainer's own code."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edgefocal.cli import main
from edgefocal.data import balanced_subset, fashion_mnist, preprocess
from imagefolders import write_imagefolder

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "focalnet-rgb"
RECIPE = REPO / "recipes" / "focalnet-rgb.yaml"
EVAL_SIZE = 300


def own_model() -> tuple[torch.nn.Module, dict]:
    """The model as its trainer saved it (focalnet_rgb.json + safetensors), without edgefocal.models."""
    from safetensors.torch import load_file
    from timm.models.focalnet import FocalNet

    meta = json.loads((EXAMPLE / "focalnet_rgb.json").read_text())
    arch = dict(meta["arch"])
    for key in ("focal_levels", "focal_windows"):
        arch[key] = (arch[key],) * len(arch["depths"])
    model = FocalNet(**arch)
    model.load_state_dict(load_file(str(EXAMPLE / "focalnet_rgb.safetensors")))
    return model.eval(), meta


def trainer_tensors(dataset, indices: np.ndarray, meta: dict) -> np.ndarray:
    """Exactly what the trainer fed the model: its own unnormalized preprocessing, then its normalization."""
    from edgefocal.default_model.train import normalize, unnormalized

    cfg = meta["pretrained_cfg"]
    x = torch.from_numpy(preprocess(dataset, indices, unnormalized(cfg)))
    return normalize(x, cfg["mean"], cfg["std"]).numpy()


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.inference_mode():
        pred = torch.cat([model(torch.from_numpy(x[i:i + 500])).argmax(1) for i in range(0, len(x), 500)]).numpy()
    return float((pred == y).mean())


@pytest.mark.slow
def test_the_recipe_loads_the_model_at_its_own_measured_accuracy():
    """Through the recipe (model.name focalnet + arch + data_config + checkpoint), on the full 10k test split,
    edgefocal gets the accuracy the trainer measured: 88.64 %."""
    from edgefocal import models
    from edgefocal.recipe import load_recipe

    loaded = models.load(load_recipe(RECIPE).model)
    _, meta = own_model()
    test = fashion_mnist("test")
    x = preprocess(test, np.arange(len(test)), loaded.data_config)
    assert accuracy(loaded.model, x, test.labels) == meta["test_top1"] == 0.8864
    assert loaded.class_names == meta["class_names"] and loaded.data_config_source["mean"] == "model.data_config"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build of the recipe from ImageFolders (64 train images to calibrate, 300 test images to evaluate)
    on openvino, onnxruntime, tensorrt (Q/DQ) and coreml, with the checkpoint given by --checkpoint."""
    root = tmp_path_factory.mktemp("byo")
    train, test = fashion_mnist("train"), fashion_mnist("test")
    write_imagefolder(root / "calib", train, balanced_subset(train.labels, 64, seed=0))
    eval_idx = balanced_subset(test.labels, EVAL_SIZE, seed=1)
    files = write_imagefolder(root / "eval", test, eval_idx)
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["model"].pop("checkpoint")  # given on the command line instead
    recipe["bench"] = {"batch_sizes": [1], "warmup": 1, "iterations": 3, "rounds": 1, "cold_start_runs": 1}
    recipe["gates"] = {"max_top1_drop": 1.0, "min_agreement": 0.98,  # on 300 images one image is 0.33 pt
                       "max_latency_rounds": 1}  # accuracy is what is asserted here: one latency round
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    code = main(["build", "--recipe", str(root / "recipe.yaml"), "--checkpoint", str(EXAMPLE / "focalnet_rgb.safetensors"),
                 "--calib-dir", str(root / "calib"), "--eval-dir", str(root / "eval"), "--output", str(root / "out"),
                 "--quiet"])
    by_file = {f"{int(test.labels[i])}/{int(i):05d}.png": int(i) for i in eval_idx}
    order = np.array([by_file[f"{p.parent.name}/{p.name}"] for p, _ in files])  # test indices, ImageFolder order
    return code, root / "out", files, order


@pytest.mark.slow
def test_builds_on_every_target_from_imagefolders(built):
    code, out, _, _ = built
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    rows = {r["label"]: r for r in report["rows"]}
    requested = [label for label, r in rows.items() if r.get("requested") and r.get("top1") is not None]
    for target in ("openvino int8", "onnxruntime int8", "tensorrt int8 (Q/DQ", "coreml int8"):
        assert any(label.startswith(target) for label in requested), (target, list(rows))
    assert report["eval"]["count"] == EVAL_SIZE and report["eval"]["name"].startswith("imagefolder:")
    assert report["model"]["input_size"] == [3, 32, 32] and report["model"]["name"] == "focalnet"


@pytest.mark.slow
def test_reference_top1_is_the_models_own_accuracy_on_those_images(built):
    """The report's FP32 reference top-1 equals the model's accuracy measured here on the same 300 test images
    (its own weights, its trainer's preprocessing); and the PNG files, preprocessed as manifest.json says, are
    exactly the tensors the trainer fed it."""
    from edgefocal.predict import load_images

    _, out, files, order = built
    model, meta = own_model()
    test = fashion_mnist("test")
    fed = trainer_tensors(test, order, meta)
    labels = test.labels[order]
    assert [label for _, label in files] == labels.tolist()
    manifest = json.loads((out / "manifest.json").read_text())
    from_files = load_images([p for p, _ in files], manifest["model"]["data_config"])
    assert from_files.dtype == np.float32 and np.array_equal(from_files, fed)
    report = json.loads((out / "report.json").read_text())
    reference = next(r for r in report["rows"] if r["label"] == "torch fp32 (reference)")
    assert reference["top1"] == accuracy(model, fed, labels)
    assert 0.8 < reference["top1"] < 0.95  # a trained model on a balanced subset, not chance (10 %)


@pytest.mark.slow
def test_manifest_records_the_exact_preprocessing_and_classes(built):
    _, out, _, _ = built
    _, meta = own_model()
    manifest = json.loads((out / "manifest.json").read_text())
    p, cfg = manifest["preprocessing"], meta["pretrained_cfg"]
    assert p["input_size"] == cfg["input_size"] and p["mean"] == cfg["mean"] and p["std"] == cfg["std"]
    assert (p["interpolation"], p["crop_pct"], p["crop_mode"]) == (cfg["interpolation"], cfg["crop_pct"], cfg["crop_mode"])
    assert p["channel_order"] == "RGB" and p["layout"] == "NCHW" and p["resize_to"] == [32, 32]
    assert manifest["class_names"] == meta["class_names"]
    assert manifest["model"]["arch"]["embed_dim"] == 36 and manifest["model"]["arch"]["focal_levels"] == [3, 3, 3, 3]
    assert manifest["model"]["checkpoint_sha256"] == meta["sha256"]
