"""What the runtimes' per-op profilers share (openvino/profile.py, onnxruntime/profile.py): which module an
executed op's names tell, and where the graph's multiply-accumulates ran.

A runtime executes fewer, fused ops than the graph it was given, under its own names. Each profiler lists,
per executed op, the graph ops it executes (`ExecutedOp.sources`, its own name first); the graph op's MACs
(counted from its shapes) and module (from its name, naming.py) go to the executed op that lists it."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Mapping, Sequence

from edgefocal.naming import BY_FUSED, BY_NAME, OTHER, module_of_op

#: {graph op: (its multiply-accumulates at the profiled shape, the graph ops reading its output)}
GraphMacs = dict[str, tuple[int, tuple[str, ...]]]


def named(sources: Mapping[str, Sequence[str]], module_of: Callable[[str], str] = module_of_op) -> dict[str, tuple[str, str]]:
    """{executed op: (module, rule)} for the ops whose own name (BY_NAME) or the name of a graph op fused into
    them (BY_FUSED) tells their module; the rest is left to naming.attribute's graph rules."""
    out = {}
    for op, names in sources.items():
        for i, source in enumerate(names):
            if (module := module_of(source)) != OTHER:
                out[op] = (module, BY_NAME if i == 0 else BY_FUSED)
                break
    return out


def place_macs(graph_macs: GraphMacs, sources: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """{executed op: MACs}: each graph op's MACs go to the executed op that lists it, or where none does, to
    the one that executes the op reading its output (a matrix product fused into its bias add, the executed op
    named after the add: OpenVINO's FullyConnected `logits`). MACs no executed op takes are dropped, and the
    profile's total MACs says so against the graph's."""
    executes = {s: op for op, names in sources.items() for s in names}
    out: dict[str, int] = defaultdict(int)
    for graph_op, (macs, readers) in graph_macs.items():
        op = executes.get(graph_op) or next((executes[r] for r in readers if r in executes), None)
        if op is not None:
            out[op] += macs
    return dict(out)
