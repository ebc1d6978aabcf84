"""INT8 Q/DQ ONNX for TensorRT from NVIDIA Model Optimizer's ONNX PTQ (`tensorrt.qdq_producer: modelopt`).

ModelOpt is the Q/DQ producer NVIDIA documents for TensorRT; edgefocal's own (backends/tensorrt/qdq.py, NNCF plus
hand-placed fusion pairs) is the default. Having both lets a user check edgefocal's placement against
NVIDIA's on the same model, plan and calibration set, through the same conformance check and verification.

What is edgefocal's here and what is ModelOpt's:
- Precision stays the plan's (precision/policy.py): every node the plan does not make INT8 — its float parts
  and the nodes it gives no role, such as the `ctx_all +=` accumulation Adds ModelOpt would otherwise
  quantize — goes to `nodes_to_exclude` (as anchored, escaped regexes: ModelOpt matches them with
  `re.match`, so `.../Add` alone would also exclude `.../Add_1`). Inside that, placement is ModelOpt's
  (which inputs of an INT8 Add or LayerNorm get Q/DQ, its Conv→LayerNorm pairs); `outside_plan` then
  checks that no float node reads a DequantizeLinear.
- Calibration runs on the CPU (`calibration_eps=["cpu"]`) with `max` (amax/127): measured on a FocalNet
  this project never trained, `max` reached 99.25 % agreement with FP32 in 9 s of calibration, the default
  `entropy` 98.91 % in 525 s (shared/README.md).
- The float parts are FP32 (`high_precision_dtype="fp32"`) because this file is also the one ONNX Runtime
  runs as the engine's proxy; the engine path converts it to FP16 for a strongly typed network the same
  way as edgefocal's own Q/DQ ONNX (backends/tensorrt/strong_typing.py), so both producers reach TensorRT
  through one conversion, checked on the converted file. ModelOpt's own FP16 output is conformant too
  (tests/backends/tensorrt/test_modelopt_qdq.py); `high_precision_dtype("tensorrt")` names it.

ModelOpt's `[onnx]` extra pulls onnxruntime-gpu and cupy and pins onnx 1.21; `edgefocal[modelopt]` installs
only the pure-Python pieces its ONNX PTQ imports (pyproject.toml says which), next to the project's onnx."""
from __future__ import annotations

import logging
from contextlib import contextmanager
import re
import tempfile
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from edgefocal.errors import MissingDependency
from edgefocal.backends.tensorrt.conformance import TRANSPARENT_OPS, feeding_dq
from edgefocal.plan import PrecisionPlan

INSTALL = "pip install 'edgefocal[modelopt]'"
CALIBRATION_METHOD = "max"


def require_modelopt():
    """ModelOpt's ONNX `quantize`, or one error saying how to install it (checked before any heavy work)."""
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as e:  # ModelOpt raises ImportError naming the missing piece of its [onnx] extra
        reason = str(e).splitlines()[0]
        raise MissingDependency(f"tensorrt.qdq_producer modelopt needs NVIDIA ModelOpt's ONNX PTQ ({reason})",
                                hint=INSTALL) from e
    return quantize


def modelopt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nvidia-modelopt")
    except PackageNotFoundError:
        return "unknown"


def high_precision_dtype(runs_in: Literal["onnxruntime", "tensorrt"]) -> str:
    """The float type of the non-INT8 parts for the runtime that runs the file: FP32 for ONNX Runtime on
    the CPU (the proxy; its CPU kernels are FP32), FP16 for a file handed straight to TensorRT."""
    return "fp32" if runs_in == "onnxruntime" else "fp16"


def excluded_nodes(model, plan: PrecisionPlan) -> list[str]:
    """Anchored regexes for every node the plan does not make INT8 (float parts and role-less nodes)."""
    int8 = set(plan.nodes(int8=True))
    return [f"{re.escape(n.name)}$" for n in model.graph.node if n.name not in int8]


def outside_plan(model, plan: PrecisionPlan) -> list[str]:
    """Nodes that read a DequantizeLinear output although the plan does not make them INT8 (data movement,
    which TensorRT moves Q/DQ across, and Shape excepted)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    skip = (*TRANSPARENT_OPS, "Shape", "QuantizeLinear", "DequantizeLinear")
    return [n.name for n in model.graph.node
            if n.op_type not in skip and not plan.is_int8(n.name)
            and any(feeding_dq(producer, t) is not None for t in n.input)]


def qdq_counts(model, plan: PrecisionPlan) -> dict:
    """Q/DQ facts of any Q/DQ graph, under the same names as edgefocal's producer reports them."""
    producer = {o: n for n in model.graph.node for o in n.output}
    quantized: dict[str, int] = {}
    for p in plan.parts:
        nodes = [n for n in model.graph.node if n.name in p.nodes]
        if any(feeding_dq(producer, t) is not None for n in nodes for t in n.input):
            quantized[p.role] = quantized.get(p.role, 0) + 1
    return {"qdq_nodes": sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node),
            "quantized_parts": dict(sorted(quantized.items()))}


class _NoNvml(logging.Filter):
    """Drops ModelOpt's 'Failed to get GPU count: NVML ...' line: on a CPU-only machine that is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NVML" not in record.getMessage()


@contextmanager
def onnxruntime_unpatched():
    """Undo, on the way out, what ModelOpt's quantize patches into ONNX Runtime's quantization classes
    (modelopt/onnx/quantization/ort_patching.py replaces calibrator and quantizer methods process-wide): left
    patched, ONNX Runtime's own quantize_static fails afterwards in the same process ("Quantization
    parameters are not specified for param input") — the onnxruntime target in the same build, for one."""
    from onnxruntime.quantization import base_quantizer, calibrate, qdq_quantizer

    owners = [calibrate, calibrate.CalibraterBase, calibrate.MinMaxCalibrater, calibrate.HistogramCalibrater,
              calibrate.HistogramCollector, qdq_quantizer.QDQQuantizer, base_quantizer.BaseQuantizer]
    saved = [(owner, dict(vars(owner))) for owner in owners]
    try:
        yield
    finally:
        for owner, before in saved:
            for name in set(vars(owner)) - set(before):
                delattr(owner, name)
            for name, value in before.items():
                if vars(owner).get(name) is not value:
                    setattr(owner, name, value)


CALIBRATION_STEP = 8  # images per ModelOpt calibration step


def calibration_steps(onnx_path: Path, calibration: np.ndarray) -> str:
    """ModelOpt's `calibration_shapes` for steps of CALIBRATION_STEP images. Without it, a dynamic-batch
    model is calibrated on the whole set in one step, with every activation of every image held at once:
    300 images of a 224² FocalNet ran this 24 GiB machine out of memory."""
    import onnx

    name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    step = min(CALIBRATION_STEP, len(calibration))
    while len(calibration) % step:  # ModelOpt splits the set into equal steps
        step -= 1
    return f"{name}:" + "x".join(str(d) for d in (step, *calibration.shape[1:]))


def _run_modelopt(onnx_fp32: Path, calibration: np.ndarray, excluded: list[str], dtype: str, method: str):
    """ModelOpt's quantize in a scratch directory (it writes intermediate files beside its input)."""
    import shutil

    import onnx

    quantize = require_modelopt()
    logger, quiet = logging.getLogger("modelopt.onnx"), _NoNvml()  # ModelOpt logs there, re-creating handlers
    logger.addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory() as tmp, onnxruntime_unpatched():
            src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "qdq.onnx"
            shutil.copyfile(onnx_fp32, src)
            quantize(onnx_path=str(src), quantize_mode="int8", calibration_data=calibration,
                     calibration_shapes=calibration_steps(onnx_fp32, calibration),
                     calibration_method=method, calibration_eps=["cpu"], high_precision_dtype=dtype,
                     nodes_to_exclude=excluded, output_path=str(out), log_level="WARNING")
            return onnx.load(str(out))
    finally:
        logger.removeFilter(quiet)


def quantize(onnx_fp32: Path, plan: PrecisionPlan, calibration: np.ndarray, log: Callable[[str], None] = print,
             dtype: str = "fp32", method: str = CALIBRATION_METHOD) -> tuple[object, dict]:
    """A TensorRT-conformant INT8 Q/DQ ONNX (in memory) of `onnx_fp32` under `plan`, placed and calibrated
    by ModelOpt, and the facts the report row carries (the same keys as tensorrt_qdq.quantize's)."""
    import onnx

    from edgefocal.errors import BadInput
    from edgefocal.backends.tensorrt.conformance import assert_tensorrt_qdq

    if calibration is None or len(calibration) == 0:
        raise BadInput("INT8 for TensorRT needs calibration images, none were given",
                       hint="set calibration: in the recipe (e.g. calibration: fmnist-train-300)")
    require_modelopt()
    log(f"TensorRT Q/DQ by ModelOpt {modelopt_version()} ({method} calibration on the CPU, {dtype} float parts) "
        f"under policy '{plan.preset}': INT8 {plan.role_counts(True)}")
    fp32 = onnx.load(str(onnx_fp32), load_external_data=False)
    q = _run_modelopt(Path(onnx_fp32), np.ascontiguousarray(calibration, dtype=np.float32),
                      excluded_nodes(fp32, plan), dtype, method)
    stray = outside_plan(q, plan)
    if stray:  # ModelOpt placed Q/DQ where the plan says float: a ModelOpt change this code must follow
        raise RuntimeError(f"ModelOpt quantized nodes the precision plan keeps float: {stray[:5]}")
    warnings = assert_tensorrt_qdq(q)
    return q, {
        "qdq_producer": "modelopt", "modelopt_version": modelopt_version(), "calibration_method": method,
        "high_precision_dtype": dtype, "policy": plan.preset,
        "int8_roles": plan.role_counts(True), "float_roles": plan.role_counts(False),
        **qdq_counts(q, plan),
        "conformance": "pass", "conformance_warnings": [str(w) for w in warnings],
    }
