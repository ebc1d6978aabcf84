"""Run a runner over the eval set and collect logits."""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgefocal.core import Runner
from edgefocal.imagestore import batch_size


def predict(runner: Runner, images, batch: int | None = None,
            advance: Callable[[int], None] | None = None) -> np.ndarray:
    """Logits of `images` (an array or an ImageStore), `batch` at a time (by default sized by the input's
    pixels, imagestore.batch_size), so an eval set is never in memory whole."""
    batch = batch or batch_size(images.shape)
    outs = []
    for i in range(0, len(images), batch):
        chunk = np.ascontiguousarray(images[i : i + batch])
        outs.append(np.asarray(runner.infer(chunk), dtype=np.float32))
        if advance:
            advance(len(chunk))
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
