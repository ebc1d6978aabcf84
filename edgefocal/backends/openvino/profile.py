"""OpenVINO's own per-op profile (PERF_COUNT), with what each executed op is.

Every executed node the CPU plugin reports is named after the IR op it came from, so nearly all time maps to a
torch module (naming.by_module). The compiled model's runtime graph adds what the counters lack: the IR ops
fused into each executed node (`originalLayersNames`), the nodes feeding it and the precision its kernel reads
(`runtimePrecision`: u8/i8 where an INT8 kernel ran). Some nodes are the plugin's own, under names of its own
(`ReduceMean_9838`: a LayerNorm over the channels decomposed; `..._abcd_acdb_<node>`: a layout reorder); the
graph says which part they serve (naming.attribute)."""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgefocal.backends.op_profile import GraphMacs, named, place_macs
from edgefocal.core import ExecutedOp, OpProfiler
from edgefocal.naming import BY_NAME, OTHER, attribute, module_of_op

#: IR op types that carry multiply-accumulates, and the first weight dimension each MAC spans
MAC_OPS = {"Convolution": 1, "GroupConvolution": 2, "ConvolutionBackpropData": 1}


class OpenVINOProfiler(OpProfiler):
    """An ov.Model (or IR file) compiled for the CPU with PERF_COUNT on, one static shape per batch size, like
    the verifying runner (PERFORMANCE_HINT LATENCY, its threads and precision hint)."""

    def __init__(self, model, threads: int | None = None, precision_hint: str | None = None):
        super().__init__(model if isinstance(model, Path) else None)
        self.model = model
        self.threads, self.precision_hint = threads, precision_hint
        self.request = None
        self.shape: tuple[int, ...] | None = None
        self.runs: list[dict[str, float]] = []

    def load(self) -> None:
        from edgefocal._deps import require

        ov = require("openvino", "openvino")
        self.core = ov.Core()
        if isinstance(self.model, Path):
            self.model = self.core.read_model(str(self.model))

    def _compile(self, shape: tuple[int, ...]) -> None:
        model = self.model.clone()
        model.reshape({model.inputs[0]: list(shape)})
        config = {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        if self.precision_hint:
            config["INFERENCE_PRECISION_HINT"] = self.precision_hint
        compiled = self.core.compile_model(model, "CPU", config)
        self.request, self.shape, self.runs, self.wall_ms = compiled.create_infer_request(), shape, [], []
        self.runtime = runtime_graph(compiled.get_runtime_model())
        self.ir_macs, self.ir_modules = ir_macs(model), ir_modules(model)

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self.request is None or self.shape != x.shape:
            self._compile(x.shape)
        started = time.perf_counter()
        self.request.infer({0: x})
        self.wall_ms.append((time.perf_counter() - started) * 1e3)
        run: dict[str, float] = defaultdict(float)
        self.meta = {}
        for info in self.request.get_profiling_info():
            run[info.node_name] += info.real_time.total_seconds() * 1e3
            self.meta.setdefault(info.node_name, (info.node_type, info.exec_type))
        self.runs.append(run)
        return self.request.get_output_tensor(0).data.copy()

    def close(self) -> None:
        self.request = None

    def ops(self, skip: int = 0) -> list[ExecutedOp]:
        runs = self.runs[skip:] or self.runs
        names = [n for n in self.runtime if n in self.meta]  # nodes fused away report 0 ms and are not in the graph
        names += [n for n in self.meta if n not in self.runtime and any(r.get(n) for r in runs)]
        graph = {n: self.runtime.get(n, ((), (), ""))[1] for n in names}
        sources = {n: self.runtime.get(n, ((n,), (), ""))[0] for n in names}
        # an IR op without a module name takes one from the IR's graph: `logits`, the head's bias add, is named
        # after the graph output it writes
        modules = attribute(graph, named(sources, lambda op: self.ir_modules.get(op, module_of_op(op))))
        macs = place_macs(self.ir_macs, sources)
        out = []
        for n in names:
            kind, kernel = self.meta[n]
            precision = self.runtime.get(n, ((), (), ""))[2] or _suffix_precision(kernel)
            out.append(ExecutedOp(n, kind, kernel, precision, float(np.median([r.get(n, 0.0) for r in runs])),
                                  macs.get(n, 0), tuple(sources[n]), tuple(graph[n]), *modules.get(n, (OTHER, ""))))
        return out


def runtime_graph(runtime_model) -> dict[str, tuple[tuple[str, ...], tuple[str, ...], str]]:
    """{executed node: (IR ops fused into it, own name first; the executed nodes feeding it; the precision its
    kernel reads)}, in execution order, from the compiled model's runtime graph."""
    out = {}
    for op in runtime_model.get_ordered_ops():
        info = op.get_rt_info()
        name = op.get_friendly_name()
        fused = [s for s in str(info["originalLayersNames"].astype(str)).split(",") if s] if "originalLayersNames" in info else []
        sources = (name, *[s for s in fused if s != name])
        inputs = tuple(i.get_source_output().get_node().get_friendly_name() for i in op.inputs())
        precision = str(info["runtimePrecision"].astype(str)) if "runtimePrecision" in info else ""
        out[name] = (sources, inputs, "" if precision in ("undefined", "dynamic") else precision)
    return out


def ir_modules(model) -> dict[str, str]:
    """{IR op: module} for the IR's ops, by name and, for ops without one, by the IR's graph (naming.attribute)."""
    graph, named = {}, {}
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        graph[name] = [i.get_source_output().get_node().get_friendly_name() for i in op.inputs()]
        if (module := module_of_op(name)) != OTHER:
            named[name] = (module, BY_NAME)
    return {op: module for op, (module, _) in attribute(graph, named).items()}


def ir_macs(model) -> GraphMacs:
    """{IR op: (multiply-accumulates at the model's static shape, the ops reading its output)} for every
    convolution and matrix product."""
    out = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in MAC_OPS and kind != "MatMul":
            continue
        produced = int(np.prod(op.get_output_shape(0)))
        if kind == "MatMul":
            a = list(op.get_input_shape(0))
            per_output = a[-2] if op.get_attributes().get("transpose_a") else a[-1]
        else:
            per_output = int(np.prod(list(op.get_input_shape(1))[MAC_OPS[kind]:]))
        readers = tuple(t.get_node().get_friendly_name() for t in op.output(0).get_target_inputs())
        out[op.get_friendly_name()] = (produced * int(per_output), readers)
    return out


def _suffix_precision(kernel: str) -> str:
    """'brgconv_avx512_amx_1x1_I8' → 'i8': the precision OpenVINO appends to a kernel's name."""
    tail = kernel.rsplit("_", 1)[-1].lower()
    return tail if tail in ("i8", "u8", "bf16", "f16", "f32", "i32") else ""


def openvino_op_times(model, x: np.ndarray, threads: int | None = None, precision_hint: str | None = None,
                      repeats: int = 20) -> dict[str, float]:
    """Median ms per inference of every executed op of an ov.Model (static shape of `x`)."""
    with OpenVINOProfiler(model, threads, precision_hint) as profiler:
        for _ in range(3 + repeats):
            profiler.infer(x)
        return {op.name: op.ms for op in profiler.ops(skip=3)}
