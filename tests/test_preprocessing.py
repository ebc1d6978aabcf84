"""The data config: resolved field by field from the recipe, the checkpoint and the model; described for the
manifest with every number an application needs."""
from __future__ import annotations

import numpy as np
import pytest

from edgefocal.errors import BadInput
from edgefocal.preprocessing import describe, from_pretrained_cfg, from_timm_args, resolve

FULL = {"input_size": (3, 32, 32), "mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6), "interpolation": "bicubic",
        "crop_pct": 1.0, "crop_mode": "center"}


@pytest.mark.parametrize("args, expected", [
    ({"img_size": 64, "in_chans": None, "mean": [0.5], "std": None, "interpolation": "", "crop_pct": None},
     {"input_size": (3, 64, 64), "mean": (0.5, 0.5, 0.5)}),
    ({"img_size": 28, "in_chans": 1, "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "squash"},
     {"input_size": (1, 28, 28), "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "squash"}),
    ({"input_size": [1, 40, 48], "img_size": 64, "std": [0.2]}, {"input_size": (1, 40, 48), "std": (0.2,)}),
    ({"model": "focalnet_tiny_srf", "num_classes": 7}, {}),
])
def test_timm_args_are_read_like_timm_reads_them(args, expected):
    assert from_timm_args(args, model_chans=3) == expected


def test_each_field_comes_from_the_first_source_that_sets_it():
    config, origin = resolve([("recipe", {"crop_pct": 0.9}), ("checkpoint", {"mean": (0.5,) * 3, "crop_pct": 1.0}),
                              ("model", FULL)], 3, "model m")
    assert config == {**FULL, "mean": (0.5, 0.5, 0.5), "crop_pct": 0.9}
    assert origin == {"crop_pct": "recipe", "mean": "checkpoint", "input_size": "model", "std": "model",
                      "interpolation": "model", "crop_mode": "model"}


def test_missing_and_inconsistent_fields_are_named():
    with pytest.raises(BadInput, match="model m has no data config for mean, crop_pct"):
        resolve([("recipe", {k: v for k, v in FULL.items() if k not in ("mean", "crop_pct")})], 3, "model m")
    with pytest.raises(BadInput, match=r"std \[0.4, 0.5\] \(from recipe\) has 2 values for 3 channels"):
        resolve([("recipe", {**FULL, "std": (0.4, 0.5)})], 3, "model m")


def test_pretrained_cfg_keeps_only_data_config_fields():
    assert from_pretrained_cfg({**FULL, "num_classes": 10, "url": "", "first_conv": "stem.proj"}) == FULL
    assert from_pretrained_cfg(None) == {}


@pytest.mark.parametrize("crop_pct, resize_to, first_step", [
    (1.0, [32, 32], "Resize(size=32, interpolation=bicubic"),
    (0.875, [36, 36], "Resize(size=36, interpolation=bicubic"),
])
def test_describe_gives_the_numbers_and_the_exact_steps(crop_pct, resize_to, first_step):
    d = describe({**FULL, "crop_pct": crop_pct})
    assert d["input_size"] == [3, 32, 32] and d["layout"] == "NCHW" and d["channel_order"] == "RGB"
    assert d["mean"] == [0.1, 0.2, 0.3] and d["resize_to"] == resize_to
    assert d["steps"][0] == "convert to PIL mode RGB" and d["steps"][1].startswith(first_step)
    assert d["steps"][2] == "CenterCrop(size=(32, 32))"


def test_the_described_formula_is_what_the_transform_computes():
    """An application following the manifest's numbers by hand (PIL resize, /255, -mean, /std) gets exactly
    the tensor edgefocal fed the artifacts."""
    from PIL import Image

    from edgefocal.preprocessing import make_transform

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
    d = describe(FULL)
    by_hand = np.asarray(img.convert("RGB").resize(tuple(d["resize_to"]), Image.BICUBIC), dtype=np.float32)
    by_hand = (by_hand / np.float32(255) - np.float32(d["mean"])) / np.float32(d["std"])
    assert np.array_equal(make_transform(FULL)(img).numpy(), by_hand.transpose(2, 0, 1))
