"""ONNX → TensorRT engine: through Polygraphy where TensorRT's Python bindings import, else through
`trtexec` (JetPack ships it under /usr/src/tensorrt/bin).

Both paths share one decision (`strong_typing.typing_plan`: strongly typed from TensorRT 10 on, the ONNX
converted to FP16 for FP16 and INT8 builds) and one check: for INT8, `conformance.check_tensorrt_qdq`
runs on the file TensorRT parses — the FP16 conversion where there is one — before anything is built."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable

from edgefocal.errors import BadInput, MissingDependency
import edgefocal.backends.tensorrt.residency as residency
from edgefocal.backends.tensorrt.strong_typing import (
    TypingPlan,
    fp16_onnx_for_strong_typing,
    major_version,
    typing_plan,
)
from edgefocal.backends.tensorrt.trtexec import JETPACK_TRTEXEC, find_trtexec

__all__ = ["EngineSpec", "BuildResult", "import_tensorrt", "find_trtexec", "build_engine", "engine_from_onnx",
           "engine_with_trtexec", "onnx_to_parse", "major_version", "JETPACK_TRTEXEC"]


@dataclass
class EngineSpec:
    """What to build; mirrors recipe.tensorrt plus the model's input."""

    precision: str  # fp32 | fp16 | int8
    input_shape: tuple[int, ...]  # C, H, W
    input_name: str = "input"
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mib: int = 2048
    timing_cache: Path | None = None
    dla_core: int | None = None
    sparse_weights: bool = False

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        mn, opt, mx = ((b, *self.input_shape) for b in (self.min_batch, self.opt_batch, self.max_batch))
        return mn, opt, mx

    def check(self) -> None:
        """Refuse what TensorRT would quietly turn into something else."""
        if self.dla_core is not None and not self.min_batch == self.opt_batch == self.max_batch:
            raise BadInput(f"DLA core {self.dla_core} with a dynamic batch {self.min_batch}/{self.opt_batch}/"
                           f"{self.max_batch}: the DLA runs fixed shapes only, so every layer would fall back "
                           "to the GPU", hint="set tensorrt.min_batch = opt_batch = max_batch for a DLA engine")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["timing_cache"] = str(self.timing_cache) if self.timing_cache else None
        return d


@dataclass
class BuildResult:
    engine: Path
    tensorrt_version: str
    builder: str  # "polygraphy" | "trtexec"
    strongly_typed: bool
    flags: list[str]
    onnx_built: Path  # the ONNX actually parsed (the FP16 conversion for strongly typed FP16/INT8)
    layers: list[dict] = field(default_factory=list)  # [{"name", "type", "device"}]

    def residency(self) -> dict[str, int]:
        return residency.counts(self.layers)


def import_tensorrt() -> ModuleType | None:
    """The tensorrt module, or None. A `tensorrt` without `__version__` is not TensorRT: installing
    tensorrt-stubs into site-packages leaves a `tensorrt/` folder of .pyi files that imports as an
    empty namespace package."""
    try:
        import tensorrt
    except Exception:  # the bindings wheel raises OSError/ImportError without NVIDIA's libraries
        return None
    return tensorrt if isinstance(getattr(tensorrt, "__version__", None), str) else None


def onnx_to_parse(onnx_path: Path, engine_path: Path, spec: EngineSpec, plan: TypingPlan,
                  log: Callable[[str], None] = print) -> Path:
    """The file TensorRT will parse (an FP16 conversion where the plan asks for one), Q/DQ-checked for INT8."""
    onnx_built = onnx_path
    if plan.fp16_onnx:
        onnx_built = fp16_onnx_for_strong_typing(onnx_path, engine_path.with_suffix(".fp16.onnx"), log)
    if spec.precision == "int8":
        from edgefocal.backends.tensorrt.conformance import assert_tensorrt_qdq

        for warning in assert_tensorrt_qdq(onnx_built):
            log(str(warning))
    return onnx_built


def _flags(plan: TypingPlan, spec: EngineSpec) -> list[str]:
    """The builder settings, named as TensorRT names them, for the report and the sidecar."""
    names = ["STRONGLY_TYPED"] if plan.strongly_typed else []
    wanted = (("FP16", plan.fp16_flag), ("INT8", plan.int8_flag), ("SPARSE_WEIGHTS", spec.sparse_weights),
              ("GPU_FALLBACK", spec.dla_core is not None))
    names += [name for name, on in wanted if on]
    return names


def engine_from_onnx(onnx_path: Path, engine_path: Path, spec: EngineSpec,
                     log: Callable[[str], None] = print) -> BuildResult:
    """Build with TensorRT's Python bindings through Polygraphy's loaders; write the engine and timing cache."""
    import tensorrt as trt

    import edgefocal.backends.tensorrt.polygraphy_build as polygraphy_build

    spec.check()
    version = str(trt.__version__)
    plan = typing_plan(version, spec.precision)
    onnx_built = onnx_to_parse(onnx_path, engine_path, spec, plan, log)
    if spec.timing_cache is not None:
        spec.timing_cache.parent.mkdir(parents=True, exist_ok=True)
        log(f"timing cache {spec.timing_cache} ({'reused' if spec.timing_cache.is_file() else 'new'})")
    flags = _flags(plan, spec)
    log(f"building TensorRT {version} engine through Polygraphy ({', '.join(flags) or 'FP32, weakly typed'})")
    serialized = polygraphy_build.build_serialized(polygraphy_build.engine_loader(onnx_built, spec, plan))
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(serialized)
    layers = residency.classify(residency.parse_layers(polygraphy_build.inspector_json(serialized)), spec.dla_core)
    return BuildResult(engine_path, version, "polygraphy", plan.strongly_typed, flags, onnx_built, layers)


def engine_with_trtexec(onnx_path: Path, engine_path: Path, spec: EngineSpec, trtexec: Path,
                        log: Callable[[str], None] = print) -> BuildResult:
    """Build with trtexec, its TensorRT version read from its banner (refused when unreadable)."""
    from edgefocal.backends.tensorrt.trtexec import run_trtexec, trtexec_args, trtexec_version

    spec.check()
    version = trtexec_version(trtexec)
    plan = typing_plan(version, spec.precision)
    onnx_built = onnx_to_parse(onnx_path, engine_path, spec, plan, log)
    layer_info = engine_path.with_suffix(".layers.json")
    run_trtexec(trtexec_args(trtexec, onnx_built, engine_path, spec, plan, version, layer_info), engine_path, log)
    layers = []
    if layer_info.is_file():
        parsed = residency.parse_layers(json.loads(layer_info.read_text()))
        layers = residency.classify(parsed, spec.dla_core)
    return BuildResult(engine_path, version, "trtexec", plan.strongly_typed, _flags(plan, spec), onnx_built, layers)


def build_engine(onnx_path: Path, engine_path: Path, spec: EngineSpec, trtexec: Path | None = None,
                 log: Callable[[str], None] = print) -> BuildResult:
    """Polygraphy when TensorRT's Python bindings import, else trtexec, else MissingDependency."""
    if import_tensorrt() is not None:
        return engine_from_onnx(onnx_path, engine_path, spec, log)
    exe = find_trtexec(trtexec)
    if exe is not None:
        return engine_with_trtexec(onnx_path, engine_path, spec, exe, log)
    raise MissingDependency("TensorRT is not installed here (no tensorrt module, no trtexec)",
                            hint="build the engine on the target device (Jetson/GPU) with the printed "
                                 "`python -m edgefocal engine ...` command")
