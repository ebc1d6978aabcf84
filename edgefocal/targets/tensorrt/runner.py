"""Runners for the TensorRT target: the engine itself (torch CUDA tensors, CUDA-event timing, no pycuda),
and the Q/DQ ONNX on ONNX Runtime's CPU provider, labelled as a proxy for the engine."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefocal._deps import require
from edgefocal.errors import BadInput, MissingDependency
from edgefocal.targets.base import Runner
from edgefocal.targets.onnxruntime import OnnxRuntimeRunner


class QDQProxyRunner(OnnxRuntimeRunner):
    """The Q/DQ ONNX that TensorRT would build, executed by ONNX Runtime on the CPU: the same INT8
    rounding of weights and activations, not TensorRT's kernels (FP16 accumulation, fusions)."""

    def __init__(self, artifact: Path, threads: int | None = None):
        super().__init__(artifact, threads, label="ONNX Runtime CPU, proxy for the TensorRT engine")


def _torch_dtype(trt, dtype):
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
             trt.DataType.INT8: torch.int8, trt.DataType.INT32: torch.int32}
    if hasattr(trt.DataType, "BF16"):
        table[trt.DataType.BF16] = torch.bfloat16
    if dtype not in table:
        raise BadInput(f"engine I/O type {dtype} is not supported by the runner", hint="export with FP32 I/O")
    return table[dtype]


class TensorRTRunner(Runner):
    """Executes an engine with `execute_async_v3` on torch-allocated CUDA buffers."""

    def __init__(self, artifact: Path, check_device: bool = True):
        super().__init__(artifact)
        self.check_device = check_device
        self.context = None

    def load(self) -> None:
        trt = require("tensorrt", "tensorrt")
        import torch

        if not torch.cuda.is_available():
            raise MissingDependency("a TensorRT engine needs a CUDA GPU; torch sees none",
                                    hint="run on the Jetson/GPU that built the engine (torch with CUDA)")
        if self.check_device:
            from edgefocal.targets.tensorrt.sidecar import check_engine_device, device_facts

            check_engine_device(self.artifact, device_facts(trt.__version__))
        self.trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(self.artifact).read_bytes())
        if self.engine is None:
            raise BadInput(f"TensorRT {trt.__version__} could not deserialize {self.artifact}",
                           hint="rebuild the engine on this device (see its sidecar's rebuild_command)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise BadInput(f"engine {self.artifact} has {len(self.inputs)} inputs and {len(self.outputs)} outputs; "
                           "expected one image input and one logits output", hint="export a classifier")
        self.in_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.inputs[0]))
        self.out_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.outputs[0]))
        self.stream = torch.cuda.Stream()
        self.device = f"TensorRT {trt.__version__}, {torch.cuda.get_device_name(0)}"

    def _bind(self, x_gpu):
        import torch

        self.context.set_input_shape(self.inputs[0], tuple(x_gpu.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.outputs[0])), dtype=self.out_dtype, device="cuda")
        self.context.set_tensor_address(self.inputs[0], x_gpu.data_ptr())
        self.context.set_tensor_address(self.outputs[0], out.data_ptr())
        return out

    def _upload(self, x: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(x)).to("cuda", non_blocking=False).to(self.in_dtype).contiguous()

    def infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        x_gpu = self._upload(x)
        out = self._bind(x_gpu)
        self.stream.wait_stream(torch.cuda.current_stream())  # upload and allocation ran on the default stream
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BadInput(f"TensorRT failed to execute {self.artifact} on a batch of {len(x)}",
                               hint="check the batch is within the engine's optimization profile (min/max batch)")
        self.stream.synchronize()
        return out.float().cpu().numpy()

    def timed_infer(self, x: np.ndarray, repeats: int) -> list[float]:
        """Device time of execute_async_v3 per call, by CUDA events (input already on the GPU)."""
        import torch

        x_gpu = self._upload(x)
        out = self._bind(x_gpu)  # keep the output buffer alive while TensorRT writes to it
        self.stream.wait_stream(torch.cuda.current_stream())
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(self.stream)
            self.context.execute_async_v3(self.stream.cuda_stream)
            end.record(self.stream)
            end.synchronize()
            times.append(float(start.elapsed_time(end)))
        del out
        return times

    def close(self) -> None:
        self.context = None
        self.engine = None
