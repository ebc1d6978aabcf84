"""FocalNet through timm: model names, custom FocalNets built from `model.arch`, in-memory modules (the Python
API), local checkpoints (timm, timm train.py and official formats), the embedded default.

timm builds the architecture; we only add checkpoint reading with errors a user can act on, because
timm's own loader either raises a long RuntimeError or (with pretrained=True and another num_classes)
silently drops the classifier. Preprocessing is resolved in preprocessing.py from the recipe, the
checkpoint and the model, field by field.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from edgefocal.errors import BadInput

DEFAULT_MODEL = "edgefocal-fmnist"
FOCALNET = "focalnet"  # a FocalNet built from model.arch
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
    data_config_source: dict = field(default_factory=dict)  # field -> recipe / checkpoint args / ... (manifest)


@dataclass
class Checkpoint:
    """A checkpoint's tensors and what it says about how it was trained (timm train.py's `args`, a timm
    `pretrained_cfg`), which fills in the data config where the recipe is silent."""

    path: Path
    state: dict[str, torch.Tensor]
    args: dict | None = None
    pretrained_cfg: dict | None = None

    @property
    def trained_as(self) -> str | None:
        """The timm model name timm's train.py recorded, if any."""
        return (self.args or {}).get("model") or None


def focalnet_names() -> list[str]:
    import timm

    return timm.list_models("focalnet_*")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _torch_load(path: Path, trust: bool):
    """torch.load without arbitrary code: only tensors, containers and argparse.Namespace (timm's train.py
    saves its command line as one) unless the user trusts the file."""
    import argparse

    if trust:
        return torch.load(path, map_location="cpu", weights_only=False)
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch ≥ 2.5; 2.4 has only the global list
    if safe_globals is None:
        torch.serialization.add_safe_globals([argparse.Namespace])
        return torch.load(path, map_location="cpu", weights_only=True)
    with safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _read(path: Path, trust: bool):
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return _torch_load(path, trust)
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


def read_checkpoint(path: Path, trust: bool = False) -> Checkpoint:
    """Read a .safetensors/.pth/.pt/.bin checkpoint; unwrap 'model'/'state_dict'/'model_ema' and 'module.';
    keep timm train.py's `args` and a `pretrained_cfg` when the file carries them."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"checkpoint {path} does not exist", hint="pass --checkpoint PATH to an existing file")
    raw = state = _read(path, trust)
    if isinstance(state, dict):
        for key in ("model", "state_dict", "model_ema"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"checkpoint {path} holds no state dict of tensors", hint="save model.state_dict()")
    around = raw if isinstance(raw, dict) and state is not raw else {}  # what the file holds beside the weights
    args = around.get("args")  # timm train.py: an argparse.Namespace
    args = args if isinstance(args, dict) else vars(args) if hasattr(args, "__dict__") else None
    cfg = around.get("pretrained_cfg")
    return Checkpoint(path, {k.removeprefix("module."): v for k, v in state.items()}, args=args,
                      pretrained_cfg=cfg if isinstance(cfg, dict) else None)


def _fit_state_dict(model: torch.nn.Module, ckpt: Checkpoint, hint: str) -> None:
    """Load strictly, but name every mismatched key instead of torch's wall of text."""
    from timm.models.focalnet import checkpoint_filter_fn

    state = checkpoint_filter_fn(ckpt.state, model)
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
        if ckpt.trained_as:
            hint = f"the checkpoint was trained as '{ckpt.trained_as}' (its args.model): pass --model {ckpt.trained_as}"
        raise BadInput(f"checkpoint {ckpt.path} does not fit the architecture: " + ", ".join(problems), hint=hint)
    model.load_state_dict(state, strict=True)


def _head_classes(state: dict) -> int | None:
    for key in ("head.fc.weight", "head.weight"):
        if key in state:
            return int(state[key].shape[0])
    return None


def _check_name(name: str) -> None:
    names = focalnet_names()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names + [DEFAULT_MODEL, FOCALNET], n=1)
        raise BadInput(
            f"unknown model '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""),
            hint=f"use one of: {DEFAULT_MODEL}, {FOCALNET} (with model.arch), " + ", ".join(names),
        )


@dataclass
class _Built:
    """An architecture before its weights: the module, its own data config fields, class names, arch record."""

    model: torch.nn.Module
    own_config: dict
    class_names: list[str] | None
    arch: dict
    hint: str  # what to do when a checkpoint does not fit it


def _build(name: str, arch, num_classes: int | None, ckpt: Checkpoint | None) -> _Built:
    """The architecture `name` stands for, with the head the checkpoint (or num_classes) asks for."""
    import timm
    from timm.data import resolve_model_data_config

    from edgefocal.preprocessing import from_pretrained_cfg

    if num_classes is None and ckpt is not None:
        num_classes = _head_classes(ckpt.state)
    if name == DEFAULT_MODEL:
        config = default_arch()
        return _Built(build_default_architecture(config), from_pretrained_cfg(config["pretrained_cfg"]),
                      list(config["class_names"]), config["arch"],
                      "a --checkpoint without --model is loaded into the embedded default: pass the --model it was "
                      "trained as (a timm focalnet_* name, or focalnet with model.arch)")
    if name == FOCALNET:
        from timm.models.focalnet import FocalNet

        from edgefocal.recipe import FocalNetArch

        spec = arch if isinstance(arch, FocalNetArch) else FocalNetArch.model_validate(arch or {})
        kwargs = spec.kwargs()
        if num_classes is not None and "num_classes" not in kwargs:
            kwargs["num_classes"] = num_classes
        return _Built(FocalNet(**kwargs), {}, None, {"class": "timm.models.focalnet.FocalNet", **kwargs},
                      "set model.arch to the trained model's (embed_dim, depths, focal_levels, in_chans, ...)")
    _check_name(name)
    model = timm.create_model(name, pretrained=False, **({"num_classes": num_classes} if num_classes else {}))
    return _Built(model, from_pretrained_cfg(resolve_model_data_config(model)), None,
                  {"timm_name": name, "num_classes": model.num_classes},
                  "pass the --model name the checkpoint was trained as (and --num-classes if the head differs)")


def load_model(
    name: str = DEFAULT_MODEL,
    checkpoint: Path | None = None,
    num_classes: int | None = None,
    trust_checkpoint: bool = False,
    *,
    arch=None,
    data_config: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
) -> LoadedModel:
    """Build `name` (a timm focalnet_* name, `focalnet` from `arch`, or the embedded default), load
    `checkpoint` into it, and resolve its data config: `data_config` fields first, then what the checkpoint
    says (timm train.py's args, a pretrained_cfg), then the model's own."""
    from edgefocal.preprocessing import from_pretrained_cfg, from_timm_args, resolve

    checkpoint = Path(checkpoint) if checkpoint else None
    if name == DEFAULT_MODEL and checkpoint is None:
        checkpoint = DEFAULT_DIR / "focalnet_fmnist.safetensors"
        if not checkpoint.is_file():
            raise BadInput(f"the embedded default weights {checkpoint} are missing",
                           hint="reinstall edgefocal, or train them: python -m edgefocal.default_model.train")
    ckpt = read_checkpoint(checkpoint, trust_checkpoint) if checkpoint else None
    built = _build(name, arch, num_classes, ckpt)
    if ckpt is not None:
        _fit_state_dict(built.model, ckpt, built.hint)
    model = built.model.eval()
    chans = int(model.in_chans)
    sources = [("model.data_config", data_config or {})]
    if ckpt is not None:
        sources += [("checkpoint args (timm train.py)", from_timm_args(ckpt.args, chans)),
                    ("checkpoint pretrained_cfg", from_pretrained_cfg(ckpt.pretrained_cfg))]
    sources.append((f"{name}'s pretrained_cfg", built.own_config))
    config, origin = resolve(sources, chans, f"model {name}")
    return LoadedModel(
        model=model,
        name=name,
        data_config=config,
        class_names=_class_names(class_names or built.class_names, model.num_classes, name),
        checkpoint=checkpoint,
        checkpoint_sha256=sha256_file(checkpoint) if checkpoint else None,
        arch=built.arch,
        data_config_source=origin,
    )


def _class_names(names: Sequence[str] | None, n: int, what: str) -> list[str]:
    if names is None:
        return [str(i) for i in range(n)]
    if len(names) != n:
        raise BadInput(f"{len(names)} class names were given for model {what}, which has {n} classes",
                       hint="set model.class_names to one name per output, in index order")
    return [str(c) for c in names]


def default_arch() -> dict:
    return json.loads((DEFAULT_DIR / "config.json").read_text())


def build_default_architecture(config: dict | None = None) -> torch.nn.Module:
    """The embedded default: a small FocalNet for 1×32×32 inputs, built from config.json."""
    from timm.models.focalnet import FocalNet

    config = config or default_arch()
    model = FocalNet(**config["arch"])
    model.pretrained_cfg = dict(config["pretrained_cfg"])
    return model


def arch_of(model: torch.nn.Module) -> dict | None:
    """The FocalNet keyword arguments that rebuild `model`'s layout, read from its modules (the Python API
    records them for a module it is handed); None when it is not a stock timm FocalNet layout (checked by
    building one on the meta device and comparing every parameter's shape)."""
    from timm.models.focalnet import FocalNet, NormMlpClassifierHead

    if not isinstance(model, FocalNet):
        return None
    stages = [stage.blocks for stage in model.layers]
    first = stages[0][0]
    head = model.head
    kwargs = {
        "in_chans": int(model.in_chans), "num_classes": int(model.num_classes),
        "global_pool": head.global_pool.pool_type, "embed_dim": int(model.embed_dim[0]),
        "depths": tuple(len(b) for b in stages), "mlp_ratio": first.mlp.fc1.out_channels / first.dim,
        "focal_levels": tuple(int(b[0].focal_level) for b in stages),
        "focal_windows": tuple(int(b[0].focal_window) for b in stages),
        "use_overlap_down": model.stem.proj.kernel_size != model.stem.proj.stride,
        "use_post_norm": bool(first.use_post_norm),
        "use_post_norm_in_modulation": not isinstance(first.modulation.norm, torch.nn.Identity),
        "normalize_modulator": bool(first.modulation.normalize_modulator),
        "head_hidden_size": head.pre_logits.fc.out_features if isinstance(head, NormMlpClassifierHead) else None,
        "layerscale_value": 1e-4 if not isinstance(first.ls1, torch.nn.Identity) else None,  # init only
    }
    rebuilt = FocalNet(**kwargs, drop_path_rate=0.0, device="meta").state_dict()
    actual = model.state_dict()
    if rebuilt.keys() != actual.keys() or any(rebuilt[k].shape != actual[k].shape for k in actual):
        return None
    return {"class": "timm.models.focalnet.FocalNet", **kwargs}


def from_module(model: torch.nn.Module, data_config: Mapping[str, Any] | None = None,
                class_names: Sequence[str] | None = None, name: str | None = None) -> LoadedModel:
    """An in-memory FocalNet (the Python API's `edgefocal.build(module, ...)`) as the load stage's result.
    Its data config is `data_config` over the module's own `pretrained_cfg`; a module without one (timm's
    FocalNet built directly has none) must be given `data_config`. The build works on a copy: the caller's
    module keeps its mode and device (the reference moves to the GPU where there is one)."""
    import copy

    from timm.models.focalnet import FocalNet

    from edgefocal.preprocessing import from_pretrained_cfg, resolve

    if not isinstance(model, FocalNet):
        raise BadInput(f"edgefocal builds timm FocalNet models; got a {type(model).__name__}",
                       hint="pass a timm.models.focalnet.FocalNet (timm.create_model('focalnet_...') or FocalNet(...))")
    pretrained_cfg = getattr(model, "pretrained_cfg", None) or {}
    own = from_pretrained_cfg(pretrained_cfg)
    label = name or pretrained_cfg.get("architecture") or FOCALNET
    config, origin = resolve([("data_config", data_config or {}), ("the module's pretrained_cfg", own)],
                             int(model.in_chans), f"the {type(model).__name__} module",
                             fix="pass data_config={'input_size': (C, H, W), 'mean': ..., 'std': ..., "
                                 "'interpolation': ..., 'crop_pct': ...}: the preprocessing it was trained with")
    return LoadedModel(model=copy.deepcopy(model).eval(), name=label, data_config=config,
                       class_names=_class_names(class_names, model.num_classes, label),
                       arch=arch_of(model) or {"class": type(model).__module__ + "." + type(model).__name__},
                       data_config_source=origin)


def load(spec) -> LoadedModel:
    """The load stage: the recipe's `model:` section (recipe.ModelSpec) as a FocalNet in eval mode."""
    return load_model(spec.name, spec.checkpoint, spec.num_classes, spec.trust_checkpoint, arch=spec.arch,
                      data_config=spec.data_config.model_dump(exclude_none=True), class_names=spec.class_names)
