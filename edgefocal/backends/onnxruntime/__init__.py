"""ONNX Runtime backend: the FP32 ONNX and the U8S8 Q/DQ INT8 ONNX (backends/onnxruntime/quantize.py: its 1×1
convs as MatMuls that ORT runs with uint8 inputs and float outputs), run on ORT's CPU provider."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefocal.backends.base import Backend
from edgefocal.core import Artifact, Availability, BuildContext, OpProfiler, Probe, Quantized, Runner
from edgefocal.plan import PrecisionPlan


def session_options(threads: int | None = None):
    """How edgefocal runs an ONNX file on the CPU: all graph optimizations, `threads` intra-op threads and one
    inter-op thread; the verifying runner and the profiler share it, so the profile is of what was verified."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


class OnnxRuntimeRunner(Runner):
    def __init__(self, artifact: Path, threads: int | None = None, label: str = "ONNX Runtime CPU"):
        super().__init__(artifact)
        self.threads = threads
        self.label = label
        self.device = label
        self.session = None

    def load(self) -> None:
        import onnxruntime as ort
        self.session = ort.InferenceSession(str(self.artifact), session_options(self.threads),
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.device = f"{self.label} ({self.threads or 'all'} threads)"  # a reload (verify/compare.py) says it once

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def close(self) -> None:
        self.session = None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = ("fp32", "int8")
    extra = "onnxruntime"
    profiles_ops = True

    def availability(self) -> Availability:
        try:
            import onnxruntime as ort
        except ImportError as e:
            return Availability(False, False, f"onnxruntime does not import ({e})", "pip install onnxruntime (a core dependency of edgefocal)")
        return Availability(True, True, f"onnxruntime {ort.__version__}, providers {', '.join(ort.get_available_providers())}")

    def _float_model(self, ctx: BuildContext):
        """The export rewritten for ORT's INT8 (quantize.float_model), once per build: the search's surgery
        takes float weights from the model that was quantized."""
        from edgefocal.backends.onnxruntime.quantize import float_model

        cached = getattr(self, "_rewritten", None)
        if cached is None or cached[0] != ctx.onnx_fp32:
            self._rewritten = cached = (ctx.onnx_fp32, float_model(ctx.onnx_fp32))
        return cached[1]

    def quantize(self, ctx: BuildContext, plan: PrecisionPlan, calibration: np.ndarray) -> Quantized:
        from edgefocal.backends.onnxruntime.quantize import quantize

        return Quantized(quantize(self._float_model(ctx), plan, calibration))

    def probe(self, ctx: BuildContext, plan: PrecisionPlan) -> Probe:
        from edgefocal.backends.onnxruntime.surgery import onnx_probe

        return onnx_probe(self.name, self.quantized(ctx, plan).model, self._float_model(ctx), ctx.num_threads)

    def runner(self, artifact: Path, precision: str, threads: int | None = None) -> Runner:
        return OnnxRuntimeRunner(artifact, threads)

    def op_times(self, artifact: Path, x: np.ndarray, threads: int | None = None) -> dict[str, float]:
        from edgefocal.backends.onnxruntime.profile import onnxruntime_op_times

        return onnxruntime_op_times(artifact, x, threads)

    def profiler(self, artifact: Path, precision: str, threads: int | None = None) -> OpProfiler:
        from edgefocal.backends.onnxruntime.profile import OnnxRuntimeProfiler

        return OnnxRuntimeProfiler(artifact, threads)

    def package(self, ctx: BuildContext, precision: str, quantized: Quantized | None = None) -> list[Artifact]:
        self.check_precision(precision)
        import onnx

        from edgefocal.backends.onnxruntime.fusions import fuse_gelu
        out = ctx.workdir / "onnxruntime"
        out.mkdir(parents=True, exist_ok=True)
        fp32 = out / "model_fp32.onnx"
        onnx.save(fuse_gelu(onnx.load(str(ctx.onnx_fp32))), str(fp32))
        threads = ctx.num_threads
        artifacts = [Artifact(self.name, "fp32", fp32, lambda: self.runner(fp32, "fp32", threads),
                              requested=precision == "fp32")]
        if precision == "int8" and quantized is not None:
            int8 = out / "model_int8_u8s8.onnx"
            # fused here, not in quantize(): the search's surgery swaps nodes between this model and the export
            onnx.save(fuse_gelu(onnx.ModelProto.FromString(quantized.model.SerializeToString())), str(int8))
            artifacts.append(Artifact(self.name, "int8", int8, lambda: self.runner(int8, "int8", threads),
                                      variant="U8S8 Q/DQ", info=dict(quantized.info)))
        return artifacts
