"""How much each FocalNet stage gives up when pruning by latency (`prune.allocation: latency`, opt-in): the INT8
artifact's measured time per MAC in each stage, from the backend's own per-op profile (naming.by_module maps ops
back to torch modules). A clock decides it, so machine load changes the weights, hence which channels go, the
accuracy and the artifacts; the default (`allocation: macs`) plans from MAC counts alone and needs none of this."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from edgefocal.backends import Backend
from edgefocal.core import BuildContext
from edgefocal.naming import by_module, by_stage
from edgefocal.prune.macs import count


def stage_latency_weights(model, input_size: tuple[int, ...], calibration: np.ndarray, backend: Backend,
                          threads: int | None = None, log=print) -> list[float] | None:
    """Relative channel fraction per stage for pruning, from where the INT8 artifact on `backend` really
    spends its time: a stage's measured ms per MAC over the mean (a MAC in the high-resolution stages
    carries more LayerNorm, GELU, depthwise and memory time than one in the deep stages). The median of
    three profiles, rounded to 0.1, so that rebuilds on a quiet machine mostly prune alike (a loaded one moves
    them); the report records the weights, and `prune.stage_weights` pins them. None when this backend cannot be
    profiled here (the planner then spreads the cut by MACs)."""
    if not backend.profiles_ops:
        log(f"pruning plan: {backend.name} cannot be profiled here; channels are cut by MACs")
        return None
    x = np.ascontiguousarray(calibration[:1], dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = _int8_artifact(model, input_size, calibration[:16], backend, Path(tmp), threads)
        profiles = [backend.op_times(artifact, x, threads) or {} for _ in range(3)]
    per_profile = [by_stage(by_module(t)) for t in profiles]
    stage_ms = {s: float(np.median([p.get(s, 0.0) for p in per_profile])) for s in per_profile[0]}
    macs = count(model, tuple(input_size))
    stages = sorted({int(m.group(1)) for k in macs.per_module if (m := re.match(r"layers\.(\d+)\.", k))})
    per_mac = [stage_ms.get(str(s), 0.0) / max(1, macs.macs_under(f"layers.{s}")) for s in stages]
    mean = float(np.mean(per_mac)) or 1.0
    weights = [round(max(v / mean, 0.1), 1) for v in per_mac]
    log(f"pruning plan: INT8 {backend.name} time per MAC by stage → stage weights {weights}")
    return weights


def _int8_artifact(model, input_size: tuple[int, ...], calibration: np.ndarray, backend: Backend, workdir: Path,
                   threads: int | None) -> Path:
    """The dense model's INT8 artifact on `backend` under the default plan and recipe, written below `workdir`."""
    import onnx

    from edgefocal.export import onnx_from_torch
    from edgefocal.precision import plan_precision
    from edgefocal.recipe import Recipe

    path = onnx_from_torch(model, tuple(input_size), workdir / "dense.onnx")
    ctx = BuildContext(recipe=Recipe(), model=model, data_config={"input_size": tuple(input_size)}, class_names=[],
                       calibration=calibration, onnx_fp32=path, workdir=workdir, num_threads=threads or 1,
                       log=lambda _: None)
    plan = plan_precision(onnx.load(str(path)))
    return backend.package(ctx, "int8", backend.quantize(ctx, plan, calibration))[-1].path
