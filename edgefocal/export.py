"""ONNX export of the (pruned) FP32 model: opset ≥17 so LayerNorm becomes one LayerNormalization node
(TensorRT maps it to its normalization layer), dynamic batch, nodes named after their torch modules
(naming.py), checked against torch."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgefocal.errors import BadInput

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def onnx_from_torch(model: torch.nn.Module, input_shape: tuple[int, ...], path: Path, opset: int = OPSET) -> Path:
    """Export with the dynamo exporter (torch's default since 2.9). The example batch is 2: a batch of 1
    makes torch.export specialise the dynamic batch dimension ('Constraints violated (batch)')."""
    if opset < 17:
        raise BadInput(f"ONNX opset {opset} is below 17", hint="use opset ≥17 so LayerNorm exports as one node")
    import onnx

    example = torch.randn(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model.eval(),
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"x": {0: batch}},
            verbose=False,
            optimize=True,
        )
    from edgefocal.naming import name_onnx_nodes

    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=False)
    model_proto = onnx.load(str(path))
    name_onnx_nodes(model_proto)
    onnx.save(model_proto, str(path))
    onnx.checker.check_model(str(path))
    return path


def check_onnx_against_torch(model: torch.nn.Module, path: Path, sample: np.ndarray) -> float:
    """Max abs logit difference between ONNX Runtime and torch on `sample` (recorded in the report)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: sample})[0]
    with torch.inference_mode():
        want = model(torch.from_numpy(sample)).numpy()
    return float(np.abs(got - want).max())


@dataclass
class Exported:
    """The FP32 model exported once; every target starts from it."""

    model: torch.nn.Module  # the (pruned) FP32 module that was exported
    onnx: Path
    input_size: tuple[int, ...]
    opset: int
    max_abs_diff: float  # ONNX Runtime vs torch on a sample of the eval set


def export(model: torch.nn.Module, input_size: tuple[int, ...], sample: np.ndarray, workdir: Path) -> Exported:
    """The export stage: ONNX at `workdir/model_fp32.onnx`, checked against torch on `sample`."""
    path = onnx_from_torch(model, tuple(input_size), Path(workdir) / "model_fp32.onnx")
    return Exported(model, path, tuple(input_size), OPSET, check_onnx_against_torch(model, path, sample))
