"""Test helper: Fashion-MNIST images written as PNG into an ImageFolder tree (one sub-folder per class)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_imagefolder(root: Path, dataset, indices: np.ndarray) -> list[tuple[Path, int]]:
    """PNG files in one sub-folder per class, named by class index (so folder order is label order); returns
    (file, label) in the order an ImageFolder lists them (class folders sorted, then files sorted)."""
    files = []
    for i in indices:
        label = int(dataset.labels[i])
        path = Path(root) / str(label) / f"{int(i):05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset.load(int(i)).save(path)
        files.append((path, label))
    return sorted(files, key=lambda f: (f[0].parent.name, f[0].name))
