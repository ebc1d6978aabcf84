"""ONNX Runtime's own per-node profile, with what each executed node is.

ORT keeps the exported node name for most nodes it fuses (`stem.proj/Conv_token_48`: the Q/DQ conv fused into a
QLinearConv, `<name>_token_<n>` being how ORT names a node made from another) but names some after a tensor
(`conv2d_2_nchwc`: its NCHWc conv, after the conv's output tensor) and some after nothing of ours (layout
`ReorderInput`s, `Transpose_token_*`, the quantizer's `*_QuantizeLinear`). Its optimized graph, saved beside
the profile, says which nodes feed which, so naming.attribute can place those by the part they serve. Its
profiler names the operator and the provider, not the CPU kernel within them (MLAS picks that)."""
from __future__ import annotations

import bisect
import json
import re
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgefocal.backends.onnxruntime import session_options
from edgefocal.backends.op_profile import GraphMacs, named, place_macs
from edgefocal.core import ExecutedOp, OpProfiler
from edgefocal.naming import OTHER, attribute

#: ONNX op → the input holding its weight (the MACs per output element span all but its first dimension) or,
#: for a matrix product, the input whose last dimension is the reduced one
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_INPUT = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0, "Gemm": 0}
_PRECISION = {"uint8": "u8", "int8": "i8", "float": "f32", "float16": "f16", "bfloat16": "bf16", "int32": "i32",
              "int64": "i64", "bool": "bool", "double": "f64"}


class OnnxRuntimeProfiler(OpProfiler):
    """An ONNX file in an ORT CPU session with profiling on, set up like the verifying runner (all graph
    optimizations, its intra-op threads, one inter-op thread). `ops` ends the profile."""

    def __init__(self, onnx_path: Path, threads: int | None = None):
        super().__init__(Path(onnx_path))
        self.threads = threads
        self.session = None
        self.events: list[dict] | None = None

    def load(self) -> None:
        import onnxruntime as ort

        self.tmp = Path(tempfile.mkdtemp(prefix="edgefocal-ort-profile-"))  # not the cwd: a killed run left files there
        opts = session_options(self.threads)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(self.tmp / "ort_profile")
        opts.optimized_model_filepath = str(self.tmp / "optimized.onnx")  # the graph that runs, for its wiring
        opts.log_severity_level = 3  # saving an NCHWc graph warns that it is for this machine only: it is
        self.session = ort.InferenceSession(str(self.artifact), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, x: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        out = self.session.run(None, {self.input_name: x})[0]
        self.wall_ms.append((time.perf_counter() - started) * 1e3)
        self.batch = x.shape[0]
        return out

    def close(self) -> None:
        self.session = None
        shutil.rmtree(getattr(self, "tmp", ""), ignore_errors=True)

    def ops(self, skip: int = 0) -> list[ExecutedOp]:
        if self.events is None:
            self.events = json.loads(Path(self.session.end_profiling()).read_text())
        times, meta = node_times(self.events, skip)
        graph, kernels = optimized_graph(self.tmp / "optimized.onnx")
        order = [n for n in graph if n in times] + [n for n in times if n not in graph]
        renamed = renamed_outputs(self.artifact)
        sources = {n: _sources(n, renamed) for n in order}
        graph = {n: graph.get(n, ()) for n in order}
        modules = attribute(graph, named(sources))
        macs = place_macs(onnx_macs(self.artifact, self.batch), sources)
        return [ExecutedOp(n, meta[n][0], f"{meta[n][1]}:{kernels.get(n, meta[n][0])}", meta[n][2], times[n],
                           macs.get(n, 0), sources[n], graph[n], *modules.get(n, (OTHER, ""))) for n in order]


def node_times(events: list[dict], skip: int) -> tuple[dict[str, float], dict[str, tuple[str, str, str]]]:
    """({node: median ms over the runs after the first `skip` (0 in a run it did not run in)}, {node:
    (operator, provider, precision of its first input)}) from ORT's profile events."""
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run" and e.get("cat") == "Session")
    skip = skip if len(starts) > skip else 0
    per_run: dict[str, np.ndarray] = {}
    meta = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        run = bisect.bisect_right(starts, e["ts"]) - 1 - skip
        if run < 0:
            continue
        name, args = e["name"][: -len("_kernel_time")], e.get("args", {})
        per_run.setdefault(name, np.zeros(max(1, len(starts) - skip)))[run] += e["dur"] / 1e3
        if name not in meta:
            first = next(iter(args["input_type_shape"][0]), "") if args.get("input_type_shape") else ""
            meta[name] = (args.get("op_name", ""), args.get("provider", "").removesuffix("ExecutionProvider"),
                          _PRECISION.get(first, first))
    return {n: float(np.median(v)) for n, v in per_run.items()}, meta


def optimized_graph(path: Path) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """({node: the nodes feeding it}, {node: its operator with its domain, 'com.microsoft.nchwc.Conv'}) of
    the graph ORT saved after optimizing, in its execution order."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    producer = {o: n.name for n in nodes for o in n.output}
    graph = {n.name: tuple(producer[i] for i in n.input if i in producer) for n in nodes}
    return graph, {n.name: f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in nodes}


def _sources(node: str, renamed: dict[str, str]) -> tuple[str, ...]:
    """The exported graph's node names an ORT node stands for: its own, the node it was made from
    (`<name>_token_<n>`), the node whose output tensor named it (`<tensor>_nchwc`)."""
    out = [node]
    if m := re.fullmatch(r"(.+)_token_\d+", node):
        out.append(m.group(1))
    if (origin := renamed.get(node.removesuffix("_nchwc"))) is not None:
        out.append(origin)
    return tuple(dict.fromkeys(out))


def renamed_outputs(onnx_path: Path) -> dict[str, str]:
    """{output tensor: node} of the exported graph: ORT's NCHWc transformer names a conv it rewrites after the
    conv's output tensor (`conv2d_10_nchwc`)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return {out: node.name for node in graph.node for out in node.output}


def onnx_macs(onnx_path: Path, batch: int) -> GraphMacs:
    """{node: (MACs at `batch`, the nodes reading its output)} for every convolution and matrix product of an
    ONNX file, from ONNX's shape inference; a symbolic dimension is the batch (the exported graph's only one)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    shapes = {v.name: [d.dim_value or batch for d in v.type.tensor_type.shape.dim]
              for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    shapes |= {t.name: list(t.dims) for t in model.graph.initializer}
    readers: dict[str, list[str]] = defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            readers[i].append(n.name)
    out = {}
    for n in model.graph.node:
        if macs := _macs(n, shapes):
            out[n.name] = (macs, tuple(readers.get(n.output[0], ())))
    return out


def _macs(node, shapes: dict[str, list[int]]) -> int:
    produced = shapes.get(node.output[0]) if node.output else None
    if not produced or not all(produced):
        return 0
    if node.op_type in _CONV_WEIGHT and len(node.input) > _CONV_WEIGHT[node.op_type]:
        weight = shapes.get(node.input[_CONV_WEIGHT[node.op_type]])
        return int(np.prod(produced)) * int(np.prod(weight[1:])) if weight and all(weight) else 0
    if node.op_type in _MATMUL_INPUT:
        a = shapes.get(node.input[_MATMUL_INPUT[node.op_type]])
        transposed = node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)
        reduced = (a[-2] if transposed else a[-1]) if a and len(a) >= 2 else 0
        return int(np.prod(produced)) * int(reduced)
    return 0


def onnxruntime_op_times(onnx_path: Path, x: np.ndarray, threads: int | None = None, repeats: int = 20,
                         warmup: int = 3) -> dict[str, float]:
    """Median ms per inference of every node ONNX Runtime executes (after its graph optimizations), named after
    the exported graph's nodes where ORT's name says which; the first `warmup` runs are left out."""
    with OnnxRuntimeProfiler(onnx_path, threads) as profiler:
        for _ in range(warmup + repeats):
            profiler.infer(x)
        ops = profiler.ops(skip=warmup)
    renamed = renamed_outputs(onnx_path)
    times: dict[str, float] = defaultdict(float)
    for op in ops:
        times[renamed.get(op.name.removesuffix("_nchwc"), op.name)] += op.ms
    return dict(times)
