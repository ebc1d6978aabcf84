"""The FP32 torch reference as a runner: on the GPU when one is present (the mission's FP32 GPU
reference), else on the CPU; the report says which.

On the GPU it is FP32 for real: cuDNN's TF32 convolutions (on by default in torch, a 10-bit mantissa)
and TF32 matmuls are turned off around every forward, or the "FP32" reference of a conv network like
FocalNet would quietly be TF32. It is timed with CUDA events (device time of the forward, the batch
already on the GPU), like the TensorRT engine's runner. A GPU reference makes CPU runners' speedups
CPU-versus-GPU ratios, so the pipeline then also runs a CPU FP32 baseline (`cpu_baseline`) and takes
CPU runners' speedups against it (verify/compare.py)."""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch

from edgefocal.core import Runner


def reference_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def exact_fp32():
    """TF32 off for cuDNN convolutions and CUDA matmuls, restored afterwards (torch's flags are global)."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


class TorchRunner(Runner):
    def __init__(self, model: torch.nn.Module, device: str | None = None, threads: int | None = None):
        super().__init__(None)
        self.model = model
        self.torch_device = torch.device(device or reference_device())
        self.threads = threads
        self.on_gpu = self.torch_device.type == "cuda"  # verify/compare.py: which baseline a speedup is against
        self._module: torch.nn.Module | None = None
        self.device = (
            f"torch eager FP32 (TF32 off), {torch.cuda.get_device_name(self.torch_device)}, timed with CUDA events"
            if self.on_gpu
            else f"torch eager FP32, CPU ({torch.get_num_threads() if threads is None else threads} threads)"
        )

    def load(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        # a copy: `.to()` moves a module in place, and a CPU baseline may run the same model beside the GPU one
        module = copy.deepcopy(self.model) if self.on_gpu else self.model
        self._module = module.to(self.torch_device).eval()

    def close(self) -> None:
        self._module = None  # frees the GPU copy

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._module is None:  # infer() without load(), as predict() on a bare runner does
            self.load()
        with torch.inference_mode(), (exact_fp32() if self.on_gpu else contextlib.nullcontext()):
            return self._module(x)  # type: ignore[misc]

    def infer(self, x: np.ndarray) -> np.ndarray:
        out = self._forward(torch.from_numpy(x).to(self.torch_device))
        return out.float().cpu().numpy()  # .cpu() synchronises a CUDA stream

    def timed_infer(self, x: np.ndarray, repeats: int) -> list[float]:
        if not self.on_gpu:
            return super().timed_infer(x, repeats)
        # CUDA events time the GPU work itself, without the host round trip of each call
        xt = torch.from_numpy(x).to(self.torch_device)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self._forward(xt)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return times
