"""Runners for the TensorRT target: the engine itself through Polygraphy's `TrtRunner`, behind
edgefocal's `Runner` interface, and the Q/DQ ONNX on ONNX Runtime's CPU provider, labelled as a proxy.

`TrtRunner` binds the tensors, runs `execute_async_v3` and turns a False return into an exception.
Latency is device time by CUDA events around `execute_async_v3` on the runner's own stream (wrapped
for torch with `torch.cuda.ExternalStream`), once `TrtRunner.infer` has bound a GPU-resident batch:
Polygraphy's `inference_time` is host wall-clock around binding, copies and synchronization."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefocal._deps import require
from edgefocal.errors import BadInput, EdgefocalError, MissingDependency
from edgefocal.core import Runner
from edgefocal.backends.onnxruntime import OnnxRuntimeRunner

if TYPE_CHECKING:
    import tensorrt as trt


class QDQProxyRunner(OnnxRuntimeRunner):
    """The Q/DQ ONNX that TensorRT would build, executed by ONNX Runtime on the CPU: the same INT8
    rounding of weights and activations, not TensorRT's kernels (FP16 accumulation, fusions)."""

    def __init__(self, artifact: Path, threads: int | None = None):
        super().__init__(artifact, threads, label="ONNX Runtime CPU, proxy for the TensorRT engine")


def check_executed(ok: bool, artifact: Path | None, batch: int) -> None:
    """execute_async_v3 returns False (and logs why) when it cannot enqueue; never carry on silently."""
    if not ok:
        raise EdgefocalError(f"TensorRT failed to execute {artifact} on a batch of {batch}",
                             hint="check the batch is within the engine's optimization profile (min/max batch); "
                                  "the TensorRT log above says why")


class TensorRTRunner(Runner):
    """An engine file, run by Polygraphy's TrtRunner on the GPU that built it (the sidecar guards that)."""

    on_gpu = True  # verify/compare.py: its speedup is taken against the GPU reference, not the CPU baseline

    def __init__(self, artifact: Path, check_device: bool = True):
        super().__init__(artifact)
        self.check_device = check_device
        self._runner: Any = None

    def load(self) -> None:
        require("tensorrt", "tensorrt")  # a MissingDependency with the install hint, not a bare ImportError
        require("polygraphy", "tensorrt")
        import tensorrt as trt
        import torch
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        if not torch.cuda.is_available():
            raise MissingDependency("a TensorRT engine needs a CUDA GPU; torch sees none",
                                    hint="run on the Jetson/GPU that built the engine (torch with CUDA)")
        if self.check_device:
            from edgefocal.backends.tensorrt.sidecar import check_engine_device, device_facts

            check_engine_device(Path(str(self.artifact)), device_facts(trt.__version__))
        engine: trt.ICudaEngine = EngineFromBytes(BytesFromPath(str(self.artifact)))()
        runner = TrtRunner(engine, name="tensorrt")
        runner.activate()
        self._runner = runner
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        modes = [engine.get_tensor_mode(n) for n in names]
        self.inputs = [n for n, m in zip(names, modes) if m == trt.TensorIOMode.INPUT]
        self.outputs = [n for n, m in zip(names, modes) if m == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            self.close()
            raise BadInput(f"engine {self.artifact} has {len(self.inputs)} inputs and {len(self.outputs)} outputs; "
                           "expected one image input and one logits output", hint="export a classifier")
        self.device = f"TensorRT {trt.__version__}, {torch.cuda.get_device_name(0)}"

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits for one batch: TrtRunner copies in, executes (checked), copies out and synchronizes."""
        outputs = self._runner.infer({self.inputs[0]: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(outputs[self.outputs[0]], dtype=np.float32)

    def timed_infer(self, x: np.ndarray, repeats: int) -> list[float]:
        """Device time of execute_async_v3 per call, by CUDA events on TrtRunner's stream."""
        import torch

        x_gpu = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda()
        torch.cuda.current_stream().synchronize()  # the upload ran on torch's stream, TensorRT reads on its own
        self._runner.infer({self.inputs[0]: x_gpu}, copy_outputs_to_host=False)  # binds shapes and addresses
        context: trt.IExecutionContext = self._runner.context
        stream_ptr: int = self._runner.stream.ptr
        return cuda_event_times(lambda: context.execute_async_v3(stream_ptr), stream_ptr, repeats,
                                lambda ok: check_executed(ok, self.artifact, len(x)))

    def close(self) -> None:
        if self._runner is not None and self._runner.is_active:
            self._runner.deactivate()
        self._runner = None


def cuda_event_times(launch, stream_ptr: int, repeats: int, check=lambda ok: None) -> list[float]:
    """Milliseconds between CUDA events recorded around each `launch()` on the raw stream `stream_ptr`;
    `check` sees each launch's return value. Own code: Polygraphy times on the host."""
    import torch

    stream = torch.cuda.ExternalStream(stream_ptr)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        ok = launch()
        end.record(stream)
        end.synchronize()
        check(ok)
        times.append(float(start.elapsed_time(end)))
    return times
