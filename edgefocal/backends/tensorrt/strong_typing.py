"""The ONNX a strongly typed TensorRT network parses, and the rule that decides when one is built.

A strongly typed network takes every tensor's type from the graph: an FP32 ONNX runs in FP32 whatever
the builder is told. TensorRT 11 builds only strongly typed networks (its FP16/INT8 builder flags are
gone) and 10.x deprecated weak typing in 10.12, so on both the ONNX is converted to FP16 before parsing
for FP16 builds and for the float parts of an INT8 Q/DQ graph: the same graph then gets the same
precisions on 10.x and 11.x.

The conversion keeps the network's inputs and outputs FP32 (callers feed FP32) and converts the Q/DQ
nodes with everything else: their scales become FP16 (ONNX opset 19 allows it), so each
DequantizeLinear emits FP16 straight into its Conv/Gemm. Blocking Q/DQ from the conversion (what this
module did before) leaves an FP32 DequantizeLinear, a Cast, then the FP16 Conv: TensorRT cannot fuse
that DQ into the conv and the conv silently stops being INT8 — the conformance checker now flags it,
and it runs on the converted file, which is the one TensorRT parses."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgefocal.core import PRECISIONS
from edgefocal.errors import BadInput

#: DequantizeLinear/QuantizeLinear take FP16 scales from opset 19 on
MIN_OPSET_FP16_QDQ = 19


@dataclass(frozen=True)
class TypingPlan:
    """How one TensorRT version builds one precision: typing mode, builder precision flags, FP16 ONNX."""

    strongly_typed: bool
    fp16_onnx: bool  # parse an FP16 conversion of the ONNX (FP32 I/O)
    fp16_flag: bool = False  # weak typing only (TensorRT < 10): let float layers run FP16
    int8_flag: bool = False  # weak typing only: explicit Q/DQ quantization, no calibrator


def major_version(version: str) -> int:
    """10 from '10.3.0.30'; a version that does not start with a number is refused."""
    head = str(version).split(".")[0]
    if not head.isdigit():
        raise BadInput(f"cannot read the TensorRT version '{version}'",
                       hint="reinstall TensorRT (tensorrt.__version__ or trtexec's banner names it)")
    return int(head)


def typing_plan(version: str, precision: str) -> TypingPlan:
    """Strong typing from TensorRT 10 on (required on 11, the non-deprecated mode on 10.x); weak typing
    with the FP16/INT8 builder flags only on the TensorRT 8/9 that JetPack 5 ships."""
    if precision not in PRECISIONS:
        raise BadInput(f"unknown TensorRT precision '{precision}'", hint="use fp32, fp16 or int8")
    low = precision in ("fp16", "int8")
    if major_version(version) >= 10:
        return TypingPlan(strongly_typed=True, fp16_onnx=low)
    return TypingPlan(strongly_typed=False, fp16_onnx=False, fp16_flag=low, int8_flag=precision == "int8")


def has_qdq(model) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def fp16_model(model):
    """FP16 copy of an ONNX ModelProto (FP32 or Q/DQ) for a strongly typed network; see the module doc."""
    import onnx_graphsurgeon as gs
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # ORT's converter with its default block list (which leaves Q/DQ in): FP16 initializers, Q/DQ scales
    # included, and Casts at the FP32 graph inputs/outputs
    half = convert_float_to_float16(model, keep_io_types=True)
    if has_qdq(half):
        for opset in half.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = max(opset.version, MIN_OPSET_FP16_QDQ)
    graph = gs.import_onnx(half)
    graph.toposort()  # the converter appends its input Casts after their readers; parsers need graph order
    return gs.export_onnx(graph)


def fp16_onnx_for_strong_typing(onnx_path: Path, out: Path, log: Callable[[str], None] = print) -> Path:
    """Write the FP16 conversion of `onnx_path` to `out`. A plain FP32 graph goes through NVIDIA Model
    Optimizer's AutoCast when it is installed (NVIDIA's documented path; it keeps overflow-prone nodes
    FP32); a Q/DQ graph always through `fp16_model`, whose output this project checks (AutoCast's
    handling of Q/DQ scales is not verified here)."""
    import onnx

    model = onnx.load(str(onnx_path))
    how = "Q/DQ-aware FP16 conversion (FP16 scales, opset ≥19)"
    if not has_qdq(model):
        try:  # an optional dependency outside the type-checked environment
            autocast = importlib.import_module("modelopt.onnx.autocast")
            model = autocast.convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16",
                                                        keep_io_types=True)
            how = "ModelOpt AutoCast"
        except ImportError:
            how = "ONNX Runtime's float16 converter (install nvidia-modelopt for AutoCast)"
    if how != "ModelOpt AutoCast":
        model = fp16_model(model)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    log(f"converted {onnx_path.name} to FP16 for a strongly typed network ({how}): {out.name}")
    return out
