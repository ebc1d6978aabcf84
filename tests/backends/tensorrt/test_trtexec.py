"""The trtexec path: the TensorRT version read from trtexec's banner (and refused when unreadable), the
flags per version, and running it — against `fake_trtexec`, a FAKE trtexec script (trt_fakes.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from trt_fakes import fake_trtexec

from edgefocal.errors import BadInput, EdgefocalError
from edgefocal.backends.tensorrt.engine import EngineSpec
from edgefocal.backends.tensorrt.strong_typing import typing_plan
from edgefocal.backends.tensorrt.trtexec import (
    find_trtexec,
    run_trtexec,
    trtexec_args,
    trtexec_version,
    version_from_banner,
)


@pytest.mark.parametrize("banner,version", [
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --help", "10.3.0"),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v101300] # trtexec", "10.13.0"),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v110400] # trtexec", "11.4.0"),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec", "8.6.1"),  # JetPack 5: major*1000 encoding
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8510] # trtexec", "8.5.10"),
    ("trtexec: a wrapper without TensorRT's banner", None),
])
def test_version_from_banner(banner, version):
    assert version_from_banner(banner) == version


def test_version_read_from_the_binary(tmp_path):
    assert trtexec_version(fake_trtexec(tmp_path)) == "10.3.0"


def test_unreadable_version_is_refused_not_guessed(tmp_path):
    exe = fake_trtexec(tmp_path, banner="usage: trtexec [options]")
    with pytest.raises(BadInput, match="cannot tell the TensorRT version .*usage: trtexec") as e:
        trtexec_version(exe)
    assert "Polygraphy" in e.value.hint
    with pytest.raises(BadInput, match="does not run"):
        trtexec_version(tmp_path / "missing-trtexec")


def test_flags_per_version():
    spec = EngineSpec("int8", (1, 32, 32), dla_core=0, min_batch=4, opt_batch=4, max_batch=4, sparse_weights=True,
                      timing_cache=Path("tc.bin"))

    def args(version):
        return trtexec_args(Path("trtexec"), Path("m.onnx"), Path("m.engine"), spec, typing_plan(version, "int8"),
                            version, Path("l.json"))

    a10, a11, a8 = args("10.3.0"), args("11.4.0"), args("8.6.1")
    assert "--stronglyTyped" in a10 and not {"--fp16", "--int8"} & set(a10)
    assert not {"--stronglyTyped", "--fp16", "--int8"} & set(a11)  # 11.x: strongly typed, flags removed
    assert {"--fp16", "--int8"} <= set(a8) and "--stronglyTyped" not in a8  # weak typing before 10
    for a in (a10, a11, a8):
        assert {"--useDLACore=0", "--allowGPUFallback", "--sparsity=enable", "--timingCacheFile=tc.bin",
                "--minShapes=input:4x1x32x32", "--memPoolSize=workspace:2048M", "--profilingVerbosity=detailed",
                "--exportLayerInfo=l.json"} <= set(a)


def test_run_trtexec_failure_names_the_error(tmp_path):
    exe = fake_trtexec(tmp_path, fail=True)
    args = [str(exe), f"--saveEngine={tmp_path / 'm.engine'}", f"--exportLayerInfo={tmp_path / 'l.json'}"]
    with pytest.raises(EdgefocalError, match=r"trtexec failed \(exit 1\).*API Usage Error"):
        run_trtexec(args, tmp_path / "m.engine", log=lambda s: None)


def test_find_trtexec(tmp_path, monkeypatch):
    exe = fake_trtexec(tmp_path)
    assert find_trtexec(exe) == exe
    with pytest.raises(BadInput, match="does not exist"):
        find_trtexec(tmp_path / "nope")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_trtexec() == exe
