"""The typed hand-offs between stages, below every other layer: a runner, a build context, a quantized
model, an artifact, a precision-search probe. Backends produce them, the precision search, verification and
the pipeline consume them; this module imports nothing of edgefocal's but the plan's type and naming's OTHER.

One runner shape for every backend (Polygraphy's BaseRunner, trimmed): the torch reference is a runner
too, so verification compares runners and never special-cases a backend."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, get_args

import numpy as np

from edgefocal.naming import OTHER

if TYPE_CHECKING:
    import torch

    from edgefocal.recipe import Recipe

#: the precisions a build can ask for; every other list of them derives from this one
Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


class Runner(abc.ABC):
    """Loads one artifact and maps a float32 NCHW batch to float32 logits."""

    #: where it runs, for the report ("cpu", "cuda:0 (NVIDIA H100)", "ORT CPUExecutionProvider")
    device: str = "cpu"

    def __init__(self, artifact: Path | None = None):
        self.artifact = artifact

    @abc.abstractmethod
    def load(self) -> None:
        """Heavy imports, sessions, compiled models, GPU buffers."""

    @abc.abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits for one batch; must block until the result is ready (latency is timed around it)."""

    def close(self) -> None:
        pass

    def timed_infer(self, x: np.ndarray, repeats: int) -> list[float]:
        """Latencies in ms of `repeats` calls on the same batch. Runners with device timers (CUDA events)
        override this; the default is wall-clock around infer()."""
        import time

        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.infer(x)
            out.append((time.perf_counter() - t) * 1e3)
        return out

    def __enter__(self) -> "Runner":
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class ExecutedOp:
    """One op as the runtime executed it, after its own fusions and layout changes, as its profiler saw it:
    median ms per inference, and what a profile needs to say which FocalNet part it belongs to (its name, the
    names of the graph ops fused into it, the ops feeding it) and what it computed in."""

    name: str  # the runtime's name for it (an OpenVINO executed node, an ONNX Runtime node)
    kind: str  # its type as executed: Convolution, Subgraph, Reorder, QLinearConv, ReorderInput
    kernel: str  # the kernel that ran: brgconv_avx512_amx_1x1_I8, com.microsoft.nchwc.Conv
    precision: str  # what the kernel reads: i8, u8, bf16, f32, ... ("" when the runtime does not say)
    ms: float  # median per inference over the profiled runs (a loaded machine's stalls land in few runs)
    macs: int = 0  # multiply-accumulates at the profiled batch (convolutions and matrix products only)
    sources: tuple[str, ...] = ()  # names of the graph ops it executes, its own name first
    inputs: tuple[str, ...] = ()  # names of the executed ops that feed it
    module: str = OTHER  # the torch module it belongs to (naming.attribute), OTHER where that cannot be told
    attributed_by: str = ""  # the rule that told it (naming.BY_NAME, BY_FUSED, BY_CONSUMERS, BY_PRODUCERS)

    @property
    def int8(self) -> bool:
        return self.precision in ("i8", "u8")


class OpProfiler(Runner):
    """A runner with the runtime's per-op profiler on: `infer` as any runner (its wall time kept in
    `wall_ms`), then `ops` gives what each executed op took. Timed beside the plain runner, it says how much
    of the measured time the profiler accounts for (verify/profile.py)."""

    def __init__(self, artifact: Path | None = None):
        super().__init__(artifact)
        self.wall_ms: list[float] = []  # wall-clock ms of each infer, profiler on

    def __enter__(self) -> "OpProfiler":
        self.load()
        return self

    @abc.abstractmethod
    def ops(self, skip: int = 0) -> list[ExecutedOp]:
        """Every executed op, in execution order, with its median ms over the runs after the first `skip`."""


@dataclass
class Availability:
    """Whether this machine can build and run a backend's artifacts, and if not, why and what to install."""

    can_build: bool
    can_run: bool
    detail: str = ""
    fix: str = ""


@dataclass
class BuildContext:
    """Everything a backend needs to quantize and package; created once per `build`."""

    recipe: "Recipe"
    model: "torch.nn.Module"  # FP32, eval mode, after pruning
    data_config: dict
    class_names: list[str]
    calibration: np.ndarray  # float32 NCHW, preprocessed, the recipe's calibration subset
    onnx_fp32: Path  # the model exported once to ONNX (opset ≥17, dynamic batch)
    workdir: Path  # the staging output directory; artifacts go below it
    num_threads: int = 2
    log: Callable[[str], None] = print
    sparsity_2of4: bool = False  # the pruning step left 2:4-sparse weights (TensorRT's sparse kernels)
    quantized: dict = field(default_factory=dict)  # Backend.quantized's models, by (backend, float nodes)


@dataclass
class Quantized:
    """An INT8 model in the backend's own form (an ov.Model, an onnx.ModelProto, an MLModel), and what the
    report says about it."""

    model: Any
    info: dict = field(default_factory=dict)


NOMINAL_MACS_PER_SECOND = 10e9  # a compiled CPU runtime's rate, by which the search sizes its image sets


@dataclass
class Probe:
    """One backend's all-INT8 model, able to run variants with some parts float and to profile them: what
    the mixed-precision search (precision/search.py) measures with."""

    target: str
    logits: Callable[[frozenset, np.ndarray], np.ndarray]  # (float node names, images) -> logits
    module_ms: Callable[[bool, np.ndarray], dict[str, float]]  # (int8?, sample) -> ms per module at batch 1
    # a fixed figure, not a timing, so that the search's image counts (and the plan) do not move with load
    macs_per_second: float = NOMINAL_MACS_PER_SECOND

    @property
    def load(self) -> float:
        """What measuring a variant costs on this probe, in nominal-runtime units (the search's sizing)."""
        return NOMINAL_MACS_PER_SECOND / self.macs_per_second


@dataclass
class Artifact:
    """One built file or directory and how to run it."""

    target: str
    precision: str
    path: Path  # inside BuildContext.workdir
    make_runner: Callable[[], Runner] | None  # None: cannot run on this machine (see `skipped`)
    info: dict[str, Any] = field(default_factory=dict)  # extra report fields (the backend's facts)
    requested: bool = True  # False for baselines built alongside (e.g. the FP32 IR next to INT8)
    skipped: str | None = None  # why it was not run/verified here
    variant: str | None = None  # what tells two artifacts of one target and precision apart ("engine")
    required: bool = False  # a skipped required artifact fails the build (tensorrt.require_engine)
    no_latency: str | None = None  # why its latency is not measured here (Core ML off macOS)
    proxy_for: str | None = None  # the artifact this one's runner stands in for ("TensorRT engine")

    @property
    def label(self) -> str:
        return f"{self.target} {self.precision}" + (f" ({self.variant})" if self.variant else "")


@dataclass
class Row:
    """One row of the report: a runner's figures (accuracy against the reference, latency, size) and the
    flags the gates read. `facts` holds what a backend adds (Artifact.info: engine_command, conformance
    facts, Core ML compression stats); report.json has them flat beside the fields (`to_dict`).

    Batch-keyed figures are keyed by int in memory and by str in a loaded report.json; readers accept both
    (summary.by_batch)."""

    label: str
    target: str = ""
    precision: str = ""
    requested: bool = False  # an artifact the recipe asked for (gated); False for references and baselines
    path: str | None = None  # the artifact, relative to the output directory; None for torch rows
    size_bytes: int | None = None
    skipped: str | None = None  # why it was not run here
    variant: str | None = None
    required: bool = False  # a skipped required artifact fails the build
    no_latency: str | None = None  # why its latency was not measured
    proxy_for: str | None = None  # what this runner stands in for
    notes: list[str] = field(default_factory=list)
    device: str | None = None  # where it ran; None: not run
    top1: float | None = None
    top5: float | None = None
    top1_drop: float | None = None  # points below the reference
    agreement: float | None = None
    # in a pruned build, an artifact's figures against the pruned FP32 model: what INT8 cost on top of pruning
    top1_drop_vs_pruned: float | None = None
    agreement_vs_pruned: float | None = None
    cosine: float | None = None
    max_abs_diff: float | None = None
    latency_ms: dict | None = None  # {batch: {"p50", "p90", "p99", "mean"}}
    throughput: dict | None = None  # {batch: images/s}
    speedup_vs_reference: dict | None = None  # {batch: ratio of p50s to the row's baseline}
    speedup_interval: dict | None = None  # {batch: [low, high]}
    latency_stability: dict | None = None  # {batch: verify/stability.py's verdict}
    latency_samples_ms: dict | None = None
    latency_rounds_ms: dict | None = None
    foreign_load: dict | None = None
    speedup_against: str | None = None  # the baseline row's label, where it is not the reference
    # serving figures (verify/serving.py), each from fresh child processes of the same build
    cold_start_ms: float | None = None  # median load + compile time over bench.cold_start_runs processes
    first_inference_ms: float | None = None  # the first batch-1 inference after load (median)
    serving_memory_mb: dict[int, float] = field(default_factory=dict)  # {batch: peak RSS after serving it}
    consistency: dict | None = None  # {"consistent", "images", "mismatches", "max_logit_gap", "repeatable", "batch"}
    serving_note: str | None = None  # why the serving figures are missing here, or what they do not cover
    eval_seconds: float | None = None  # wall time of its pass over the eval set (verify/compare.py)
    eval_images: int | None = None  # images its accuracy covers, where fewer than the eval set (verify/compare.py)
    facts: dict[str, Any] = field(default_factory=dict)

    _FLAGS = ("variant", "required", "no_latency", "proxy_for", "serving_note")  # written only when set
    _MEASURED = ("device", "top1", "top5", "top1_drop", "agreement", "cosine", "max_abs_diff", "latency_ms",
                 "throughput", "speedup_vs_reference", "latency_samples_ms", "latency_rounds_ms", "foreign_load",
                 "latency_stability", "speedup_interval", "speedup_against", "cold_start_ms", "first_inference_ms",
                 "consistency", "eval_seconds", "eval_images", "top1_drop_vs_pruned",
                 "agreement_vs_pruned")  # written when not None

    @classmethod
    def field_names(cls) -> frozenset[str]:
        from dataclasses import fields

        return frozenset(f.name for f in fields(cls)) - {"facts"}

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from a flat dict (metrics.compare's, bench.row_fields'); other keys become facts."""
        names = self.field_names()
        for key, value in values.items():
            if key in names:
                setattr(self, key, value)
            else:
                self.facts[key] = value

    def to_dict(self) -> dict[str, Any]:
        """The row as report.json holds it: flat, facts beside the fields; an artifact row (one with a path)
        always has path, size_bytes and skipped, flags and figures appear only when set."""
        out: dict[str, Any] = {"label": self.label, "target": self.target, "precision": self.precision}
        if self.path is not None:
            out.update(path=self.path, size_bytes=self.size_bytes)
        elif self.size_bytes is not None:
            out["size_bytes"] = self.size_bytes
        out["requested"] = self.requested
        if self.path is not None or self.skipped is not None:
            out["skipped"] = self.skipped
        out.update({k: v for k, v in self.facts.items() if k not in out})
        out.update({k: getattr(self, k) for k in self._FLAGS if getattr(self, k)})
        if self.notes:
            out["notes"] = list(self.notes)
        out.update({k: getattr(self, k) for k in self._MEASURED if getattr(self, k) is not None})
        if self.serving_memory_mb:
            out["serving_memory_mb"] = self.serving_memory_mb
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Row":
        """A row of report.json, of this schema or an older one: unknown keys become facts, missing ones
        their defaults."""
        names = cls.field_names()
        known = {k: v for k, v in d.items() if k in names}
        known["notes"] = list(known.get("notes") or [])
        known["requested"] = bool(known.get("requested", False))
        known["required"] = bool(known.get("required", False))
        known["serving_memory_mb"] = dict(known.get("serving_memory_mb") or {})
        return cls(**known, facts={k: v for k, v in d.items() if k not in names})


def jsonable(obj):
    """Plain JSON types: str keys, lists, str paths, Python numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, Row):
        return jsonable(obj.to_dict())
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj
