"""OpenVINO backend: FP32 and FP16-weight IR, and INT8 IR quantized by NNCF.

This CPU runs OpenVINO in bf16 by default (AVX512-BF16): FP32 artifacts are compiled with
INFERENCE_PRECISION_HINT=f32 so they really are the FP32 baseline."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgefocal._deps import require
from edgefocal.backends.base import Backend
from edgefocal.core import PRECISIONS, Artifact, Availability, BuildContext, OpProfiler, Probe, Quantized, Runner
from edgefocal.plan import PrecisionPlan


def ov_model_from_onnx(onnx_path: Path):
    """The ov.Model of an exported FocalNet, rewritten for OpenVINO's CPU plugin: LayerNorms over the channel
    axis without the transposes around them (nchw_layernorm.py: a quarter of the INT8 latency of
    focalnet_tiny_srf) and one conv per part of the modulation's split f (conv_split.py)."""
    import tempfile

    import onnx

    from edgefocal.backends.conv_split import split_convs
    from edgefocal.backends.openvino.nchw_layernorm import layernorm_on_channels

    ov = require("openvino", "openvino")
    model = onnx.load(str(onnx_path))
    if not layernorm_on_channels(model) + split_convs(model):
        return _output_ops_named_by_node(ov.convert_model(str(onnx_path)), model)
    with tempfile.TemporaryDirectory() as tmp:  # convert_model reads ONNX from a file, not a ModelProto
        path = Path(tmp) / "rewritten.onnx"
        onnx.save(model, str(path))
        return _output_ops_named_by_node(ov.convert_model(str(path)), model)


def _output_ops_named_by_node(ov_model, onnx_model):
    """OpenVINO names the op that produces a graph output after the output (`logits`), not after its ONNX
    node (`head.fc/Gemm`), so the plan's float head would be quantized wherever that op is the head's own
    MatMul (a head without bias, or one whose zero bias the converter folds away). Give such an op its
    node's name back; the output keeps its tensor name, which is what runners and reports read."""
    node_of_output = {out: node.name for node in onnx_model.graph.node for out in node.output if node.name}
    for result in ov_model.get_results():
        op = result.input_value(0).get_node()
        if op.get_friendly_name() in node_of_output:
            op.set_friendly_name(node_of_output[op.get_friendly_name()])
    return ov_model


class OpenVINORunner(Runner):
    """Compiles one static-shape model per batch size: the CPU plugin picks faster kernels for a static
    batch than for a dynamic one."""

    def __init__(self, artifact: Path, threads: int | None = None, precision_hint: str | None = None):
        super().__init__(artifact)
        self.threads = threads
        self.precision_hint = precision_hint
        self.requests: dict[int, object] = {}

    def load(self) -> None:
        ov = require("openvino", "openvino")
        self.core = ov.Core()
        self.config = {"PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            self.config["INFERENCE_NUM_THREADS"] = self.threads
        if self.precision_hint:
            self.config["INFERENCE_PRECISION_HINT"] = self.precision_hint
        self.model = self.core.read_model(str(self.artifact))
        hint = self._request(1)[1]
        self.device = f"OpenVINO CPU ({self.threads or 'all'} threads, precision {hint})"

    def _request(self, batch: int):
        if batch not in self.requests:
            model = self.model.clone()
            shape = [batch, *list(model.inputs[0].get_partial_shape())[1:]]
            model.reshape({model.inputs[0]: shape})
            compiled = self.core.compile_model(model, "CPU", self.config)
            self.requests[batch] = (compiled.create_infer_request(), compiled.get_property("INFERENCE_PRECISION_HINT"))
        return self.requests[batch]

    def infer(self, x: np.ndarray) -> np.ndarray:
        request = self._request(x.shape[0])[0]
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    def close(self) -> None:
        self.requests = {}


class OpenVINOBackend(Backend):
    name = "openvino"
    precisions = PRECISIONS
    extra = "openvino"
    profiles_ops = True

    def availability(self) -> Availability:
        try:
            import openvino as ov
        except ImportError as e:
            return Availability(False, False, f"openvino does not import ({e})", "pip install 'edgefocal[openvino]'")
        devices = ov.Core().available_devices
        return Availability(True, bool(devices), f"openvino {ov.__version__}, devices {', '.join(devices)}")

    def _float_model(self, ctx: BuildContext):
        """The ONNX converted once per build (the FP32 IR is saved from the same ov.Model)."""
        cached = getattr(self, "_converted", None)
        if cached is None or cached[0] != ctx.onnx_fp32:
            self._converted = cached = (ctx.onnx_fp32, ov_model_from_onnx(ctx.onnx_fp32))
        return cached[1]

    def quantize(self, ctx: BuildContext, plan: PrecisionPlan, calibration: np.ndarray) -> Quantized:
        from edgefocal.backends.openvino.quantize import quantize

        return Quantized(quantize(self._float_model(ctx), plan, calibration, ctx.recipe.quantize))

    def probe(self, ctx: BuildContext, plan: PrecisionPlan) -> Probe:
        from edgefocal.backends.openvino.surgery import openvino_probe

        int8 = self.quantized(ctx, plan).model
        return openvino_probe(self.name, int8, self._float_model(ctx), ctx.num_threads)

    def runner(self, artifact: Path, precision: str, threads: int | None = None) -> Runner:
        return OpenVINORunner(artifact, threads, "f32" if precision == "fp32" else None)

    def op_times(self, artifact: Path, x: np.ndarray, threads: int | None = None) -> dict[str, float]:
        from edgefocal.backends.openvino.profile import openvino_op_times

        ov = require("openvino", "openvino")
        return openvino_op_times(ov.Core().read_model(str(artifact)), x, threads)

    def profiler(self, artifact: Path, precision: str, threads: int | None = None) -> OpProfiler:
        from edgefocal.backends.openvino.profile import OpenVINOProfiler

        return OpenVINOProfiler(artifact, threads, "f32" if precision == "fp32" else None)

    def files(self, artifact: Path) -> list[Path]:
        return [artifact, artifact.with_suffix(".bin")] if artifact.with_suffix(".bin").exists() else [artifact]

    def package(self, ctx: BuildContext, precision: str, quantized: Quantized | None = None) -> list[Artifact]:
        self.check_precision(precision)
        ov = require("openvino", "openvino")
        out = ctx.workdir / "openvino"
        out.mkdir(parents=True, exist_ok=True)
        model = self._float_model(ctx)
        threads = ctx.num_threads
        fp32 = out / "model_fp32.xml"
        _save(ov, model, fp32)
        artifacts = [Artifact(self.name, "fp32", fp32, lambda: self.runner(fp32, "fp32", threads),
                              requested=precision == "fp32")]
        if precision == "fp16":
            fp16 = out / "model_fp16.xml"
            _save(ov, model, fp16, compress_to_fp16=True)
            artifacts.append(Artifact(self.name, "fp16", fp16, lambda: self.runner(fp16, "fp16", threads),
                                      variant="FP16 weights, device-default compute"))
        elif precision == "int8" and quantized is not None:
            int8 = out / "model_int8.xml"
            _save(ov, quantized.model, int8)
            artifacts.append(Artifact(self.name, "int8", int8, lambda: self.runner(int8, "int8", threads),
                                      info=dict(quantized.info)))
        return artifacts


_AUTO_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*_\d+")  # `Constant_263311`: OpenVINO's process-wide counter


def _save(ov, model, path: Path, compress_to_fp16: bool = False) -> None:
    """ov.save_model, with the op names OpenVINO generated from its process-wide counter renamed by their
    position in the graph, so that the same build run twice in one process writes the same bytes."""
    model = model.clone()
    for i, op in enumerate(model.get_ordered_ops()):
        if _AUTO_NAME.fullmatch(name := op.get_friendly_name()):
            op.set_friendly_name(f"{name.rsplit('_', 1)[0]}_{i}")
    ov.save_model(model, str(path), compress_to_fp16=compress_to_fp16)
