"""What every target provides: a builder that writes artifacts, and a runner that executes them.

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

    from edgefocal.quantize import Quantized
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
    """Whether this machine can build and run a target, and if not, why and what to install."""

    can_build: bool
    can_run: bool
    detail: str = ""
    fix: str = ""


@dataclass
class BuildContext:
    """Everything a target needs to build its artifacts; created once per `build`."""

    recipe: "Recipe"
    model: "torch.nn.Module"  # FP32, eval mode, after pruning
    data_config: dict
    class_names: list[str]
    calibration: np.ndarray  # float32 NCHW, preprocessed, the recipe's calibration subset
    onnx_fp32: Path  # the model exported once to ONNX (opset ≥17, dynamic batch)
    workdir: Path  # the staging output directory; artifacts go below it
    num_threads: int = 2
    log: Callable[[str], None] = print
    #: held-out (images, FP32 logits) for accuracy-controlled quantization, disjoint from calibration and eval
    validation: tuple[np.ndarray, np.ndarray] | None = None
    sparsity_2of4: bool = False  # the pruning step left 2:4-sparse weights (TensorRT's sparse kernels)


@dataclass
class Artifact:
    """One built file or directory and how to run it."""

    target: str
    precision: str
    path: Path  # inside BuildContext.workdir
    make_runner: Callable[[], Runner] | None  # None: cannot run on this machine (see `skipped`)
    info: dict[str, Any] = field(default_factory=dict)  # extra report fields
    requested: bool = True  # False for baselines built alongside (e.g. the FP32 IR next to INT8)
    skipped: str | None = None  # why it was not run/verified here

    @property
    def label(self) -> str:
        return f"{self.target} {self.precision}" + (f" ({self.info['variant']})" if "variant" in self.info else "")


class Target(abc.ABC):
    """Converts, saves and runs; never decides precision (the quantize stage hands it INT8 models)."""

    name: str
    precisions: tuple[str, ...]
    extra: str  # the pip extra that installs its backend

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            from edgefocal.errors import BadInput

            raise BadInput(f"target {self.name} does not support precision {precision}",
                           hint=f"use --precision {' or '.join(self.precisions)} with --target {self.name}")

    @abc.abstractmethod
    def availability(self) -> Availability: ...

    @abc.abstractmethod
    def quantizer_input(self, ctx: BuildContext) -> Any:
        """The float model this target's quantizer takes (an ov.Model, an ONNX path, a Core ML program)."""

    @abc.abstractmethod
    def package(self, ctx: BuildContext, precision: str, quantized: "Quantized | None" = None) -> list[Artifact]:
        """Write the artifacts below ctx.workdir (the float baseline, then the requested precision, last);
        `quantized` is the quantize stage's INT8 model when precision is int8."""
