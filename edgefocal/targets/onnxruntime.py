"""ONNX Runtime target: the FP32 ONNX and the U8S8 Q/DQ INT8 ONNX (quantize/onnxruntime.py), run on ORT's CPU
provider."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgefocal.quantize import Quantized
from edgefocal.targets.base import Artifact, Availability, BuildContext, Runner, Target


class OnnxRuntimeRunner(Runner):
    def __init__(self, artifact: Path, threads: int | None = None, label: str = "ONNX Runtime CPU"):
        super().__init__(artifact)
        self.threads = threads
        self.device = label
        self.session = None

    def load(self) -> None:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.artifact), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.device = f"{self.device} ({self.threads or 'all'} threads)"

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def close(self) -> None:
        self.session = None


class OnnxRuntimeTarget(Target):
    name = "onnxruntime"
    precisions = ("fp32", "int8")
    extra = "onnxruntime"

    def availability(self) -> Availability:
        try:
            import onnxruntime as ort
        except ImportError as e:
            return Availability(False, False, f"onnxruntime does not import ({e})", "pip install onnxruntime (a core dependency of edgefocal)")
        return Availability(True, True, f"onnxruntime {ort.__version__}, providers {', '.join(ort.get_available_providers())}")

    def quantizer_input(self, ctx: BuildContext) -> Path:
        return ctx.onnx_fp32

    def package(self, ctx: BuildContext, precision: str, quantized: Quantized | None = None) -> list[Artifact]:
        self.check_precision(precision)
        import onnx
        out = ctx.workdir / "onnxruntime"
        out.mkdir(parents=True, exist_ok=True)
        fp32 = out / "model_fp32.onnx"
        shutil.copyfile(ctx.onnx_fp32, fp32)
        threads = ctx.num_threads
        artifacts = [Artifact("onnxruntime", "fp32", fp32, lambda: OnnxRuntimeRunner(fp32, threads),
                              requested=precision == "fp32")]
        if precision == "int8" and quantized is not None:
            int8 = out / "model_int8_u8s8.onnx"
            onnx.save(quantized.model, str(int8))
            artifacts.append(Artifact("onnxruntime", "int8", int8, lambda: OnnxRuntimeRunner(int8, threads),
                                      info=dict(quantized.info)))
        return artifacts
