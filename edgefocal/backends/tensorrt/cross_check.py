"""`edgefocal engine --compare`: the engine, ONNX Runtime on the Q/DQ ONNX and torch FP32 on the same
inputs, compared with Polygraphy's Comparator and `CompareFunc.simple(atol=, rtol=)` — the check a
TensorRT user runs with `polygraphy run --trt --onnxrt`, plus the FP32 model it came from.

Each pair gets Polygraphy's verdict under the tolerances, and the figures that explain it (largest and
mean absolute difference, top-1 agreement). A runner that cannot run here is left out with its reason;
without TensorRT the ONNX Runtime ↔ torch pair still runs."""
from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from edgefocal._deps import require
from edgefocal.errors import BadInput


def _torch_runner(model, input_name: str, input_shape: tuple[int, ...], output_name: str, device: str):
    """A Polygraphy runner for the FP32 torch model.

    Own code: Polygraphy's PytRunner moves every input to CUDA (no CPU reference) and pairs output names
    with the batch rows of a model that returns one tensor."""
    import torch
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    class TorchFP32Runner(BaseRunner):
        def __init__(self):
            super().__init__(name="torch-fp32")

        def activate_impl(self):
            model.eval().to(device)

        def get_input_metadata_impl(self):
            return TensorMetadata().add(input_name, np.float32, (-1, *input_shape[1:]))

        def infer_impl(self, feed_dict):
            x = torch.from_numpy(np.ascontiguousarray(feed_dict[input_name])).to(device)
            start = time.perf_counter()
            with torch.inference_mode():
                y = model(x)
            self.inference_time = time.perf_counter() - start
            return OrderedDict({output_name: y.float().cpu().numpy()})

    return TorchFP32Runner()


def _engine_runner(engine: Path):
    """Polygraphy's TrtRunner on the engine, behind the sidecar's device guard; or the reason it cannot run."""
    from edgefocal.backends.tensorrt.engine import import_tensorrt

    trt = import_tensorrt()
    if trt is None:
        return None, "TensorRT's Python bindings are not importable here (run --compare on the device)"
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from edgefocal.backends.tensorrt.sidecar import check_engine_device, device_facts

    check_engine_device(engine, device_facts(str(trt.__version__)))
    return TrtRunner(EngineFromBytes(BytesFromPath(str(engine))), name="tensorrt"), None


def _pair_figures(results, a: str, b: str, output: str) -> dict:
    x = np.concatenate([np.asarray(it[output], dtype=np.float32) for it in results[a]])
    y = np.concatenate([np.asarray(it[output], dtype=np.float32) for it in results[b]])
    diff = np.abs(x - y)
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "top1_agreement": float((x.argmax(1) == y.argmax(1)).mean())}


def compare_engine(engine: Path | None, qdq_onnx: Path, model, images: np.ndarray, atol: float, rtol: float,
                   batch: int = 8, torch_device: str = "cpu", log: Callable[[str], None] = print) -> dict:
    """Compare the engine (TrtRunner), the Q/DQ ONNX (OnnxrtRunner, CPU) and `model` (torch FP32) on
    `images` in batches of `batch` (within the engine's profile); `engine`/`model` may be None."""
    import onnx  # a core dependency (no extra to name)
    require("polygraphy", "tensorrt")
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator, CompareFunc
    from polygraphy.logger import G_LOGGER

    if not Path(qdq_onnx).is_file():
        raise BadInput(f"ONNX {qdq_onnx} does not exist", hint="pass the Q/DQ ONNX written by `edgefocal build`")
    graph = onnx.load(str(qdq_onnx), load_external_data=False).graph
    input_name, output_name = graph.input[0].name, graph.output[0].name
    runners, skipped = [], {}
    if engine is not None:
        runner, reason = _engine_runner(Path(engine))
        runners += [runner] if runner is not None else []
        skipped.update({"tensorrt": reason} if reason else {})
    runners.append(OnnxrtRunner(SessionFromOnnx(str(qdq_onnx), providers=["cpu"]), name="onnxruntime-qdq"))
    if model is not None:
        runners.append(_torch_runner(model, input_name, images.shape, output_name, torch_device))
    if len(runners) < 2:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no engine and no torch model given"
        raise BadInput(f"nothing to compare: only {runners[0].name} can run ({why})",
                       hint="pass the FP32 model, or run on the device where the engine's TensorRT imports")
    images = np.ascontiguousarray(images, dtype=np.float32)
    feeds = [OrderedDict({input_name: images[i: i + batch]}) for i in range(0, len(images), batch)]
    compare_func = CompareFunc.simple(atol=atol, rtol=rtol)
    with G_LOGGER.verbosity(G_LOGGER.ERROR):  # Polygraphy's INFO lines per runner and iteration
        results = Comparator.run(runners, data_loader=feeds)
        pairs = []
        for i in range(len(runners)):
            for j in range(i + 1, len(runners)):
                a, b = runners[i].name, runners[j].name
                verdict = Comparator.compare_accuracy(results, comparisons=[(i, j)], compare_func=compare_func)
                pairs.append({"a": a, "b": b, "passed": bool(verdict), **_pair_figures(results, a, b, output_name)})
    for p in pairs:
        log(f"{p['a']} vs {p['b']}: {'PASS' if p['passed'] else 'FAIL'} (atol {atol}, rtol {rtol}); max |diff| "
            f"{p['max_abs_diff']:.4g}, top-1 agreement {p['top1_agreement']:.2%}")
    for name, reason in skipped.items():
        log(f"{name}: skipped ({reason})")
    return {"images": len(images), "atol": atol, "rtol": rtol, "runners": [r.name for r in runners],
            "skipped": skipped, "pairs": pairs, "passed": all(p["passed"] for p in pairs)}


def compare_for_recipe(engine: Path | None, qdq_onnx: Path, recipe, count: int, batch: int, atol: float | None = None,
                       rtol: float | None = None, log: Callable[[str], None] = print) -> dict:
    """`edgefocal engine --compare`: `compare_engine` on `count` class-balanced images of the recipe's eval
    set, with the recipe's FP32 model and its `tensorrt.compare_atol/rtol` unless `atol`/`rtol` are given."""
    from edgefocal import models
    from edgefocal.data import balanced_subset, open_dataset, preprocess

    import onnx  # a core dependency (no extra to name)
    loaded = models.load(recipe.model)
    if not Path(qdq_onnx).is_file():
        raise BadInput(f"ONNX {qdq_onnx} does not exist", hint="pass the Q/DQ ONNX written by `edgefocal build`")
    dims = [d.dim_value for d in onnx.load(str(qdq_onnx), load_external_data=False).graph.input[0].type.tensor_type
            .shape.dim][1:]
    want = list(loaded.data_config["input_size"])
    if dims != want:
        raise BadInput(f"{qdq_onnx} takes inputs of {dims}, the recipe's model {loaded.name} {want}",
                       hint="pass the --recipe the ONNX was built from (its model: section)")
    spec = recipe.eval
    dataset = open_dataset(spec.source, spec.split, spec.path)
    images = preprocess(dataset, balanced_subset(dataset.labels, count, spec.seed), loaded.data_config)
    atol = recipe.tensorrt.compare_atol if atol is None else atol
    rtol = recipe.tensorrt.compare_rtol if rtol is None else rtol
    log(f"comparing on {len(images)} {dataset.name} images in batches of {batch} (atol {atol}, rtol {rtol})")
    return compare_engine(engine, Path(qdq_onnx), loaded.model, images, atol, rtol, batch=batch, log=log)
