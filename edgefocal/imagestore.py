"""Preprocessed images on disk, read a batch at a time.

10k eval images at 224² are 6 GB as one float32 array, ImageNet's 50k validation images 30 GB, and a
build is meant to run on an 8 GB Jetson. So a set is preprocessed once, in batches, into an .npy file in
the build's cache directory, and every stage reads the rows it needs from there: a build's memory does not
grow with its eval set. Rows are read with plain file reads, not a memory map, because pages of a map
count in the resident set (and in the serving figures' peak RSS) once touched."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from edgefocal.errors import BadInput

# images × height × width per batch: 10 images at 224², 256 (the cap) at 32². At 224² on 2 cores ONNX Runtime and
# torch ran focalnet_tiny_srf faster at 8-10 images a batch than at 32-41 (ad-hoc timings, not a benchmark file;
# benchmarks/scale.md measures the whole build with this size).
BATCH_PIXELS = 2 ** 19
MAX_BATCH = 256


def batch_size(image_shape: tuple[int, ...]) -> int:
    """Images per batch for evaluation and calibration passes: large enough that runtimes run at speed,
    small enough that a batch's activations stay well under a GB at any input size: a runtime holds a few
    stage-1 tensors at once, and a FocalNet-T's is 96×56×56 floats (1.2 MB) per 224² image."""
    height, width = image_shape[-2:]
    return max(1, min(MAX_BATCH, BATCH_PIXELS // (int(height) * int(width))))


def rows_of(images, start: int, stop: int):
    """Rows [start, stop) of an array, or of an ImageStore without reading them (a view of the same file):
    slicing a store reads the rows into memory, 301 MB for 500 images at 224²."""
    return images.rows(start, stop) if isinstance(images, ImageStore) else images[start:stop]


class ImageStore:
    """Read-only float32 NCHW images in an .npy file; sliced like an array (contiguous slices and index
    arrays), each read returning a new in-memory array of just those rows."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if fortran or dtype != np.float32 or len(shape) != 4:
            raise BadInput(f"{self.path} is not a float32 NCHW image store", hint="delete it and build again")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = np.dtype(np.float32)
        self._row = int(np.prod(shape[1:])) * 4

    def rows(self, start: int, stop: int) -> "ImageStore":
        """A store of rows [start, stop) of this one, reading the same file (nothing is read now)."""
        start, stop = max(0, min(start, len(self))), max(0, min(stop, len(self)))
        view = object.__new__(ImageStore)
        view.__dict__.update(self.__dict__)
        view._offset = self._offset + start * self._row
        view.shape = (max(0, stop - start), *self.shape[1:])
        return view

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 4

    @property
    def nbytes(self) -> int:
        return len(self) * self._row

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(len(self), stop)
        count = max(0, stop - start)
        with open(self.path, "rb") as f:
            f.seek(self._offset + start * self._row)
            out = np.fromfile(f, dtype=np.float32, count=count * self._row // 4)
        return out.reshape(count, *self.shape[1:])

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            rows = self.read(start, stop) if step > 0 else self.read(stop + 1, start + 1)[::-1]
            return rows[::abs(step)] if abs(step) != 1 else rows
        if isinstance(key, (int, np.integer)):
            return self.read(int(key) % len(self), int(key) % len(self) + 1)[0]
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return np.stack([self.read(int(i), int(i) + 1)[0] for i in index]) if len(index) else \
            np.empty((0, *self.shape[1:]), np.float32)

    def batches(self, size: int | None = None) -> Iterator[np.ndarray]:
        size = size or batch_size(self.shape)
        for start in range(0, len(self), size):
            yield self.read(start, start + size)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # the whole set: only for small ones
        whole = self.read(0, len(self))
        return whole if dtype is None else whole.astype(dtype)


def write_store(path: Path, image_shape: tuple[int, ...], count: int, batches: Iterable[np.ndarray]) -> ImageStore:
    """Write `count` images arriving in `batches` to `path` and open it; the disk's free space is checked
    first, so a set too large for it fails at once with the fix, not after minutes of preprocessing."""
    path = Path(path)
    need = count * int(np.prod(image_shape)) * 4
    free = shutil.disk_usage(path.parent).free
    if need > free:
        raise BadInput(f"{count} preprocessed images need {need / 2 ** 30:.1f} GiB in {path.parent}, which has "
                       f"{free / 2 ** 30:.1f} GiB free",
                       hint="set EDGEFOCAL_CACHE_DIR to a disk with room, or lower eval.size / calibration.size")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (count, *image_shape)}
    written = 0
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for batch in batches:
            f.write(np.ascontiguousarray(batch, dtype=np.float32).tobytes())
            written += len(batch)
    if written != count:
        raise ValueError(f"{path}: {written} images written, {count} expected")
    return ImageStore(path)
