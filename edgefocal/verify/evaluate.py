"""Run a runner over the eval set and collect logits."""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgefocal.core import Runner


def predict(runner: Runner, images: np.ndarray, batch: int = 100,
            advance: Callable[[int], None] | None = None) -> np.ndarray:
    outs = []
    for i in range(0, len(images), batch):
        chunk = np.ascontiguousarray(images[i : i + batch])
        outs.append(np.asarray(runner.infer(chunk), dtype=np.float32))
        if advance:
            advance(len(chunk))
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
