"""TensorRT target. Without TensorRT (here, CI): the Q/DQ ONNX is built, verified through ONNX Runtime as a
proxy, and the engine is skipped with the command that builds it. `FakeTensorRT` — a fake, standing in
for the tensorrt module only to test the 10.x/11.x branching — records what the builder was asked to do.
Real engine tests carry the `tensorrt` marker and skip where TensorRT is absent."""
from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgefocal.errors import BadInput, MissingDependency
from edgefocal.export import onnx_from_torch
from edgefocal.recipe import Recipe
from edgefocal.targets.base import BuildContext
from edgefocal.targets.tensorrt import engine_command
from edgefocal.targets.tensorrt import engine as engine_mod
from edgefocal.targets.tensorrt.engine import EngineSpec, engine_from_onnx, trtexec_args
from edgefocal.targets.tensorrt.sidecar import check_engine_device, read_sidecar, write_sidecar


def FakeTensorRT(version: str, dla_cores: int = 0) -> types.SimpleNamespace:
    """A FAKE tensorrt module (not TensorRT): the documented API surface engine_from_onnx uses, with
    11.x lacking the FP16/INT8 builder flags as the real 11.x does. Calls are recorded in `.calls`."""
    calls: dict = {"flags": [], "profiles": [], "pool": None, "network_flags": None, "parsed": None}
    flags = ["SPARSE_WEIGHTS", "GPU_FALLBACK"] + ([] if version.startswith("11") else ["FP16", "INT8"])
    layers = [{"Name": "{ForeignNode[/stem/Conv.../layers.3/Add]}", "LayerType": "DLA"} if dla_cores else
              {"Name": "conv1", "LayerType": "CaskConvolution"}, {"Name": "head", "LayerType": "CaskGemm"}]

    class Config:
        profiling_verbosity = None
        default_device_type = None
        DLA_core = None

        def set_memory_pool_limit(self, pool, size): calls["pool"] = (pool, size)
        def set_flag(self, f): calls["flags"].append(f)
        def add_optimization_profile(self, p): calls["profiles"].append(p.shapes)
        def create_timing_cache(self, data): calls["cache_in"] = data; return types.SimpleNamespace(serialize=lambda: b"cache")
        def set_timing_cache(self, cache, ignore_mismatch): pass
        def get_timing_cache(self): return types.SimpleNamespace(serialize=lambda: b"cache")

    class Profile:
        shapes = None

        def set_shape(self, name, mn, opt, mx): self.shapes = (name, mn, opt, mx)

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger): pass
        def create_network(self, f): calls["network_flags"] = f; return object()
        def create_builder_config(self): return Config()
        def create_optimization_profile(self): return Profile()
        def build_serialized_network(self, network, config): return b"fake-plan"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger): pass
        def parse_from_file(self, path): calls["parsed"] = path; return True

    engine = types.SimpleNamespace(create_engine_inspector=lambda: types.SimpleNamespace(
        get_engine_information=lambda fmt: json.dumps({"Layers": layers})))
    return types.SimpleNamespace(
        __version__=version, calls=calls,
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        Builder=Builder, OnnxParser=OnnxParser,
        Runtime=lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda plan: engine),
        BuilderFlag=types.SimpleNamespace(**{f: f for f in flags}),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
        ProfilingVerbosity=types.SimpleNamespace(DETAILED="DETAILED"),
        DeviceType=types.SimpleNamespace(DLA="DLA", GPU="GPU"),
        LayerInformationFormat=types.SimpleNamespace(JSON="JSON"),
    )


@pytest.fixture(scope="module")
def tiny_onnx(tiny_focalnet, tmp_path_factory):
    return onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("trt") / "tiny.onnx")


def test_tensorrt10_int8_uses_builder_flags(tiny_onnx, tmp_path):
    trt = FakeTensorRT("10.3.0")
    spec = EngineSpec("int8", (1, 32, 32), min_batch=1, opt_batch=4, max_batch=16, workspace_mib=256,
                      timing_cache=tmp_path / "cache.bin")
    result = engine_from_onnx(tiny_onnx, tmp_path / "m.engine", spec, trt, log=lambda s: None)
    assert trt.calls["flags"] == ["FP16", "INT8"] and not result.strongly_typed
    assert trt.calls["parsed"] == str(tiny_onnx)  # the Q/DQ graph as is
    assert trt.calls["profiles"] == [("input", (1, 1, 32, 32), (4, 1, 32, 32), (16, 1, 32, 32))]
    assert trt.calls["pool"] == ("WORKSPACE", 256 << 20)
    assert (tmp_path / "m.engine").read_bytes() == b"fake-plan"
    assert (tmp_path / "cache.bin").read_bytes() == b"cache"  # written for the next build
    assert result.residency() == {"GPU": 2}


def test_tensorrt11_is_strongly_typed_without_flags(tiny_onnx, tmp_path):
    trt = FakeTensorRT("11.4.0")
    spec = EngineSpec("fp16", (1, 32, 32), sparse_weights=True)
    result = engine_from_onnx(tiny_onnx, tmp_path / "m.engine", spec, trt, log=lambda s: None)
    assert result.strongly_typed and trt.calls["flags"] == ["SPARSE_WEIGHTS"]
    # the parsed graph is an FP16 conversion with FP32 I/O
    fp16 = onnx.load(trt.calls["parsed"])
    assert trt.calls["parsed"].endswith(".fp16.onnx")
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer)


def test_dla_core_with_gpu_fallback_and_residency(tiny_onnx, tmp_path):
    trt = FakeTensorRT("10.3.0", dla_cores=2)
    result = engine_from_onnx(tiny_onnx, tmp_path / "m.engine", EngineSpec("int8", (1, 32, 32), dla_core=1), trt,
                              log=lambda s: None)
    assert "GPU_FALLBACK" in trt.calls["flags"]
    assert result.residency() == {"DLA": 1, "GPU": 1}
    with pytest.raises(BadInput, match="DLA core 0 requested, this device has 0"):
        engine_from_onnx(tiny_onnx, tmp_path / "n.engine", EngineSpec("int8", (1, 32, 32), dla_core=0),
                         FakeTensorRT("10.3.0"), log=lambda s: None)


def test_trtexec_flags_per_version(tmp_path):
    spec = EngineSpec("int8", (1, 32, 32), dla_core=0, sparse_weights=True)
    a10 = trtexec_args(Path("trtexec"), Path("m.onnx"), Path("m.engine"), spec, "10.3.0", Path("l.json"))
    a11 = trtexec_args(Path("trtexec"), Path("m.onnx"), Path("m.engine"), spec, "11.4.0", Path("l.json"))
    assert {"--fp16", "--int8", "--useDLACore=0", "--allowGPUFallback", "--sparsity=enable"} <= set(a10)
    assert "--int8" not in a11 and "--fp16" not in a11
    assert "--minShapes=input:1x1x32x32" in a10 and "--memPoolSize=workspace:2048M" in a10


def test_sidecar_guard_refuses_other_device(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    facts = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7", "l4t": "R36.3.0"}
    write_sidecar(engine, facts, {"flags": ["INT8"]}, "ab" * 32, "python -m edgefocal engine --onnx m.onnx")
    assert read_sidecar(engine)["l4t"] == "R36.3.0"
    assert check_engine_device(engine, dict(facts))["onnx_sha256"] == "ab" * 32
    assert check_engine_device(engine, {**facts, "tensorrt_version": "10.3.0.30"})  # bindings' 4-part version
    with pytest.raises(BadInput, match="TensorRT 10.3.0 .here: 11.4.0.*GPU Orin") as e:
        check_engine_device(engine, {**facts, "tensorrt_version": "11.4.0", "gpu_name": "NVIDIA H100"})
    assert "python -m edgefocal engine --onnx m.onnx" in e.value.hint
    with pytest.raises(BadInput, match="no sidecar"):
        check_engine_device(tmp_path / "other.engine", facts)


def _ctx(tmp_path, onnx_path, calibration, **tensorrt):
    recipe = Recipe(tensorrt=tensorrt, output=tmp_path / "out")
    return BuildContext(recipe=recipe, model=None, data_config={"input_size": (1, 32, 32)}, class_names=[],
                        calibration=calibration, onnx_fp32=onnx_path, workdir=tmp_path / "stage", log=lambda s: None)


def test_build_without_tensorrt_skips_engine_with_command(tiny_onnx, fmnist_calibration, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_mod, "import_tensorrt", lambda: None)
    monkeypatch.setattr("edgefocal.targets.tensorrt.import_tensorrt", lambda: None)
    monkeypatch.setattr("edgefocal.targets.tensorrt.find_trtexec", lambda explicit=None: None)
    from roundtrip import build

    ctx = _ctx(tmp_path, tiny_onnx, fmnist_calibration[:32], require_engine=True, dla_core=0)
    proxy, engine = build("tensorrt", "int8", ctx)
    assert proxy.info["proxy_for"] == "TensorRT engine" and proxy.info["conformance"] == "pass"
    assert engine.make_runner is None and "not installed" in engine.skipped and engine.info["required"] is True
    cmd = engine.info["engine_command"]
    assert cmd.startswith("python -m edgefocal engine --onnx ") and "--precision int8" in cmd and "--dla-core 0" in cmd
    with proxy.make_runner() as runner:
        logits = runner.infer(fmnist_calibration[:4])
    assert logits.shape == (4, 10) and "proxy" in runner.device
    # the printed command parses with the engine subcommand
    import shlex

    from edgefocal.cli import _build_parser

    args = _build_parser().parse_args(shlex.split(cmd)[3:])
    assert args.command == "engine" and args.batch == (1, 8, 32) and args.dla_core == 0


def test_engine_command_is_exact():
    spec = EngineSpec("fp16", (3, 224, 224), min_batch=1, opt_batch=4, max_batch=8, timing_cache=Path("tc.bin"))
    assert engine_command(Path("out/m.onnx"), Path("out/m.engine"), spec) == (
        "python -m edgefocal engine --onnx out/m.onnx --precision fp16 --output out/m.engine "
        "--batch 1,4,8 --workspace-mib 2048 --timing-cache tc.bin")


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_engine_matches_proxy(tiny_onnx, fmnist_calibration, tmp_path):
    """On a TensorRT machine: build an FP16 engine, run it, compare with ONNX Runtime."""
    import onnxruntime as ort

    from edgefocal.targets.tensorrt import TensorRTRunner, build_and_describe

    spec = EngineSpec("fp16", (1, 32, 32), max_batch=16, opt_batch=8, timing_cache=tmp_path / "tc.bin")
    engine = tmp_path / "m.engine"
    facts = build_and_describe(tiny_onnx, engine, spec, None, "python -m edgefocal engine ...", log=lambda s: None)
    assert (tmp_path / "tc.bin").is_file() and facts["residency"].get("GPU", 0) > 0
    x = fmnist_calibration[:8]
    want = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with TensorRTRunner(engine) as runner:
        got = runner.infer(x)
        assert len(runner.timed_infer(x, 3)) == 3
    assert np.abs(got - want).max() < 5e-2
