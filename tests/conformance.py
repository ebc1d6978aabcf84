"""One conformance template every backend passes through the public contract only (NNCF's cross-backend test
templates): registry lookup, availability, precision checks, quantize + package, FP32 and INT8 runners against
torch FP32, the precision-search probe and per-op profiling.

A backend's test module subclasses `BackendConformance` once and sets `backend_name`; where some of its
artifacts cannot run on this machine (a TensorRT engine without TensorRT) it sets `skip_reason`, and the
template runs what does run (the Q/DQ ONNX through its proxy runner) and reports the rest as skipped.
Imported by plain name (pyproject's pytest `pythonpath` has tests/, not tests/backends/, whose runtime-named
folders would shadow the runtimes): `from conformance import BackendConformance`.
The class name does not start with `Test`, so pytest collects only the subclasses."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from roundtrip import make_context

from edgefocal.backends import Backend, get_backend, names
from edgefocal.core import Artifact, Availability, ExecutedOp, Probe, Quantized
from edgefocal.errors import BadInput


def _top1(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits).argmax(axis=1)


class BackendConformance:
    """The contract every backend keeps; subclass once per backend with `backend_name` set."""

    backend_name: ClassVar[str]
    #: why some of this backend's artifacts cannot run (or be timed) here; None: everything it packages must
    skip_reason: ClassVar[str | None] = None
    calibration_size: ClassVar[int] = 64  # calibration images for quantize (the trained default, 1×32×32)
    fp32_images: ClassVar[int] = 8  # images the FP32 artifact is compared with torch on
    int8_images: ClassVar[int] = 64  # real Fashion-MNIST test images the INT8 artifact's top-1 is checked on
    fp32_atol: ClassVar[float] = 1e-3  # max |logit - torch logit| for the FP32 artifact
    min_int8_agreement: ClassVar[float] = 0.9  # INT8 top-1 == torch FP32 top-1 on this share of int8_images
    threads: ClassVar[int] = 2

    # ------------------------------------------------------------ fixtures (one build per backend class)

    @pytest.fixture(scope="class")
    def backend(self) -> Backend:
        return get_backend(self.backend_name)

    @pytest.fixture(scope="class")
    def ctx(self, default_model, fmnist_calibration, tmp_path_factory):
        """The trained default (embed_dim 32, 1×32×32) exported once, as the pipeline hands it to a backend."""
        ctx = make_context(default_model.model, default_model.data_config,
                           fmnist_calibration[:self.calibration_size],
                           tmp_path_factory.mktemp(f"conformance-{self.backend_name}"),
                           class_names=default_model.class_names)
        ctx.num_threads = self.threads
        ctx.recipe = ctx.recipe.model_copy(update={"precision": "int8", "targets": [self.backend_name]})
        return ctx

    @pytest.fixture(scope="class")
    def plan(self, ctx):
        import onnx

        from edgefocal.precision import plan_precision

        spec = ctx.recipe.quantize
        return plan_precision(onnx.load(str(ctx.onnx_fp32)), spec.preset, spec.float_modules)

    @pytest.fixture(scope="class")
    def quantized(self, backend, ctx, plan) -> Quantized:
        return backend.quantize(ctx, plan, ctx.calibration)

    @pytest.fixture(scope="class")
    def artifacts(self, backend, ctx, quantized) -> list[Artifact]:
        """An int8 package; plus an fp32 package where the int8 one carries no FP32 baseline (TensorRT)."""
        arts = backend.package(ctx, "int8", quantized)
        if not any(a.precision == "fp32" for a in arts):
            arts = backend.package(ctx, "fp32") + arts
        return arts

    @pytest.fixture(scope="class")
    def fp32_artifact(self, artifacts) -> Artifact:
        return next(a for a in artifacts if a.precision == "fp32" and a.path.exists() and not a.skipped)

    @pytest.fixture(scope="class")
    def int8_artifacts(self, artifacts) -> list[Artifact]:
        return [a for a in artifacts if a.precision == "int8" and a.make_runner is not None and not a.skipped]

    @pytest.fixture(scope="class")
    def eval_batch(self, fmnist_eval, default_model):
        """(images, torch FP32 logits) of a small real-data batch."""
        images = np.ascontiguousarray(fmnist_eval[0][:self.int8_images])
        with torch.inference_mode():
            reference = default_model.model(torch.from_numpy(images)).numpy()
        return images, reference

    # ------------------------------------------------------------ the contract

    def test_name_is_registered_and_looked_up(self, backend):
        assert self.backend_name in names()
        assert isinstance(backend, Backend) and backend.name == self.backend_name
        assert type(get_backend(self.backend_name)) is type(backend)
        assert backend.precisions and all(p in ("fp32", "fp16", "int8") for p in backend.precisions)

    def test_availability_says_why_and_how_to_fix(self, backend):
        avail = backend.availability()
        assert isinstance(avail, Availability)
        assert avail.detail.strip(), "availability() must say what it found"
        if not (avail.can_build and avail.can_run):
            assert avail.fix.strip(), f"{self.backend_name} cannot build or run here but gives no fix"

    def test_check_precision_refuses_what_it_does_not_take(self, backend):
        for precision in backend.precisions:
            backend.check_precision(precision)
        for precision in sorted({"fp32", "fp16", "int8", "int4"} - set(backend.precisions)):
            with pytest.raises(BadInput, match=f"target {self.backend_name} .*{precision}") as e:
                backend.check_precision(precision)
            assert e.value.hint

    def test_quantize_and_package_write_below_the_workdir(self, backend, ctx, quantized, artifacts):
        assert isinstance(quantized, Quantized) and quantized.model is not None and isinstance(quantized.info, dict)
        int8 = [a for a in artifacts if a.precision == "int8"]
        assert int8 and int8[-1].requested, "the requested precision's artifact comes last and is requested"
        workdir = ctx.workdir.resolve()
        for art in artifacts:
            assert art.target == self.backend_name and art.precision in backend.precisions
            assert art.path.resolve().is_relative_to(workdir), art.path
            if art.skipped:  # not built here (a TensorRT engine without TensorRT): it says why
                assert art.make_runner is None or not art.path.exists()
                continue
            files = backend.files(art.path)
            assert files and all(Path(f).is_file() for f in files), (art.label, files)
            assert all(Path(f).resolve().is_relative_to(workdir) for f in files)

    def test_what_cannot_run_here_says_why(self, artifacts):
        """Artifacts that cannot be run here carry `skipped`, those whose latency cannot be measured here carry
        `no_latency` (Core ML off macOS); the subclass declares either in `skip_reason`, and this test reports
        them as a skip."""
        cannot = [a for a in artifacts if a.make_runner is None or a.skipped]
        for art in cannot:
            assert art.skipped and art.skipped.strip(), f"{art.label} has no runner and does not say why"
        untimed = [a for a in artifacts if a.no_latency is not None and a not in cannot]
        for art in untimed:
            assert art.no_latency.strip(), f"{art.label} is not timed here and does not say why"
        if cannot or untimed:
            labels = ", ".join(a.label for a in cannot + untimed)
            assert self.skip_reason, f"{labels} cannot fully run here: declare skip_reason on the " \
                                     f"{self.backend_name} conformance class"
            pytest.skip(f"{self.skip_reason} ("
                        + "; ".join([f"{a.label}: {a.skipped}" for a in cannot]
                                    + [f"{a.label}: {a.no_latency}" for a in untimed]) + ")")

    def test_fp32_runner_matches_torch(self, backend, fp32_artifact, eval_batch):
        images, reference = eval_batch[0][:self.fp32_images], eval_batch[1][:self.fp32_images]
        with backend.runner(fp32_artifact.path, "fp32", self.threads) as runner:
            logits = np.asarray(runner.infer(images))
        assert logits.shape == reference.shape
        np.testing.assert_array_equal(_top1(logits), _top1(reference))
        assert np.abs(logits - reference).max() <= self.fp32_atol

    def test_int8_runner_agrees_with_fp32(self, backend, int8_artifacts, eval_batch):
        images, reference = eval_batch
        assert int8_artifacts, f"no {self.backend_name} int8 artifact runs here"
        for art in int8_artifacts:
            with backend.runner(art.path, "int8", self.threads) as runner:
                logits = np.asarray(runner.infer(images))
            assert logits.shape == reference.shape and np.isfinite(logits).all(), art.label
            agreement = float((_top1(logits) == _top1(reference)).mean())
            assert agreement >= self.min_int8_agreement, (art.label, agreement)

    def test_probe_runs_the_all_int8_model(self, backend, ctx, plan, eval_batch):
        probe = backend.probe(ctx, plan)
        if probe is None:
            return
        # the target's name, and how a runtime other than the target's own measures it: "coreml (numpy ...)"
        assert isinstance(probe, Probe) and probe.target.split(" (")[0] == self.backend_name
        images = eval_batch[0][:4]
        logits = np.asarray(probe.logits(frozenset(), images))
        assert logits.shape == (4, eval_batch[1].shape[1]) and np.isfinite(logits).all()

    def test_op_times(self, backend, fp32_artifact, eval_batch):
        times = backend.op_times(fp32_artifact.path, eval_batch[0][:1], self.threads)
        if backend.profiles_ops:
            assert isinstance(times, dict) and times, f"{self.backend_name} profiles ops but measured none"
        if times is not None:
            assert times and all(isinstance(k, str) and float(v) >= 0 for k, v in times.items())

    def test_profiler(self, backend, fp32_artifact, eval_batch):
        """A backend that profiles gives a profiler that runs as a runner and lists executed ops; one that does
        not gives None (`edgefocal profile` refuses its artifacts in one line)."""
        profiler = backend.profiler(fp32_artifact.path, "fp32", self.threads)
        assert (profiler is not None) == backend.profiles_ops
        if profiler is None:
            return
        x = eval_batch[0][:1]
        with profiler:
            logits = np.asarray(profiler.infer(x))
            ops = profiler.ops()
        assert logits.shape == (1, eval_batch[1].shape[1]) and len(profiler.wall_ms) == 1
        assert ops and sum(op.ms for op in ops) > 0 and all(isinstance(op, ExecutedOp) for op in ops)
