"""Shared fixtures and marker skips. Trained-model fixtures use the embedded default (trained on
Fashion-MNIST); structure tests use a tiny random FocalNet."""
from __future__ import annotations

import importlib.util
import platform
import shutil
from pathlib import Path

import pytest
import torch


def _tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is not None:
        try:
            import tensorrt  # noqa: F401

            return None
        except Exception as e:  # the bindings wheel imports only with NVIDIA's libraries
            return f"tensorrt is installed but does not import ({e})"
    if shutil.which("trtexec") or Path("/usr/src/tensorrt/bin/trtexec").exists():
        return None
    return "TensorRT is not installed here (no tensorrt module, no trtexec); engine tests run on a Jetson/GPU runner"


def pytest_configure(config):
    """ModelOpt probes `import tensorrt` once, when first imported, and keeps the answer: let that happen
    before any test puts a fake tensorrt (tests/backends/tensorrt/trt_fakes.py) into sys.modules.

    Under `-n 2 --dist loadfile` xdist hands out whole files, by default the files with the most tests
    first (--loadscope-reorder): the files of real builds hold few tests, so they came last and one
    worker ran the README commands for minutes while the other had nothing left. The order of
    `pytest_collection_modifyitems` below (files with a slow test first) is kept instead."""
    try:
        importlib.import_module("modelopt.onnx.trt_utils")
    except ImportError:
        pass
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist is installed
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    reasons = {
        "tensorrt": _tensorrt_reason(),
        "gpu": None if torch.cuda.is_available() else "no CUDA GPU on this machine",
        "macos": None if platform.system() == "Darwin" else "Core ML prediction runs only on macOS",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and item.get_closest_marker(marker) is not None:  # not keywords: folders are named tensorrt
                item.add_marker(pytest.mark.skip(reason=reason))
    # the longest files first, so that the two xdist workers end together (a stable sort: the order within each
    # group stays pytest-randomly's or the files')
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def default_model():
    from edgefocal.models import load_model

    return load_model()


@pytest.fixture(scope="session")
def tiny_focalnet():
    """A tiny random FocalNet (1×32×32, 10 classes) for fast structure tests."""
    from timm.models.focalnet import FocalNet

    torch.manual_seed(0)
    model = FocalNet(in_chans=1, num_classes=10, embed_dim=16, depths=(1, 1, 1, 1), drop_path_rate=0.0)
    model.pretrained_cfg = {"input_size": (1, 32, 32), "mean": (0.286,), "std": (0.353,),
                            "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}
    return model.eval()


@pytest.fixture(scope="session")
def fmnist_calibration(default_model):
    """256 class-balanced, preprocessed Fashion-MNIST train images."""
    from edgefocal.data import balanced_subset, fashion_mnist, preprocess

    train = fashion_mnist("train")
    return preprocess(train, balanced_subset(train.labels, 256, seed=0), default_model.data_config)


@pytest.fixture(scope="session")
def fmnist_eval(default_model):
    """(images, labels): 2000 preprocessed Fashion-MNIST test images (a fixed, balanced subset)."""
    from edgefocal.data import balanced_subset, fashion_mnist, preprocess

    test = fashion_mnist("test")
    idx = balanced_subset(test.labels, 2000, seed=1)
    return preprocess(test, idx, default_model.data_config), test.labels[idx]
