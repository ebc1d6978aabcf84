"""The engine runner: execute_async_v3's return value is checked, a missing TensorRT or GPU is a clear
error, and CUDA-event timing measures device time on a raw stream (the `gpu` test needs no TensorRT:
it times a torch kernel on the stream the way TrtRunner's stream is timed). The engine itself runs in
test_tensorrt.py's `tensorrt`-marked tests."""
from __future__ import annotations

import sys

import pytest
import torch
from trt_fakes import fake_tensorrt

from edgefocal.errors import EdgefocalError, MissingDependency
from edgefocal.backends.tensorrt.runner import TensorRTRunner, check_executed, cuda_event_times


def test_failed_execution_raises_with_the_batch(tmp_path):
    check_executed(True, tmp_path / "m.engine", 4)
    with pytest.raises(EdgefocalError, match=r"failed to execute .*m\.engine on a batch of 64") as e:
        check_executed(False, tmp_path / "m.engine", 64)
    assert "optimization profile" in e.value.hint


def test_load_without_tensorrt_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt raises ImportError
    with pytest.raises(MissingDependency, match="tensorrt is not importable") as e:
        TensorRTRunner(tmp_path / "m.engine").load()
    assert "edgefocal[tensorrt]" in e.value.hint


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_load_without_gpu_is_refused(tmp_path, monkeypatch):
    pytest.importorskip("polygraphy", reason="pip install 'edgefocal[tensorrt]'")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3.0"))
    with pytest.raises(MissingDependency, match="needs a CUDA GPU"):
        TensorRTRunner(tmp_path / "m.engine").load()


@pytest.mark.gpu
def test_cuda_event_times_on_a_raw_stream():
    stream = torch.cuda.Stream()
    a = torch.randn(2048, 2048, device="cuda")
    torch.cuda.synchronize()
    seen = []

    def launch():
        with torch.cuda.stream(stream):
            a @ a
        return True

    times = cuda_event_times(launch, stream.cuda_stream, 5, seen.append)
    assert len(times) == 5 and all(t > 0 for t in times) and seen == [True] * 5
    with pytest.raises(EdgefocalError, match="failed to execute"):
        cuda_event_times(lambda: False, stream.cuda_stream, 2, lambda ok: check_executed(ok, None, 1))
