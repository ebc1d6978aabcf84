"""TensorRT target. Without TensorRT (here, CI): the Q/DQ ONNX is built, verified through ONNX Runtime as a
proxy, and the engine is skipped with the command that builds it. Engine building per TensorRT version
is tested in test_tensorrt_engine.py (Polygraphy's loaders, a named fake tensorrt, a fake trtexec).
Real engine tests carry the `tensorrt` marker and skip where TensorRT is absent."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgefocal.errors import BadInput
from edgefocal.export import onnx_from_torch
from edgefocal.recipe import Recipe
from edgefocal.core import BuildContext
from edgefocal.backends.tensorrt import engine_command
from edgefocal.backends.tensorrt import engine as engine_mod
from edgefocal.backends.tensorrt.engine import EngineSpec
from edgefocal.backends.tensorrt.sidecar import check_engine_device, read_sidecar, write_sidecar


@pytest.fixture(scope="module")
def tiny_onnx(tiny_focalnet, tmp_path_factory):
    return onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("trt") / "tiny.onnx")


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
    monkeypatch.setattr("edgefocal.backends.tensorrt.import_tensorrt", lambda: None)
    monkeypatch.setattr("edgefocal.backends.tensorrt.find_trtexec", lambda explicit=None: None)
    from roundtrip import build

    ctx = _ctx(tmp_path, tiny_onnx, fmnist_calibration[:32], require_engine=True, dla_core=0)
    proxy, engine = build("tensorrt", "int8", ctx)
    assert proxy.proxy_for == "TensorRT engine" and proxy.info["conformance"] == "pass"
    # the engine on paper: its predicted layer counts and the fusion spots, on the proxy's row only
    paper = proxy.info["engine_on_paper"]
    assert paper["int8"] > 0 and "not an engine" in paper["note"] and paper["layers_file"] == "tensorrt/engine_on_paper.json"
    assert (ctx.workdir / "tensorrt" / "engine_on_paper.json").exists() and "engine_on_paper" not in engine.info
    assert "int8-channels" in {s["rule"] for s in proxy.info["fusion_spots"]}  # f: 2·16+2+1 = 35 outputs
    assert engine.make_runner is None and "not installed" in engine.skipped and engine.required is True
    cmd = engine.info["engine_command"]
    assert cmd.startswith("python -m edgefocal engine --onnx ") and "--precision int8" in cmd and "--dla-core 0" in cmd
    with proxy.make_runner() as runner:
        logits = runner.infer(fmnist_calibration[:4])
    assert logits.shape == (4, 10) and "proxy" in runner.device
    # the printed command parses with the engine subcommand
    import shlex

    from edgefocal.cli import build_parser

    args = build_parser().parse_args(shlex.split(cmd)[3:])
    assert args.command == "engine" and args.batch == (1, 8, 32) and args.dla_core == 0


def test_engine_command_is_exact():
    spec = EngineSpec("fp16", (3, 224, 224), min_batch=1, opt_batch=4, max_batch=8, timing_cache=Path("tc.bin"))
    assert engine_command(Path("out/m.onnx"), Path("out/m.engine"), spec) == (
        "python -m edgefocal engine --onnx out/m.onnx --precision fp16 --output out/m.engine "
        "--batch 1,4,8 --workspace-mib 2048 --timing-cache tc.bin")


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_fp16_engine_matches_onnxruntime(tiny_onnx, fmnist_calibration, tmp_path):
    """On a TensorRT machine: an FP16 engine built through Polygraphy, run by TrtRunner, vs ONNX Runtime."""
    import onnxruntime as ort

    from edgefocal.backends.tensorrt import TensorRTRunner, build_and_describe

    spec = EngineSpec("fp16", (1, 32, 32), max_batch=16, opt_batch=8, timing_cache=tmp_path / "tc.bin")
    engine = tmp_path / "m.engine"
    facts = build_and_describe(tiny_onnx, engine, spec, None, "python -m edgefocal engine ...", log=lambda s: None)
    assert (tmp_path / "tc.bin").is_file() and facts["residency"].get("GPU", 0) > 0 and facts["strongly_typed"]
    x = fmnist_calibration[:8]
    want = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with TensorRTRunner(engine) as runner:
        got = runner.infer(x)
        times = runner.timed_infer(x, 3)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert np.abs(got - want).max() < 5e-2


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_int8_engine_compares_with_qdq_and_torch(tiny_focalnet, tiny_onnx, fmnist_calibration, tmp_path):
    """On a TensorRT machine: the strongly typed INT8 engine vs ONNX Runtime on the Q/DQ ONNX vs torch FP32."""
    from qdq_helpers import qdq_onnx_for_tensorrt
    from edgefocal.backends.tensorrt import build_and_describe
    from edgefocal.backends.tensorrt.cross_check import compare_engine

    qdq = tmp_path / "m_qdq.onnx"
    qdq_onnx_for_tensorrt(tiny_onnx, fmnist_calibration[:64], "focalnet", qdq, log=lambda s: None)
    engine = tmp_path / "m_int8.engine"
    spec = EngineSpec("int8", (1, 32, 32), max_batch=16)
    facts = build_and_describe(qdq, engine, spec, None, "cmd", log=lambda s: None)
    assert facts["onnx_built"].endswith(".fp16.onnx")
    result = compare_engine(engine, qdq, tiny_focalnet, fmnist_calibration[:32], atol=0.5, rtol=0.5, log=lambda s: None)
    assert result["runners"] == ["tensorrt", "onnxruntime-qdq", "torch-fp32"] and result["skipped"] == {}
    assert all(p["top1_agreement"] >= 0.8 for p in result["pairs"])
