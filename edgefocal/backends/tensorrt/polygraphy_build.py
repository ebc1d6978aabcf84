"""Engines through Polygraphy, NVIDIA's toolkit released and tested with every TensorRT version.

The loader chain is built lazily (Polygraphy's own idiom): `NetworkFromOnnxPath` (strongly typed per
`strong_typing.typing_plan`) → `CreateConfig` (optimization profile, workspace pool, timing cache,
sparse weights, DETAILED profiling for the inspector) → `EngineBytesFromNetwork` (saves the timing
cache). Nothing touches TensorRT until the chain is called, so the arguments are testable anywhere.

TensorRT is imported as `import tensorrt as trt` inside the functions that need it, so a type checker
reading NVIDIA's published API (tensorrt-stubs) checks every TensorRT call here."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgefocal.errors import BadInput, EdgefocalError
from edgefocal.backends.tensorrt.strong_typing import TypingPlan

if TYPE_CHECKING:
    import tensorrt as trt

    from edgefocal.backends.tensorrt.engine import EngineSpec


def dla_postprocess(dla_core: int) -> Callable[[Any, Any, Any], None]:
    """Puts the network on DLA core `dla_core` with GPU fallback.

    Own code: Polygraphy's `CreateConfig(use_dla=True)` always picks DLA core 0 (AGX Orin has cores 0 and
    1) and on 10.x adds PREFER_PRECISION_CONSTRAINTS, which strongly typed builds do not take."""

    def apply(builder: "trt.Builder", network: "trt.INetworkDefinition", config: "trt.IBuilderConfig") -> None:
        import tensorrt as trt

        available = builder.num_DLA_cores
        if dla_core >= available:
            raise BadInput(f"DLA core {dla_core} requested, this device has {available} DLA cores",
                           hint="drop tensorrt.dla_core (Orin Nano and datacenter GPUs have no DLA; AGX Orin has 2)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    return apply


def engine_loader(onnx_path: Path, spec: EngineSpec, plan: TypingPlan):
    """The lazy Polygraphy loader that builds a serialized engine of `onnx_path` (the file to parse)."""
    import tensorrt as trt
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineBytesFromNetwork,
        NetworkFromOnnxPath,
        PostprocessConfig,
        Profile,
    )

    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=plan.strongly_typed)
    mn, opt, mx = spec.shapes()
    cache = str(spec.timing_cache) if spec.timing_cache is not None else None
    config = CreateConfig(
        profiles=[Profile().add(spec.input_name, min=mn, opt=opt, max=mx)],
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: spec.workspace_mib << 20},
        load_timing_cache=cache,  # a missing file starts an empty cache
        sparse_weights=spec.sparse_weights,
        profiling_verbosity=trt.ProfilingVerbosity.DETAILED,  # the inspector's per-layer JSON needs it
        fp16=plan.fp16_flag, int8=plan.int8_flag,  # weak typing (TensorRT < 10) only
    )
    if spec.dla_core is not None:
        config = PostprocessConfig(config, dla_postprocess(spec.dla_core))
    return EngineBytesFromNetwork(network, config, save_timing_cache=cache)


def build_serialized(loader) -> bytes:
    """Run the loader chain; Polygraphy reports TensorRT's failures (parser, builder) as PolygraphyException."""
    from polygraphy.exception import PolygraphyException

    try:
        plan = loader()
    except PolygraphyException as e:
        raise EdgefocalError(f"TensorRT could not build the engine: {e}",
                             hint="the TensorRT log above names the failing node or layer; check the ONNX with "
                                  "`python -m edgefocal.backends.tensorrt.conformance FILE` and rerun with a larger "
                                  "tensorrt.workspace_mib, or without dla_core/sparse_weights") from e
    return bytes(plan)


def inspector_json(plan: bytes) -> dict:
    """The engine inspector's per-layer JSON of a serialized engine (deserialized through Polygraphy)."""
    import tensorrt as trt
    from polygraphy.backend.trt import EngineFromBytes

    engine: trt.ICudaEngine = EngineFromBytes(plan)()
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return json.loads(text)
