"""Where an artifact spends its time, per FocalNet module: the runtime's own per-op profile, mapped back
to torch module paths through the op names edgefocal gives at export (naming.py).

OpenVINO's PERF_COUNT profile names every executed op after the IR op it came from, so nearly all time
maps to a module; ONNX Runtime's profile keeps the node name for most fused nodes but names some of its
own (layout reorders, `*_token_*`), which count as "other". The mixed-precision search (what keeping a
module float costs) and the pruning planner (where channels buy time) read these shares."""
from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

OTHER = "other"


def module_of_op(name: str) -> str:
    """'layers.0.blocks.0.mlp.fc1/Conv/WithoutBiases' → 'layers.0.blocks.0.mlp.fc1'; runtime-made ops → other."""
    head = name.split("/", 1)[0]
    return head if "/" in name and re.match(r"^(stem|layers|head|norm|model)\b", head) else OTHER


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


def onnxruntime_op_times(onnx_path: Path, x: np.ndarray, threads: int | None = None, repeats: int = 20,
                         warmup: int = 3) -> dict[str, float]:
    """Mean ms per inference of every node ONNX Runtime executes (after its graph optimizations); the
    first `warmup` runs are left out of the profile."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    if threads:
        opts.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:  # not the working directory: a killed run left its file there
        opts.profile_file_prefix = str(Path(tmp) / "ort_profile")
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for _ in range(warmup + repeats):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    after = runs[warmup] if len(runs) > warmup else 0
    renamed = _ort_renames(onnx_path)
    times: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= after:
            name = e["name"][: -len("_kernel_time")]
            times[renamed.get(name.removesuffix("_nchwc"), name)] += e["dur"] / 1e3 / repeats
    return dict(times)


def _ort_renames(onnx_path: Path) -> dict[str, str]:
    """ONNX Runtime's NCHWc transformer names a conv it rewrites after the conv's output tensor
    (`conv2d_10_nchwc`): map output tensor names back to the node names the export gave."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return {out: node.name for node in graph.node for out in node.output}


def by_module(op_times: dict[str, float]) -> dict[str, float]:
    """ms per torch module path (and "other" for the runtime's own ops)."""
    out: dict[str, float] = defaultdict(float)
    for op, ms in op_times.items():
        out[module_of_op(op)] += ms
    return dict(out)


def by_stage(module_times: dict[str, float]) -> dict[str, float]:
    """ms per FocalNet stage ('0'..'3'; the stem, head and runtime ops under "other")."""
    out: dict[str, float] = defaultdict(float)
    for module, ms in module_times.items():
        m = re.match(r"layers\.(\d+)\.", module + ".")
        out[m.group(1) if m else OTHER] += ms
    return dict(out)


def stage_latency_weights(model, input_size: tuple[int, ...], calibration: np.ndarray, target: str,
                          threads: int | None = None, log=print) -> list[float] | None:
    """Relative channel fraction per stage for pruning, from where the INT8 artifact on `target` really
    spends its time: a stage's measured ms per MAC over the mean (a MAC in the high-resolution stages
    carries more LayerNorm, GELU, depthwise and memory time than one in the deep stages). The median of
    three profiles, rounded to 0.1, so that rebuilds on the same machine mostly prune alike; the report
    records the weights, and `prune.stage_weights` pins them. None when this target's runtime cannot be
    profiled here (the planner then spreads the cut by MACs)."""
    import onnx

    from edgefocal.export import onnx_from_torch
    from edgefocal.prune.macs import count
    from edgefocal.quantize import plan_precision
    from edgefocal.recipe import QuantizeSpec

    if target not in ("openvino", "onnxruntime"):
        log(f"pruning plan: {target} cannot be profiled here; channels are cut by MACs")
        return None
    x = np.ascontiguousarray(calibration[:1], dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = onnx_from_torch(model, tuple(input_size), Path(tmp) / "dense.onnx")
        plan = plan_precision(onnx.load(str(path)))
        if target == "openvino":
            from edgefocal.quantize import openvino as ov_quantize
            from edgefocal.targets.openvino import ov_model_from_onnx

            q = ov_quantize.quantize(ov_model_from_onnx(path), plan, calibration[:16], QuantizeSpec())
            profiles = [openvino_op_times(q, x, threads) for _ in range(3)]
        else:
            import onnx as onnx_lib

            from edgefocal.quantize import onnxruntime as ort_quantize

            onnx_lib.save(ort_quantize.quantize(path, plan, calibration[:16], QuantizeSpec()), str(Path(tmp) / "q.onnx"))
            profiles = [onnxruntime_op_times(Path(tmp) / "q.onnx", x, threads) for _ in range(3)]
    per_profile = [by_stage(by_module(t)) for t in profiles]
    stage_ms = {s: float(np.median([p.get(s, 0.0) for p in per_profile])) for s in per_profile[0]}
    macs = count(model, tuple(input_size))
    stages = sorted({int(m.group(1)) for k in macs.per_module if (m := re.match(r"layers\.(\d+)\.", k))})
    per_mac = [stage_ms.get(str(s), 0.0) / max(1, macs.macs_under(f"layers.{s}")) for s in stages]
    mean = float(np.mean(per_mac)) or 1.0
    weights = [round(max(v / mean, 0.1), 1) for v in per_mac]
    log(f"pruning plan: INT8 {target} time per MAC by stage → stage weights {weights}")
    return weights
