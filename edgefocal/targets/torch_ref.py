"""The FP32 torch reference as a runner: on the GPU when one is present (the mission's FP32 GPU
reference), else on the CPU; the report says which."""
from __future__ import annotations

import numpy as np
import torch

from edgefocal.targets.base import Runner


def reference_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchRunner(Runner):
    def __init__(self, model: torch.nn.Module, device: str | None = None, threads: int | None = None):
        super().__init__(None)
        self.model = model
        self.torch_device = torch.device(device or reference_device())
        self.threads = threads
        self.device = (
            f"torch eager FP32, {torch.cuda.get_device_name(self.torch_device)}"
            if self.torch_device.type == "cuda"
            else f"torch eager FP32, CPU ({torch.get_num_threads() if threads is None else threads} threads)"
        )

    def load(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model = self.model.to(self.torch_device).eval()

    def infer(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(torch.from_numpy(x).to(self.torch_device))
            return out.float().cpu().numpy()  # .cpu() synchronises a CUDA stream

    def timed_infer(self, x: np.ndarray, repeats: int) -> list[float]:
        if self.torch_device.type != "cuda":
            return super().timed_infer(x, repeats)
        # CUDA events time the GPU work itself, without the host round trip of each call
        xt = torch.from_numpy(x).to(self.torch_device)
        times = []
        with torch.inference_mode():
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                self.model(xt)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
        return times
