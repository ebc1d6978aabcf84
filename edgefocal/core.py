"""The typed hand-offs between stages, below every other layer: a runner, a build context, a quantized
model, an artifact, a precision-search probe. Backends produce them, the precision search, verification and
the pipeline consume them; this module imports nothing of edgefocal's but the plan's type.

One runner shape for every backend (Polygraphy's BaseRunner, trimmed): the torch reference is a runner
too, so verification compares runners and never special-cases a backend."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

    from edgefocal.recipe import Recipe


class Runner(abc.ABC):
    """Loads one artifact and maps a float32 NCHW batch to float32 logits."""

    #: where it runs, for the report ("cpu", "cuda:0 (NVIDIA H100)", "ORT CPUExecutionProvider")
    device: str = "cpu"

    def __init__(self, artifact: Path | None = None):
        self.artifact = artifact

    @abc.abstractmethod
    def load(self) -> None:
        """Heavy imports, sessions, compiled models, GPU buffers."""

    @abc.abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits for one batch; must block until the result is ready (latency is timed around it)."""

    def close(self) -> None:
        pass

    def timed_infer(self, x: np.ndarray, repeats: int) -> list[float]:
        """Latencies in ms of `repeats` calls on the same batch. Runners with device timers (CUDA events)
        override this; the default is wall-clock around infer()."""
        import time

        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.infer(x)
            out.append((time.perf_counter() - t) * 1e3)
        return out

    def __enter__(self) -> "Runner":
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Availability:
    """Whether this machine can build and run a backend's artifacts, and if not, why and what to install."""

    can_build: bool
    can_run: bool
    detail: str = ""
    fix: str = ""


@dataclass
class BuildContext:
    """Everything a backend needs to quantize and package; created once per `build`."""

    recipe: "Recipe"
    model: "torch.nn.Module"  # FP32, eval mode, after pruning
    data_config: dict
    class_names: list[str]
    calibration: np.ndarray  # float32 NCHW, preprocessed, the recipe's calibration subset
    onnx_fp32: Path  # the model exported once to ONNX (opset ≥17, dynamic batch)
    workdir: Path  # the staging output directory; artifacts go below it
    num_threads: int = 2
    log: Callable[[str], None] = print
    sparsity_2of4: bool = False  # the pruning step left 2:4-sparse weights (TensorRT's sparse kernels)


@dataclass
class Quantized:
    """An INT8 model in the backend's own form (an ov.Model, an onnx.ModelProto, an MLModel), and what the
    report says about it."""

    model: Any
    info: dict = field(default_factory=dict)


@dataclass
class Probe:
    """One backend's all-INT8 model, able to run variants with some parts float and to profile them: what
    the mixed-precision search (precision/search.py) measures with."""

    target: str
    logits: Callable[[frozenset, np.ndarray], np.ndarray]  # (float node names, images) -> logits
    module_ms: Callable[[bool, np.ndarray], dict[str, float]]  # (int8?, sample) -> ms per module at batch 1


@dataclass
class Artifact:
    """One built file or directory and how to run it."""

    target: str
    precision: str
    path: Path  # inside BuildContext.workdir
    make_runner: Callable[[], Runner] | None  # None: cannot run on this machine (see `skipped`)
    info: dict[str, Any] = field(default_factory=dict)  # extra report fields (the backend's facts)
    requested: bool = True  # False for baselines built alongside (e.g. the FP32 IR next to INT8)
    skipped: str | None = None  # why it was not run/verified here
    variant: str | None = None  # what tells two artifacts of one target and precision apart ("engine")
    required: bool = False  # a skipped required artifact fails the build (tensorrt.require_engine)
    no_latency: str | None = None  # why its latency is not measured here (Core ML off macOS)
    proxy_for: str | None = None  # the artifact this one's runner stands in for ("TensorRT engine")

    @property
    def label(self) -> str:
        return f"{self.target} {self.precision}" + (f" ({self.variant})" if self.variant else "")


def jsonable(obj):
    """Plain JSON types: str keys, lists, str paths, Python numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj
