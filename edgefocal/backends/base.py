"""The backend contract: what every runtime provides, so that the pipeline, the precision search,
`predict`, `profile` and pruning look a runtime up and call it, and never compare its name.

NNCF's algorithm/backend split, Olive's one pass signature and Polygraphy's loaders and runners, trimmed to
what edgefocal needs. A backend translates the one precision plan (edgefocal/plan.py) and decides nothing."""
from __future__ import annotations

import abc
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from edgefocal.core import Artifact, Availability, BuildContext, OpProfiler, Probe, Quantized, Runner
from edgefocal.errors import BadInput

if TYPE_CHECKING:
    from edgefocal.plan import PrecisionPlan
    from edgefocal.recipe import Recipe


class Backend(abc.ABC):
    """One runtime: can it build and run here, quantize under a plan, package, run, probe, profile."""

    name: ClassVar[str]  # "openvino": the only place a runtime's name is spelt
    precisions: ClassVar[tuple[str, ...]]  # what `--precision` it takes
    extra: ClassVar[str]  # the pip extra that installs it: pip install 'edgefocal[<extra>]'
    profiles_ops: ClassVar[bool] = False  # `op_times` and `profiler` measure on this machine

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            raise BadInput(f"target {self.name} does not support precision {precision}",
                           hint=f"use --precision {' or '.join(self.precisions)} with --target {self.name}")

    def check_recipe(self, recipe: "Recipe") -> None:
        """Refuse, before any heavy work, a recipe this backend cannot build (e.g. a missing optional
        quantizer); the default accepts every recipe."""

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Whether this machine can build and run this backend's artifacts, and the fix when not."""

    @abc.abstractmethod
    def quantize(self, ctx: BuildContext, plan: "PrecisionPlan", calibration: np.ndarray) -> Quantized:
        """The INT8 model of ctx's FP32 model with exactly the plan's parts INT8, calibrated on `calibration`
        (float32 NCHW, preprocessed)."""

    def quantized(self, ctx: BuildContext, plan: "PrecisionPlan", last: bool = False) -> Quantized:
        """`quantize` on ctx's calibration set, once per plan in a build: the search's probe and the package
        step share the model when the search keeps the preset plan (at 224² a quantization takes minutes).
        `last`: the caller is the last to need it, so the build stops holding it."""
        key = (self.name, tuple(plan.nodes(int8=False)))
        done = ctx.quantized.pop(key, None) if last else ctx.quantized.get(key)
        if done is not None:
            ctx.log(f"{self.name}: the INT8 model quantized for the search under this plan serves here too")
            return done
        started = time.perf_counter()
        ctx.log(f"{self.name}: quantizing (calibration on {0 if ctx.calibration is None else len(ctx.calibration)} "
                "images)")
        done = self.quantize(ctx, plan, ctx.calibration)
        ctx.log(f"{self.name}: quantized in {time.perf_counter() - started:.0f} s")
        if not last:
            ctx.quantized[key] = done
        return done

    @abc.abstractmethod
    def package(self, ctx: BuildContext, precision: str, quantized: Quantized | None = None) -> list[Artifact]:
        """Write the artifacts below ctx.workdir (the float baseline, then the requested precision, last);
        `quantized` is `quantize`'s model when precision is int8."""

    @abc.abstractmethod
    def runner(self, artifact: Path, precision: str, threads: int | None = None) -> Runner:
        """The runner this backend verifies `artifact` with (not loaded yet)."""

    def probe(self, ctx: BuildContext, plan: "PrecisionPlan") -> Probe | None:
        """What the mixed-precision search measures this backend with: its all-INT8 model under `plan`, able
        to run variants with parts float; None where nothing here can run it."""
        return None

    def op_times(self, artifact: Path, x: np.ndarray, threads: int | None = None) -> dict[str, float] | None:
        """Mean ms per inference of every executed op of `artifact` on batch `x`, named after the ops of the
        exported ONNX (naming.by_module maps them to torch modules); None where it cannot be profiled here."""
        return None

    def profiler(self, artifact: Path, precision: str, threads: int | None = None) -> OpProfiler | None:
        """`artifact` run as its runner runs it, with the runtime's per-op profiler on (verify/profile.py:
        `edgefocal profile`, `build --profile`); None where it cannot be profiled here."""
        return None

    def files(self, artifact: Path) -> list[Path]:
        """The files an artifact consists of (its sha256 and size cover all of them)."""
        if artifact.is_dir():
            return sorted(f for f in artifact.rglob("*") if f.is_file())
        return [artifact]

    def unlisted_entry(self, manifest: dict, artifact: Path, relative: str) -> dict | None:
        """A manifest entry for an artifact the build did not list but that belongs to it (a TensorRT engine
        built later on the device); None: it does not belong."""
        return None
