"""ONNX → TensorRT engine, through the Python API (10.x or 11.x) or trtexec when only that is installed.

TensorRT 10.x (JetPack 6 ships 10.3) builds a weakly typed network: the Q/DQ graph plus the FP16/INT8
builder flags let it pick FP16 for the layers the Q/DQ nodes leave in float. TensorRT 11 removes those
flags: networks are strongly typed and the precision of every layer comes from the ONNX, so for FP16
(and the float parts of an INT8 Q/DQ graph) the ONNX is converted to FP16 first — with NVIDIA Model
Optimizer's AutoCast when installed (NVIDIA's documented migration path), else ONNX Runtime's float16
converter, keeping inputs/outputs FP32 and the Q/DQ nodes in FP32.

Written against the documented API (Builder, OnnxParser, IBuilderConfig.set_memory_pool_limit,
create_optimization_profile, create_timing_cache/set_timing_cache, BuilderFlag.SPARSE_WEIGHTS/
GPU_FALLBACK, DeviceType.DLA, IEngineInspector); TensorRT cannot be installed on the development machine,
so the version branching is tested against a fake and the build itself on a TensorRT runner."""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable

from edgefocal.errors import BadInput, EdgefocalError, MissingDependency

JETPACK_TRTEXEC = Path("/usr/src/tensorrt/bin/trtexec")


@dataclass
class EngineSpec:
    """What to build; mirrors recipe.tensorrt plus the model's input."""

    precision: str  # fp32 | fp16 | int8
    input_shape: tuple[int, int, int]  # C, H, W
    input_name: str = "input"
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mib: int = 2048
    timing_cache: Path | None = None
    dla_core: int | None = None
    sparse_weights: bool = False

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return tuple((b, *self.input_shape) for b in (self.min_batch, self.opt_batch, self.max_batch))  # type: ignore[return-value]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["timing_cache"] = str(self.timing_cache) if self.timing_cache else None
        return d


@dataclass
class BuildResult:
    engine: Path
    tensorrt_version: str
    builder: str  # "python" | "trtexec"
    strongly_typed: bool
    flags: list[str]
    onnx_built: Path  # the ONNX actually parsed (an FP16 conversion under TensorRT 11)
    layers: list[dict] = field(default_factory=list)  # [{"name", "type", "device"}]

    def residency(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for layer in self.layers:
            out[layer["device"]] = out.get(layer["device"], 0) + 1
        return out


def import_tensorrt() -> ModuleType | None:
    try:
        import tensorrt  # noqa: F401

        return tensorrt
    except Exception:  # the bindings wheel raises OSError/ImportError without NVIDIA's libraries
        return None


def find_trtexec(explicit: Path | None = None) -> Path | None:
    if explicit is not None:
        if not Path(explicit).is_file():
            raise BadInput(f"trtexec {explicit} does not exist", hint="point tensorrt.trtexec at the binary, "
                           f"e.g. {JETPACK_TRTEXEC} on JetPack")
        return Path(explicit)
    found = shutil.which("trtexec")
    if found:
        return Path(found)
    return JETPACK_TRTEXEC if JETPACK_TRTEXEC.is_file() else None


def major_version(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise BadInput(f"cannot read the TensorRT version '{version}'", hint="reinstall TensorRT") from None


def fp16_onnx_for_strong_typing(onnx_path: Path, out: Path, log: Callable[[str], None] = print) -> Path:
    """FP16 copy of an ONNX (FP32 or Q/DQ) for a strongly typed network: FP32 I/O, Q/DQ kept in FP32."""
    import onnx

    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision  # NVIDIA's documented path

        model = convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True)
        how = "ModelOpt AutoCast"
    except ImportError:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True,
                                         op_block_list=["QuantizeLinear", "DequantizeLinear"])
        how = "ONNX Runtime's float16 converter (install nvidia-modelopt for AutoCast)"
    onnx.save(model, str(out))
    log(f"converted {onnx_path.name} to FP16 for a strongly typed network ({how})")
    return out


def _parse_layers(info: dict | list, dla: bool) -> list[dict]:
    """Per-layer residency from the engine inspector JSON (or trtexec --exportLayerInfo).

    DLA-run subgraphs appear as one layer each ("{ForeignNode[...]}", with a DLA layer type); every
    other layer runs on the GPU."""
    layers = info.get("Layers", []) if isinstance(info, dict) else info
    out = []
    for layer in layers:
        if isinstance(layer, str):  # profiling verbosity below DETAILED gives names only
            name, ltype = layer, ""
        else:
            name, ltype = str(layer.get("Name", "")), str(layer.get("LayerType", ""))
        on_dla = "dla" in ltype.lower() or (dla and name.startswith("{ForeignNode"))
        out.append({"name": name, "type": ltype, "device": "DLA" if on_dla else "GPU"})
    return out


def layer_residency(trt: ModuleType, plan: bytes, dla: bool) -> list[dict]:
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        return []
    inspector = engine.create_engine_inspector()
    return _parse_layers(json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON)), dla)


def engine_from_onnx(onnx_path: Path, engine_path: Path, spec: EngineSpec, trt: ModuleType | None = None,
                     log: Callable[[str], None] = print) -> BuildResult:
    """Build with the TensorRT Python API; `trt` is injectable so the 10/11 branching can be tested."""
    trt = trt or import_tensorrt()
    if trt is None:
        raise MissingDependency("tensorrt (Python bindings) is not importable",
                                hint="on Jetson: install JetPack's python3-libnvinfer; elsewhere NVIDIA's tensorrt wheel")
    major = major_version(trt.__version__)
    strongly_typed = major >= 11
    onnx_built = onnx_path
    if strongly_typed and spec.precision in ("fp16", "int8"):
        onnx_built = fp16_onnx_for_strong_typing(onnx_path, engine_path.with_suffix(".fp16.onnx"), log)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # 10.x: flags 0 = explicit batch, weakly typed. 11.x: every network is strongly typed.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_built)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BadInput(f"TensorRT {trt.__version__} could not parse {onnx_built}: {errors[:400]}",
                       hint="check the ONNX with `python -m edgefocal.quantize.conformance` and re-export at opset ≥17")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mib << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    flags: list[str] = []

    def flag(name: str) -> None:
        config.set_flag(getattr(trt.BuilderFlag, name))
        flags.append(name)

    if not strongly_typed:
        if spec.precision in ("fp16", "int8"):
            flag("FP16")  # float layers between Q/DQ pairs may run FP16
        if spec.precision == "int8":
            flag("INT8")  # with Q/DQ in the graph: explicit quantization, no calibrator
    if spec.sparse_weights:
        flag("SPARSE_WEIGHTS")
    if spec.dla_core is not None:
        available = getattr(builder, "num_DLA_cores", 0)
        if spec.dla_core >= available:
            raise BadInput(f"DLA core {spec.dla_core} requested, this device has {available} DLA cores",
                           hint="drop tensorrt.dla_core (Orin Nano and datacenter GPUs have no DLA; AGX Orin has 2)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
        flag("GPU_FALLBACK")

    profile = builder.create_optimization_profile()
    mn, opt, mx = spec.shapes()
    profile.set_shape(spec.input_name, mn, opt, mx)
    config.add_optimization_profile(profile)

    cache = None
    if spec.timing_cache is not None:
        data = spec.timing_cache.read_bytes() if spec.timing_cache.is_file() else b""
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)
        log(f"timing cache {spec.timing_cache} ({'reused' if data else 'new'})")

    log(f"building TensorRT {trt.__version__} engine ({'strongly typed' if strongly_typed else 'flags ' + ','.join(flags) or 'fp32'})")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgefocalError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_built}",
                             hint="rerun with a larger tensorrt.workspace_mib, or without dla_core/sparse_weights; "
                                  "the TensorRT log above names the failing layer")
    plan = bytes(plan)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(plan)
    if cache is not None:
        spec.timing_cache.parent.mkdir(parents=True, exist_ok=True)
        spec.timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    layers = layer_residency(trt, plan, spec.dla_core is not None)
    return BuildResult(engine_path, str(trt.__version__), "python", strongly_typed, flags, onnx_built, layers)


def trtexec_version(trtexec: Path) -> str:
    """'10.3.0' from trtexec's banner ('[TensorRT v100300]')."""
    import re

    try:
        text = subprocess.run([str(trtexec), "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BadInput(f"{trtexec} does not run ({e})", hint="check the TensorRT installation") from e
    m = re.search(r"TensorRT v(\d+)", text)
    if not m:
        return "unknown"
    v = int(m.group(1))  # e.g. 100300 → 10.3.0
    return f"{v // 10000}.{(v // 100) % 100}.{v % 100}"


def trtexec_args(trtexec: Path, onnx_path: Path, engine_path: Path, spec: EngineSpec, version: str,
                 layer_info: Path) -> list[str]:
    mn, opt, mx = ("x".join(map(str, s)) for s in spec.shapes())
    args = [str(trtexec), f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
            f"--minShapes={spec.input_name}:{mn}", f"--optShapes={spec.input_name}:{opt}",
            f"--maxShapes={spec.input_name}:{mx}", f"--memPoolSize=workspace:{spec.workspace_mib}M",
            "--profilingVerbosity=detailed", f"--exportLayerInfo={layer_info}", "--skipInference"]
    if version == "unknown" or major_version(version) < 11:
        if spec.precision in ("fp16", "int8"):
            args.append("--fp16")
        if spec.precision == "int8":
            args.append("--int8")
    if spec.timing_cache is not None:
        args.append(f"--timingCacheFile={spec.timing_cache}")
    if spec.dla_core is not None:
        args += [f"--useDLACore={spec.dla_core}", "--allowGPUFallback"]
    if spec.sparse_weights:
        args.append("--sparsity=enable")
    return args


def engine_with_trtexec(onnx_path: Path, engine_path: Path, spec: EngineSpec, trtexec: Path,
                        log: Callable[[str], None] = print) -> BuildResult:
    version = trtexec_version(trtexec)
    strongly_typed = version != "unknown" and major_version(version) >= 11
    onnx_built = onnx_path
    if strongly_typed and spec.precision in ("fp16", "int8"):
        onnx_built = fp16_onnx_for_strong_typing(onnx_path, engine_path.with_suffix(".fp16.onnx"), log)
    layer_info = engine_path.with_suffix(".layers.json")
    args = trtexec_args(trtexec, onnx_built, engine_path, spec, version, layer_info)
    log("running " + shlex.join(args))
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0 or not engine_path.is_file():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise EdgefocalError(f"trtexec failed (exit {proc.returncode}): {' | '.join(tail)}",
                             hint="rerun the printed trtexec command with --verbose to see the failing layer")
    layers = _parse_layers(json.loads(layer_info.read_text()), spec.dla_core is not None) if layer_info.is_file() else []
    flags = [a for a in args if a in ("--fp16", "--int8", "--allowGPUFallback", "--sparsity=enable")]
    return BuildResult(engine_path, version, "trtexec", strongly_typed, flags, onnx_built, layers)


def build_engine(onnx_path: Path, engine_path: Path, spec: EngineSpec, trtexec: Path | None = None,
                 log: Callable[[str], None] = print) -> BuildResult:
    """The Python API when it imports, else trtexec (JetPack ships it under /usr/src/tensorrt/bin)."""
    trt = import_tensorrt()
    if trt is not None:
        return engine_from_onnx(onnx_path, engine_path, spec, trt, log)
    exe = find_trtexec(trtexec)
    if exe is not None:
        return engine_with_trtexec(onnx_path, engine_path, spec, exe, log)
    raise MissingDependency("TensorRT is not installed here (no tensorrt module, no trtexec)",
                            hint="build the engine on the target device (Jetson/GPU) with the printed "
                                 "`python -m edgefocal engine ...` command")
