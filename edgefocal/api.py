"""The Python API: `edgefocal.build(model, calibration=..., eval=..., targets=[...])`, for scripts and notebooks
that already hold a model and data in memory (the way `nncf.quantize(model, dataset)` and Ultralytics'
`model.export(format=...)` are called).

It is the CLI's build, not a second one: the arguments become a recipe (validated like a YAML file), the
module and the arrays become the load and data stages' results, and `pipeline.build` runs the same stages and
writes the same outputs. Gates do not raise here; `result.raise_for_gates()` does, when a script wants the
CLI's behaviour."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from edgefocal import pipeline
from edgefocal.errors import BadInput

if TYPE_CHECKING:
    import torch

    from edgefocal.data import Dataset

#: preprocessed float32 NCHW images, an ImageFolder directory, or an iterable of float32 (N)CHW arrays
Calibration = Union[np.ndarray, str, os.PathLike, Iterable[np.ndarray]]
#: (images, labels): float32 NCHW and integer class indices, or an ImageFolder directory
Evaluation = Union[tuple[np.ndarray, np.ndarray], str, os.PathLike]


@dataclass
class BuildResult(pipeline.BuildResult):
    """What a build produced.

    `output` is the output directory (artifacts, report.json, report.md, report.html, manifest.json);
    `report` the dict in report.json, as read back from it (`report["rows"]`: one row per runner, the FP32
    reference first, with top-1, agreement and `latency_ms` keyed by batch size as a string); `gates` the gate
    results; `passed` whether every gate let it through."""

    def raise_for_gates(self) -> None:
        """Raise `edgefocal.errors.GateFailed` naming every failed gate (the CLI's exit code 1); do nothing
        when all passed."""
        pipeline.raise_on_failed_gates(self)


def build(
    model: "torch.nn.Module | str",
    *,
    calibration: Calibration | None = None,
    eval: Evaluation | None = None,  # noqa: A002 - the issue's and the recipe's name for the eval set
    targets: Sequence[str] | str = ("auto",),
    precision: str = "int8",
    output: str | os.PathLike | None = None,
    recipe: str | os.PathLike | None = None,
    data_config: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    checkpoint: str | os.PathLike | None = None,
    console: Any = None,
    **overrides: Any,
) -> BuildResult:
    """Build, verify and gate edge artifacts of a FocalNet; the same stages and outputs as `edgefocal build`.

    Args:
        model: a timm FocalNet module (`timm.create_model("focalnet_tiny_srf")`, or `FocalNet(...)` of any
            size), or a model name as the recipe takes it (a timm focalnet_* name, "edgefocal-fmnist").
            A module is copied, never changed.
        calibration: preprocessed float32 NCHW images, an ImageFolder directory (one sub-folder per class),
            or an iterable of float32 arrays; the recipe's `calibration.size` (300; `**{"calibration.size": N}`)
            images are drawn from it, class-balanced where it has labels. None: the recipe's calibration set.
        eval: `(images, labels)` (float32 NCHW, integer class indices) or an ImageFolder directory; every
            image is evaluated unless `**{"eval.size": N}` asks for a class-balanced subset. None: the
            recipe's eval set.
        targets: a backend name (`edgefocal.backends.names()`: the built-in runtimes and any registered with
            `edgefocal.backends.register`) or "auto", or a list of them.
        precision: one of `edgefocal.core.PRECISIONS` ("fp32", "fp16", "int8").
        output: the output directory (replaced atomically); None: the recipe's.
        recipe: a YAML recipe whose fields the other arguments override; None: the built-in defaults.
        data_config: preprocessing (input_size, mean, std, interpolation, crop_pct, crop_mode). Required for
            a module without a `pretrained_cfg` (a `FocalNet(...)` built directly); it overrides the model's.
        class_names: one name per output class, recorded in the manifest (`edgefocal predict` prints them).
        checkpoint: weights for a model given by name.
        console: a `rich.console.Console` for progress and the result table; None: quiet.
        **overrides: recipe fields, as sections (`gates={"min_agreement": 0.99}`, `bench={"batch_sizes": [1]}`)
            or dotted names (`**{"quantize.preset": "all"}`); unknown fields are errors, as in a recipe file.

    Returns:
        BuildResult with `.report`, `.gates`, `.passed`, `.output` and `.raise_for_gates()`.

    Raises:
        edgefocal.errors.EdgefocalError (BadInput, MissingDependency) for inputs that cannot be used;
        never for a failed gate.
    """
    from edgefocal.data import load_data
    from edgefocal.progress import Progress
    from edgefocal.recipe import load_recipe

    fields = _recipe_fields(model, targets, precision, output, data_config, class_names, checkpoint, overrides)
    calib_set, fields = _source("calibration", calibration, fields)
    eval_set, fields = _source("eval", eval, fields)
    rec = load_recipe(Path(recipe) if recipe is not None else None, fields)
    pipeline.prepare(rec)  # unknown or unavailable targets fail before any data is read
    loaded = _load(model, rec, data_config, class_names)
    if not isinstance(model, str):
        rec = rec.model_copy(update={"model": _spec_of(loaded)})  # the manifest's recipe says what was built
    data = load_data(rec, loaded.data_config, loaded.model.num_classes, Progress(console),
                     calibration=calib_set, evaluation=eval_set)
    result = pipeline.build(rec, console, model=loaded, data=data)
    written = json.loads((result.output / "report.json").read_text())  # the file's dict: str keys, plain types
    return BuildResult(result.output, written, result.gates)


def _recipe_fields(model, targets, precision, output, data_config, class_names, checkpoint,
                   overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as dotted recipe overrides (sections flattened, so they merge with a recipe file's)."""
    fields = _flatten(overrides)
    fields["targets"] = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
    fields["precision"] = precision
    if output is not None:
        fields["output"] = str(output)
    if isinstance(model, str):
        fields["model.name"] = model
        if checkpoint is not None:
            fields["model.checkpoint"] = str(checkpoint)
        if data_config is not None:
            fields["model.data_config"] = dict(data_config)
        if class_names is not None:
            fields["model.class_names"] = list(class_names)
    elif checkpoint is not None:
        raise BadInput("checkpoint= goes with a model name; a module is built with its weights already in it",
                       hint="load the weights into the module (model.load_state_dict) or pass the model's name")
    return fields


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _source(what: str, value, fields: dict[str, Any]) -> tuple["Dataset | None", dict[str, Any]]:
    """An ImageFolder path becomes recipe fields (the recipe's loader reads it); arrays become a Dataset."""
    from edgefocal.data import array_dataset

    if value is None:
        return None, fields
    if isinstance(value, (str, os.PathLike)):
        return None, {**fields, f"{what}.source": "imagefolder", f"{what}.path": str(value)}
    if what == "eval":
        if not (isinstance(value, (tuple, list)) and len(value) == 2):
            raise BadInput(f"eval is a {type(value).__name__}, not (images, labels) or an ImageFolder path",
                           hint="pass eval=(x, y) with x float32 NCHW and y integer labels, or eval='DIR'")
        return array_dataset("eval", value[0], value[1]), fields
    if isinstance(value, np.ndarray):
        return array_dataset("calibration", value), fields
    if isinstance(value, Iterable):
        batches = [np.asarray(b) for b in value]
        if not batches:
            raise BadInput("the calibration iterable yielded no arrays", hint="yield float32 (N)CHW arrays")
        return array_dataset("calibration", np.concatenate([b[None] if b.ndim == 3 else b for b in batches])), fields
    raise BadInput(f"calibration is a {type(value).__name__}",
                   hint="pass a float32 NCHW array, an iterable of arrays, or an ImageFolder path")


def _load(model, rec, data_config, class_names):
    from edgefocal import models

    if isinstance(model, str):
        return models.load(rec.model)
    return models.from_module(model, data_config, class_names)


def _spec_of(loaded) -> Any:
    """The recipe's model section for an in-memory module: `focalnet` with the arch read back from it (so the
    recipe in manifest.json rebuilds the architecture), or, for a layout arch_of cannot read, its class."""
    from edgefocal.recipe import ModelSpec

    arch = {k: v for k, v in loaded.arch.items() if k != "class"}
    common = {"data_config": dict(loaded.data_config), "class_names": list(loaded.class_names)}
    if len(arch):
        return ModelSpec.model_validate({"name": "focalnet", "arch": arch, **common})
    return ModelSpec.model_validate({"name": f"module:{loaded.arch.get('class', 'unknown')}", **common})
