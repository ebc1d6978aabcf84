"""OpenVINO's own per-op profile (PERF_COUNT): every executed op is named after the IR op it came from, so
nearly all time maps to a torch module (naming.by_module)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def openvino_op_times(model, x: np.ndarray, threads: int | None = None, precision_hint: str | None = None,
                      repeats: int = 20) -> dict[str, float]:
    """Mean ms per inference of every executed op of an ov.Model (static shape of `x`)."""
    import openvino as ov

    m = model.clone()
    m.reshape({m.inputs[0]: list(x.shape)})
    config = {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    if precision_hint:
        config["INFERENCE_PRECISION_HINT"] = precision_hint
    request = ov.Core().compile_model(m, "CPU", config).create_infer_request()
    for _ in range(3):
        request.infer({0: x})
    times: dict[str, float] = defaultdict(float)
    for _ in range(repeats):
        request.infer({0: x})
        for info in request.get_profiling_info():
            times[info.node_name] += info.real_time.total_seconds() * 1e3 / repeats
    return dict(times)
