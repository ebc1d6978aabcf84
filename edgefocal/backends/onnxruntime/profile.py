"""ONNX Runtime's own per-node profile: it keeps the node name for most fused nodes but names some of its own
(layout reorders, `*_token_*`), which naming.by_module counts as "other"."""
from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


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
