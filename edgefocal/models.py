"""FocalNet through timm: model names, local checkpoints (timm and official formats), the embedded default.

timm builds the architecture; we only add checkpoint reading with errors a user can act on, because
timm's own loader either raises a long RuntimeError or (with pretrained=True and another num_classes)
silently drops the classifier.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgefocal.errors import BadInput

DEFAULT_MODEL = "edgefocal-fmnist"
DEFAULT_DIR = Path(__file__).parent / "default_model"


@dataclass
class LoadedModel:
    """A FocalNet in eval mode, with what the manifest needs to reproduce it."""

    model: torch.nn.Module
    name: str
    data_config: dict
    class_names: list[str]
    checkpoint: Path | None = None
    checkpoint_sha256: str | None = None
    arch: dict = field(default_factory=dict)


def focalnet_names() -> list[str]:
    import timm

    return timm.list_models("focalnet_*")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """Read a .safetensors/.pth/.pt/.bin checkpoint; unwrap 'model'/'state_dict'/'module.' wrappers."""
    if not path.is_file():
        raise BadInput(f"checkpoint {path} does not exist", hint="pass --checkpoint PATH to an existing file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        import re

        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        first = f"unsupported global {found.group(1)}" if found else "weights_only load refused"
        raise BadInput(
            f"checkpoint {path} holds objects besides tensors and was not unpickled ({first})",
            hint="official FocalNet checkpoints can embed a yacs config: add --trust-checkpoint if you trust the file",
        ) from e
    except Exception as e:  # safetensors/torch raise many types for a truncated or foreign file
        raise BadInput(
            f"checkpoint {path} is not a readable torch or safetensors file ({type(e).__name__}: {str(e)[:160]})",
            hint="check the file is complete (compare its sha256) and is a .pth/.safetensors state dict",
        ) from e
    if isinstance(state, dict):
        for key in ("model", "state_dict", "model_ema"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"checkpoint {path} holds no state dict of tensors", hint="save model.state_dict()")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _fit_state_dict(model: torch.nn.Module, state: dict, path: Path) -> None:
    """Load strictly, but name every mismatched key instead of torch's wall of text."""
    from timm.models.focalnet import checkpoint_filter_fn

    state = checkpoint_filter_fn(state, model)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
    if unexpected:
        problems.append(
            f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''})"
        )
    if shapes:
        problems.append(f"shape mismatch ({'; '.join(shapes[:3])}{'; ...' if len(shapes) > 3 else ''})")
    if problems:
        raise BadInput(
            f"checkpoint {path} does not fit the architecture: " + ", ".join(problems),
            hint="pass the --model name the checkpoint was trained as (and --num-classes if the head differs)",
        )
    model.load_state_dict(state, strict=True)


def _head_classes(state: dict) -> int | None:
    for key in ("head.fc.weight", "head.weight"):
        if key in state:
            return int(state[key].shape[0])
    return None


def load_model(
    name: str = DEFAULT_MODEL,
    checkpoint: Path | None = None,
    num_classes: int | None = None,
    trust_checkpoint: bool = False,
) -> LoadedModel:
    """Build `name` (a timm focalnet_* name or the embedded default) and load `checkpoint` into it."""
    import timm
    from timm.data import resolve_model_data_config

    checkpoint = Path(checkpoint) if checkpoint else None
    if name == DEFAULT_MODEL:
        return _load_default(checkpoint, trust_checkpoint)
    names = focalnet_names()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names + [DEFAULT_MODEL], n=1)
        raise BadInput(
            f"unknown model '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""),
            hint=f"use one of: {DEFAULT_MODEL}, " + ", ".join(names),
        )
    state = read_state_dict(checkpoint, trust_checkpoint) if checkpoint else None
    if num_classes is None and state is not None:
        num_classes = _head_classes(state)
    kwargs = {"num_classes": num_classes} if num_classes else {}
    model = timm.create_model(name, pretrained=False, **kwargs)
    if state is not None:
        _fit_state_dict(model, state, checkpoint)
    model.eval()
    n = model.num_classes
    return LoadedModel(
        model=model,
        name=name,
        data_config=resolve_model_data_config(model),
        class_names=[str(i) for i in range(n)],
        checkpoint=checkpoint,
        checkpoint_sha256=sha256_file(checkpoint) if checkpoint else None,
        arch={"timm_name": name, "num_classes": n},
    )


def default_arch() -> dict:
    return json.loads((DEFAULT_DIR / "config.json").read_text())


def build_default_architecture(config: dict | None = None) -> torch.nn.Module:
    """The embedded default: a small FocalNet for 1×32×32 inputs, built from config.json."""
    from timm.models.focalnet import FocalNet

    config = config or default_arch()
    model = FocalNet(**config["arch"])
    model.pretrained_cfg = dict(config["pretrained_cfg"])
    return model


def _load_default(checkpoint: Path | None, trust: bool) -> LoadedModel:
    from timm.data import resolve_model_data_config

    config = default_arch()
    path = checkpoint or DEFAULT_DIR / "focalnet_fmnist.safetensors"
    if not path.is_file() and checkpoint is None:
        raise BadInput(
            f"the embedded default weights {path} are missing",
            hint="reinstall edgefocal, or train them: python -m edgefocal.default_model.train",
        )
    model = build_default_architecture(config)
    _fit_state_dict(model, read_state_dict(path, trust), path)
    model.eval()
    return LoadedModel(
        model=model,
        name=DEFAULT_MODEL,
        data_config=resolve_model_data_config(model),
        class_names=list(config["class_names"]),
        checkpoint=path,
        checkpoint_sha256=sha256_file(path),
        arch=config["arch"],
    )


def load(spec) -> LoadedModel:
    """The load stage: the recipe's `model:` section (recipe.ModelSpec) as a FocalNet in eval mode."""
    return load_model(spec.name, spec.checkpoint, spec.num_classes, spec.trust_checkpoint)
