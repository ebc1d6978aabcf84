"""Engine building without TensorRT: the Polygraphy loader chain edgefocal constructs (Polygraphy's
loaders are lazy, so the arguments edgefocal passes to them are checked here and the chain runs up to the
point where it imports TensorRT), the 8.x/10.x/11.x branching against `fake_tensorrt`, the trtexec path against `fake_trtexec`
(both FAKES, trt_fakes.py), and the conformance check on exactly the file TensorRT parses."""
from __future__ import annotations

import json
import sys

import onnx
import pytest
from trt_fakes import fake_tensorrt, fake_trtexec

from edgefocal.errors import BadInput, EdgefocalError, MissingDependency
from edgefocal.export import onnx_from_torch
from edgefocal.backends.tensorrt.conformance import assert_tensorrt_qdq, check_tensorrt_qdq
from qdq_helpers import qdq_onnx_for_tensorrt
from edgefocal.backends.tensorrt import engine as engine_mod
from edgefocal.backends.tensorrt import polygraphy_build
from edgefocal.backends.tensorrt.engine import (
    EngineSpec,
    build_engine,
    engine_from_onnx,
    engine_with_trtexec,
    import_tensorrt,
    onnx_to_parse,
)
from edgefocal.backends.tensorrt.strong_typing import typing_plan

pytest.importorskip("polygraphy", reason="engines are built through Polygraphy: pip install 'edgefocal[tensorrt]'")
pytest.importorskip("onnx_graphsurgeon", reason="the FP16 conversion needs it: pip install 'edgefocal[tensorrt]'")

from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, PostprocessConfig  # noqa: E402

GPU_JSON = {"Layers": [{"Name": "{ForeignNode[/stem/proj/Conv.../head/fc/Gemm]}", "LayerType": "Myelin",
                        "Inputs": [{"Name": "input"}], "Outputs": [{"Name": "logits"}]}]}
DLA_JSON = {"Layers": [
    {"Name": "input to nvm", "LayerType": "Reformat", "Inputs": [{"Name": "input"}], "Outputs": [{"Name": "i_nvm"}]},
    {"Name": "{ForeignNode[/stem/proj/Conv.../layers.3/Add]}", "LayerType": "ForeignNode",
     "Inputs": [{"Name": "i_nvm"}], "Outputs": [{"Name": "f_nvm"}]},
    {"Name": "f from nvm", "LayerType": "Reformat", "Inputs": [{"Name": "f_nvm"}], "Outputs": [{"Name": "f"}]},
    {"Name": "{ForeignNode[/head/norm/LayerNormalization.../head/fc/Gemm]}", "LayerType": "Myelin",
     "Inputs": [{"Name": "f"}], "Outputs": [{"Name": "logits"}]}]}


@pytest.fixture(scope="module")
def tiny_paths(tiny_focalnet, fmnist_calibration, tmp_path_factory):
    d = tmp_path_factory.mktemp("engine")
    fp32 = onnx_from_torch(tiny_focalnet, (1, 32, 32), d / "tiny.onnx")
    qdq = d / "tiny_qdq.onnx"
    qdq_onnx_for_tensorrt(fp32, fmnist_calibration[:32], "focalnet", qdq, log=lambda s: None)
    return fp32, qdq


@pytest.fixture
def fake_trt(monkeypatch):
    """Install a FAKE tensorrt of a given version into sys.modules for the test's duration."""
    def install(version: str):
        trt = fake_tensorrt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt
    return install


@pytest.fixture
def chain(monkeypatch):
    """Polygraphy's loaders as edgefocal constructs them: each class records the arguments it was given
    (by class name) and is otherwise Polygraphy's own."""
    import polygraphy.backend.trt as polygraphy_trt

    made: dict[str, tuple[tuple, dict]] = {}

    def recording(cls):
        class Recording(cls):
            def __init__(self, *args, **kwargs):
                made[cls.__name__] = (args, kwargs)
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(polygraphy_trt, cls.__name__, Recording)

    for cls in (EngineBytesFromNetwork, PostprocessConfig):
        recording(cls)
    return made


@pytest.fixture
def no_build(monkeypatch, chain):
    """Replace the two calls that need TensorRT itself; record the loader chain that would be run."""
    seen = {"chain": chain}

    def build_serialized(loader):
        seen["loader"] = loader
        return b"fake-plan"

    monkeypatch.setattr(polygraphy_build, "build_serialized", build_serialized)
    monkeypatch.setattr(polygraphy_build, "inspector_json", lambda plan: seen.get("inspector", GPU_JSON))
    return seen


def test_loader_chain_strongly_typed(fake_trt, chain, tmp_path):
    fake_trt("10.3.0")
    spec = EngineSpec("int8", (1, 32, 32), min_batch=1, opt_batch=4, max_batch=16, workspace_mib=256,
                      timing_cache=tmp_path / "tc.bin", sparse_weights=True)
    loader = polygraphy_build.engine_loader(tmp_path / "m.fp16.onnx", spec, typing_plan("10.3.0", "int8"))
    assert isinstance(loader, EngineBytesFromNetwork) and loader.timing_cache_path == str(tmp_path / "tc.bin")
    network, config = chain["EngineBytesFromNetwork"][0]
    assert isinstance(network, NetworkFromOnnxPath) and network.path == str(tmp_path / "m.fp16.onnx")
    assert network.strongly_typed is True
    assert isinstance(config, CreateConfig) and not (config.fp16 or config.int8)  # precision from the graph
    shapes = config.profiles[0]["input"]
    assert (shapes.min, shapes.opt, shapes.max) == ((1, 1, 32, 32), (4, 1, 32, 32), (16, 1, 32, 32))
    assert config.memory_pool_limits == {"WORKSPACE": 256 << 20}
    assert config.timing_cache_path == str(tmp_path / "tc.bin") and config.sparse_weights is True
    assert config.profiling_verbosity == "DETAILED" and config.use_dla is False


def test_loader_chain_weakly_typed_before_tensorrt_10(fake_trt, chain, tmp_path):
    fake_trt("8.6.1")
    loader = polygraphy_build.engine_loader(tmp_path / "m.onnx", EngineSpec("int8", (1, 32, 32)),
                                            typing_plan("8.6.1", "int8"))
    network, config = chain["EngineBytesFromNetwork"][0]
    assert network.strongly_typed is False and config.fp16 and config.int8
    assert loader.timing_cache_path is None and config.timing_cache_path is None


def test_dla_core_is_set_by_edgefocal_not_polygraphy_default(fake_trt, chain, tmp_path):
    trt = fake_trt("10.3.0")
    spec = EngineSpec("fp16", (1, 32, 32), min_batch=4, opt_batch=4, max_batch=4, dla_core=1)
    polygraphy_build.engine_loader(tmp_path / "m.onnx", spec, typing_plan("10.3.0", "fp16"))
    post = chain["EngineBytesFromNetwork"][0][1]
    created, apply = chain["PostprocessConfig"][0]
    assert isinstance(post, PostprocessConfig)
    assert isinstance(created, CreateConfig) and created.use_dla is False  # no PREFER_PRECISION_CONSTRAINTS
    config = type("Config", (), {"default_device_type": None, "DLA_core": None, "flags": []})()
    config.set_flag = config.flags.append
    apply(type("Builder", (), {"num_DLA_cores": 2})(), None, config)
    assert (config.default_device_type, config.DLA_core, config.flags) == (trt.DeviceType.DLA, 1, ["GPU_FALLBACK"])
    with pytest.raises(BadInput, match="DLA core 1 requested, this device has 0"):
        apply(type("Builder", (), {"num_DLA_cores": 0})(), None, config)


def test_polygraphy_runs_until_it_imports_tensorrt(fake_trt, tiny_paths, monkeypatch):
    fake_trt("10.3.0")
    spec = EngineSpec("fp32", (1, 32, 32))
    loader = polygraphy_build.engine_loader(tiny_paths[0], spec, typing_plan("10.3.0", "fp32"))
    monkeypatch.delitem(sys.modules, "tensorrt")
    with pytest.raises(EdgefocalError, match="TensorRT could not build the engine.*tensorrt"):
        polygraphy_build.build_serialized(loader)


@pytest.mark.parametrize("version,precision,strongly_typed,flags,parsed", [
    ("10.3.0.30", "int8", True, ["STRONGLY_TYPED"], "m.fp16.onnx"),
    ("11.4.0", "fp16", True, ["STRONGLY_TYPED", "SPARSE_WEIGHTS"], "m.fp16.onnx"),
    ("10.3.0", "fp32", True, ["STRONGLY_TYPED"], "tiny.onnx"),
    ("8.6.1", "int8", False, ["FP16", "INT8"], "tiny_qdq.onnx"),
])
def test_engine_from_onnx_per_version(version, precision, strongly_typed, flags, parsed, fake_trt, no_build,
                                      tiny_paths, tmp_path):
    fake_trt(version)
    onnx_path = tiny_paths[1] if precision == "int8" else tiny_paths[0]
    spec = EngineSpec(precision, (1, 32, 32), timing_cache=tmp_path / "cache" / "tc.bin",
                      sparse_weights="SPARSE_WEIGHTS" in flags)
    result = engine_from_onnx(onnx_path, tmp_path / "m.engine", spec, log=lambda s: None)
    assert (result.strongly_typed, result.flags, result.onnx_built.name) == (strongly_typed, flags, parsed)
    network = no_build["chain"]["EngineBytesFromNetwork"][0][0]
    assert network.path == str(result.onnx_built)  # Polygraphy parses the checked file
    assert (tmp_path / "m.engine").read_bytes() == b"fake-plan" and (tmp_path / "cache").is_dir()
    assert result.builder == "polygraphy" and result.tensorrt_version == version
    assert result.residency() == {"GPU": 1}


def test_engine_from_onnx_dla_residency(fake_trt, no_build, tiny_paths, tmp_path):
    fake_trt("10.3.0")
    no_build["inspector"] = DLA_JSON
    spec = EngineSpec("int8", (1, 32, 32), min_batch=2, opt_batch=2, max_batch=2, dla_core=0)
    result = engine_from_onnx(tiny_paths[1], tmp_path / "m.engine", spec, log=lambda s: None)
    assert result.flags == ["STRONGLY_TYPED", "GPU_FALLBACK"]
    assert result.residency() == {"DLA": 1, "GPU": 1, "DLA transfer": 2}


def test_dla_with_dynamic_batch_is_refused(fake_trt, no_build, tiny_paths, tmp_path):
    fake_trt("10.3.0")
    with pytest.raises(BadInput, match="DLA runs fixed shapes only") as e:
        engine_from_onnx(tiny_paths[1], tmp_path / "m.engine", EngineSpec("int8", (1, 32, 32), dla_core=0),
                         log=lambda s: None)
    assert "min_batch = opt_batch = max_batch" in e.value.hint and "loader" not in no_build


def test_engine_with_trtexec_10x(tiny_paths, tmp_path):
    exe = fake_trtexec(tmp_path)
    spec = EngineSpec("int8", (1, 32, 32), min_batch=2, opt_batch=2, max_batch=2, dla_core=0)
    result = engine_with_trtexec(tiny_paths[1], tmp_path / "m.engine", spec, exe, log=lambda s: None)
    argv = json.loads((tmp_path / "m.engine.argv").read_text())
    assert "--stronglyTyped" in argv and f"--onnx={tmp_path / 'm.fp16.onnx'}" in argv and "--int8" not in argv
    assert (result.builder, result.tensorrt_version, result.strongly_typed) == ("trtexec", "10.3.0", True)
    assert result.residency() == {"DLA": 1, "GPU": 1, "DLA transfer": 2}


def test_engine_with_trtexec_refuses_unknown_version(tiny_paths, tmp_path):
    exe = fake_trtexec(tmp_path, banner="trtexec (a wrapper)")
    with pytest.raises(BadInput, match="cannot tell the TensorRT version"):
        engine_with_trtexec(tiny_paths[1], tmp_path / "m.engine", EngineSpec("int8", (1, 32, 32)), exe,
                            log=lambda s: None)
    assert not (tmp_path / "m.engine").exists()


def test_build_engine_without_tensorrt(tiny_paths, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_mod, "import_tensorrt", lambda: None)
    monkeypatch.setattr(engine_mod, "find_trtexec", lambda explicit=None: None)
    with pytest.raises(MissingDependency, match="no tensorrt module, no trtexec"):
        build_engine(tiny_paths[0], tmp_path / "m.engine", EngineSpec("fp16", (1, 32, 32)))


def test_type_stubs_alone_are_not_tensorrt(tmp_path, monkeypatch):
    """tensorrt-stubs installs tensorrt/__init__.pyi, which imports as an empty namespace package."""
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("__version__: str\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    assert import_tensorrt() is None
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3.0"))
    assert import_tensorrt() is sys.modules["tensorrt"]


def _fp16_with_qdq_blocked(onnx_path, out, log=print):
    """The conversion this project used before: Q/DQ left FP32, so a Cast sits between DQ and Conv."""
    import onnx_graphsurgeon as gs
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True,
                                    op_block_list=["QuantizeLinear", "DequantizeLinear"])
    graph = gs.import_onnx(half)
    graph.toposort()
    onnx.save(gs.export_onnx(graph), str(out))
    return out


def test_conformance_runs_on_the_file_tensorrt_parses(tiny_paths, tmp_path, monkeypatch):
    _, qdq = tiny_paths
    assert {v.rule for v in assert_tensorrt_qdq(qdq)} <= {"residual-add"}  # the file before conversion passes
    spec = EngineSpec("int8", (1, 32, 32))
    plan = typing_plan("11.4.0", "int8")
    parsed = onnx_to_parse(qdq, tmp_path / "m.engine", spec, plan, log=lambda s: None)
    assert parsed == tmp_path / "m.fp16.onnx" and {v.rule for v in check_tensorrt_qdq(parsed)} <= {"residual-add"}
    monkeypatch.setattr(engine_mod, "fp16_onnx_for_strong_typing", _fp16_with_qdq_blocked)
    with pytest.raises(BadInput, match=r"m\.fp16\.onnx does not follow TensorRT's Q/DQ rules"):
        onnx_to_parse(qdq, tmp_path / "m.engine", spec, plan, log=lambda s: None)
    assert "cast-after-dq" in {v.rule for v in check_tensorrt_qdq(tmp_path / "m.fp16.onnx")}


def test_weakly_typed_plan_parses_the_qdq_file_itself(tiny_paths, tmp_path):
    _, qdq = tiny_paths
    parsed = onnx_to_parse(qdq, tmp_path / "m.engine", EngineSpec("int8", (1, 32, 32)),
                           typing_plan("8.6.2", "int8"), log=lambda s: None)
    assert parsed == qdq and not (tmp_path / "m.fp16.onnx").exists()


def test_fp32_graph_is_refused_for_int8_after_conversion(tiny_paths, tmp_path):
    with pytest.raises(BadInput, match="no-qdq"):
        onnx_to_parse(tiny_paths[0], tmp_path / "m.engine", EngineSpec("int8", (1, 32, 32)),
                      typing_plan("10.3.0", "int8"), log=lambda s: None)
