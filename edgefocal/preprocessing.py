"""Preprocessing: the timm data config a model was trained with, resolved from the recipe, the checkpoint and
the model (in that order, each field on its own), and described exactly for the manifest, so an application
that feeds an artifact can reproduce the input the accuracy was measured on.

A wrong mean or crop costs accuracy silently, so nothing here guesses: a model built from `model.arch` has no
defaults, and a field none of the sources sets is an error naming it."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from edgefocal.errors import BadInput

KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
#: what a model without a data config of its own must be given (crop_mode is timm's "center" by default)
REQUIRED = ("input_size", "mean", "std", "interpolation", "crop_pct")
Source = tuple[str, Mapping[str, Any]]  # (where the fields come from, the fields)


def from_pretrained_cfg(cfg: Mapping[str, Any] | None) -> dict:
    """The data config fields of a timm `pretrained_cfg` (a model's, or one stored in a checkpoint)."""
    return {k: cfg[k] for k in KEYS if cfg and cfg.get(k) is not None}


def from_timm_args(args: Mapping[str, Any] | None, model_chans: int) -> dict:
    """The fields timm's train.py took from its command line (the `args` it saves in checkpoints), read the
    way `timm.data.resolve_data_config` reads them: `input_size`, else `img_size` at the model's channels;
    a single mean/std value repeated per channel; empty strings and None mean "not given"."""
    if not args:
        return {}
    out: dict[str, Any] = {}
    chans = args.get("in_chans") or args.get("chans") or model_chans
    if args.get("input_size"):
        out["input_size"] = tuple(int(v) for v in args["input_size"])
    elif args.get("img_size"):
        size = args["img_size"]
        h, w = (size, size) if isinstance(size, int) else size
        out["input_size"] = (int(chans), int(h), int(w))
    channels = out.get("input_size", (chans,))[0]
    for key in ("mean", "std"):
        if args.get(key) is not None:
            values = [float(v) for v in args[key]]
            out[key] = tuple(values * channels if len(values) == 1 else values)
    for key in ("interpolation", "crop_pct", "crop_mode"):
        if args.get(key):
            out[key] = args[key]
    return out


FIX = ("set model.data_config (input_size, mean, std, interpolation, crop_pct) to what the model was trained "
       "with, or use a checkpoint saved by timm's train.py (it stores them)")


def resolve(sources: Sequence[Source], model_chans: int, what: str, fix: str = FIX) -> tuple[dict, dict]:
    """(data config, where each field came from): each field from the first source that sets it.

    `what` names the model in errors, `fix` says where to set the fields. Fields none of the sources sets are
    an error, except crop_mode, which timm itself defaults to "center"."""
    config: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for label, fields in sources:
        for key in KEYS:
            if key not in config and fields.get(key) is not None:
                config[key], origin[key] = fields[key], label
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise BadInput(f"{what} has no data config for {', '.join(missing)}", hint=fix)
    if "crop_mode" not in config:
        config["crop_mode"], origin["crop_mode"] = "center", "timm default"
    config = normalized(config)
    check_channels(config, model_chans, what, origin)
    return config, origin


def normalized(config: Mapping[str, Any]) -> dict:
    """Plain Python types in timm's shapes: tuples for input_size, mean and std."""
    return {"input_size": tuple(int(v) for v in config["input_size"]),
            "mean": tuple(float(v) for v in config["mean"]), "std": tuple(float(v) for v in config["std"]),
            "interpolation": str(config["interpolation"]), "crop_pct": float(config["crop_pct"]),
            "crop_mode": str(config.get("crop_mode") or "center")}


def check_channels(config: Mapping[str, Any], model_chans: int, what: str, origin: Mapping[str, str]) -> None:
    c = config["input_size"][0]
    if c != model_chans:
        raise BadInput(f"{what} takes {model_chans} input channels but its data config's input_size "
                       f"{list(config['input_size'])} (from {origin.get('input_size', 'the data config')}) has {c}",
                       hint=f"set model.data_config.input_size to [{model_chans}, H, W]")
    for key in ("mean", "std"):
        if len(config[key]) != c:
            raise BadInput(f"{what}: data config {key} {list(config[key])} (from {origin.get(key, 'the data config')})"
                           f" has {len(config[key])} values for {c} channels",
                           hint=f"set model.data_config.{key} to {c} values")
    if any(s <= 0 for s in config["std"]):
        raise BadInput(f"{what}: data config std {list(config['std'])} has a value ≤ 0",
                       hint="set model.data_config.std to the positive per-channel std the model was trained with")


def channel_mode(config: Mapping[str, Any]) -> str:
    """The PIL mode images are converted to first: "L" for one channel, "RGB" for three."""
    c = config["input_size"][0]
    if c not in (1, 3):
        raise BadInput(f"images can be fed to a model of 1 (grayscale) or 3 (RGB) channels, not {c}",
                       hint="pass preprocessed arrays instead of image files for other channel counts")
    return "L" if c == 1 else "RGB"


def describe(config: Mapping[str, Any]) -> dict:
    """The manifest's `preprocessing`: every number an application needs to turn an image file into the
    artifact's input, and the exact torchvision steps edgefocal ran (timm's eval transform)."""
    c, h, w = (int(v) for v in config["input_size"])
    steps = [repr(t) for t in make_transform(config).transform.transforms]
    scale = (math.floor(h / config["crop_pct"]), math.floor(w / config["crop_pct"]))
    return {
        "input_size": [c, h, w],
        "layout": "NCHW",
        "dtype": "float32",
        "channel_order": "RGB" if c == 3 else "grayscale (PIL mode L)" if c == 1 else f"{c} channels",
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
        "interpolation": config["interpolation"],
        "crop_pct": float(config["crop_pct"]),
        "crop_mode": config["crop_mode"],
        "resize_to": list(scale),
        "pixel_scale": "1/255 (uint8 pixels to [0, 1]) before mean and std",
        "formula": "x[c] = (pixel[c] / 255 - mean[c]) / std[c], after resize and crop",
        "steps": [f"convert to PIL mode {channel_mode(config)}" if c in (1, 3) else "(arrays only)", *steps],
    }


class ImageTransform:
    """timm's eval transform for a data config, after converting the image to the model's channels (L or
    RGB); `transform` is timm's torchvision Compose, which the manifest describes step by step."""

    def __init__(self, data_config: dict):
        from timm.data import create_transform

        self.config = data_config
        self.transform = create_transform(**{k: data_config[k] for k in KEYS if k in data_config}, is_training=False)

    def __call__(self, img):
        return self.transform(img.convert(channel_mode(self.config)))  # refuses models of other channel counts


def make_transform(data_config: dict) -> ImageTransform:
    """timm's eval transform for this model's data config, plus the channel conversion it expects."""
    return ImageTransform(data_config)
