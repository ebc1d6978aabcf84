"""Datasets (Fashion-MNIST idx files, ImageFolder trees, scikit-learn digits), preprocessing from the
model's timm data config, and the deterministic class-balanced calibration subset."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edgefocal.errors import BadInput
from edgefocal.imagestore import ImageStore, batch_size, write_store
from edgefocal.preprocessing import make_transform
from edgefocal.progress import Progress
from edgefocal.signals import remove_on_forced_exit

FASHION_MNIST_DIR = Path(os.environ.get("EDGEFOCAL_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DECODE_THREADS = 4
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped), the format of MNIST and Fashion-MNIST.

    Hand-written because it is 15 lines and no maintained library reads idx without pulling torchvision
    datasets' download machinery."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise BadInput(
            f"{path} does not exist",
            hint="apt-get install dataset-fashion-mnist, or point --data-root at the idx files",
        ) from None
    except (OSError, EOFError) as e:
        raise BadInput(f"{path} is not a readable idx file ({e})", hint="re-download or reinstall the data") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise BadInput(f"{path} is not an idx file of unsigned bytes", hint="pass the *-ubyte(.gz) files")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise BadInput(f"{path} is truncated: expected {int(np.prod(dims))} bytes, found {body.size}",
                       hint="re-download or reinstall the data")
    return body.reshape(dims)


@dataclass
class Dataset:
    """Labelled images addressed by index; `load(i)` returns a PIL image, `key(i)` a stable identity.
    A dataset of already preprocessed arrays (the Python API's) holds them in `arrays` instead."""

    name: str
    labels: np.ndarray
    class_names: list[str]
    load: Callable[[int], "object"]
    key: Callable[[int], bytes]
    arrays: np.ndarray | None = None  # float32 NCHW, preprocessed by the caller
    files: list[Path] | None = None  # an image folder's, for errors that name the file

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self, i: int) -> str:
        return f"image {self.files[i]}" if self.files is not None else f"image {i} of {self.name}"


def array_dataset(name: str, images: np.ndarray, labels: np.ndarray | None = None) -> Dataset:
    """Preprocessed float32 NCHW images (and labels, for an eval set) as a Dataset, so the same subset,
    fingerprint and held-out logic applies to them as to image files. Unlabelled images get label 0."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.float32:
        raise BadInput(f"the {name} images are a {images.dtype} array of shape {images.shape}, not float32 NCHW",
                       hint="pass preprocessed images as np.float32 of shape (N, C, H, W) (x.astype(np.float32))")
    if len(images) == 0:
        raise BadInput(f"the {name} images are empty", hint="pass at least one image")
    if labels is None:
        labels = np.zeros(len(images), np.int64)
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise BadInput(f"the {name} labels ({labels.dtype}, shape {labels.shape}) are not {len(images)} class "
                       "indices ≥ 0", hint="pass labels as an integer array with one class index per image")
    labels = labels.astype(np.int64)

    def no_file(i: int):
        raise BadInput(f"the {name} set holds arrays, not image files", hint="use its arrays")

    return Dataset(name=f"array:{name}", labels=labels, class_names=[str(c) for c in range(int(labels.max()) + 1)],
                   load=no_file, key=lambda i: images[i].tobytes() + int(labels[i]).to_bytes(2, "little"),
                   arrays=images)


def _array_dataset(name: str, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> Dataset:
    from PIL import Image

    return Dataset(
        name=name,
        labels=labels.astype(np.int64),
        class_names=classes,
        load=lambda i: Image.fromarray(images[i]),
        key=lambda i: images[i].tobytes() + int(labels[i]).to_bytes(2, "little"),
    )


def fashion_mnist(split: str = "test", root: Path | None = None) -> Dataset:
    root = Path(root) if root else FASHION_MNIST_DIR
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise BadInput(f"unknown Fashion-MNIST split '{split}'", hint="use split: train or test")

    def find(kind: str) -> Path:
        for name in (f"{prefix}-{kind}-ubyte.gz", f"{prefix}-{kind}-ubyte"):
            if (root / name).exists():
                return root / name
        return root / f"{prefix}-{kind}-ubyte.gz"

    images = read_idx(find("images-idx3"))
    labels = read_idx(find("labels-idx1"))
    if len(images) != len(labels):
        raise BadInput(f"{root}: {len(images)} images but {len(labels)} labels", hint="reinstall the data")
    return _array_dataset(f"fashion-mnist:{split}", images, labels, FASHION_MNIST_CLASSES)


def digits(split: str = "test") -> Dataset:
    """scikit-learn's bundled 8×8 digits, split 1/3 test by a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images * (255 / 16)).round().astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    cut = len(images) // 3
    idx = order[:cut] if split == "test" else order[cut:]
    return _array_dataset(f"digits:{split}", images[idx], d.target[idx], [str(i) for i in range(10)])


def image_folder(root: Path) -> Dataset:
    """A directory with one sub-folder per class (torchvision's ImageFolder layout)."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"image folder {root} does not exist", hint="pass a directory with one sub-folder per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files: list[Path] = []
    labels: list[int] = []
    for ci, c in enumerate(classes):
        for p in sorted((root / c).rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                files.append(p)
                labels.append(ci)
    if not files:
        raise BadInput(f"image folder {root} holds no images",
                       hint=f"put images ({', '.join(sorted(IMAGE_SUFFIXES))}) in one sub-folder per class")

    def load(i: int):
        try:
            with Image.open(files[i]) as im:
                im.load()
                return im.copy()
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise BadInput(f"image {files[i]} is corrupt or not an image ({e})",
                           hint="delete or replace that file") from e

    return Dataset(
        name=f"imagefolder:{root}",
        labels=np.asarray(labels, dtype=np.int64),
        class_names=classes,
        load=load,
        key=lambda i: str(files[i].relative_to(root)).encode() + files[i].read_bytes(),
        files=files,
    )


def open_dataset(source: str, split: str = "test", path: Path | None = None) -> Dataset:
    if source == "fashion-mnist":
        return fashion_mnist(split, path)
    if source == "digits":
        return digits(split)
    if source == "imagefolder":
        if path is None:
            raise BadInput("an imagefolder dataset needs a path", hint="set path: DIR in the recipe")
        return image_folder(path)
    raise BadInput(f"unknown dataset source '{source}'", hint="use fashion-mnist, digits or imagefolder")


def balanced_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """`size` indices, as even across classes as the data allows, the same for the same (labels, size, seed)."""
    if size <= 0:
        raise BadInput(f"calibration size must be positive, got {size}", hint="set calibration.size ≥ 1")
    if len(labels) == 0:
        raise BadInput("the calibration dataset is empty", hint="point the calibration set at labelled images")
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(size, len(labels)):
        for pool in pools:  # round-robin over classes keeps the subset class-balanced
            if depth < len(pool) and len(chosen) < size:
                chosen.append(int(pool[depth]))
        depth += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))


def fingerprint(dataset: Dataset, indices: np.ndarray) -> str:
    """sha256 over the chosen items' bytes and labels: equal fingerprints mean equal calibration data."""
    h = hashlib.sha256(dataset.name.split(":")[0].encode())
    for i in indices:
        h.update(hashlib.sha256(dataset.key(int(i))).digest())
    return h.hexdigest()


def preprocessed_batches(dataset: Dataset, indices: np.ndarray, data_config: dict, batch: int,
                         advance: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """The given items preprocessed, `batch` at a time (taken as they are from a dataset of arrays). Files
    are decoded by a few threads: PIL's decoders and torch's resize release the GIL, and the order, hence
    every byte of the result, stays that of `indices`."""
    expected = tuple(int(v) for v in data_config["input_size"])
    if dataset.arrays is not None:
        if dataset.arrays.shape[1:] != expected:
            raise BadInput(f"the {dataset.name} images have shape {dataset.arrays.shape[1:]} per image but the "
                           f"model's data config says input_size {list(expected)}",
                           hint="preprocess the images to the model's input size, or pass data_config= to match")
        for start in range(0, len(indices), batch):
            chunk = np.ascontiguousarray(dataset.arrays[indices[start:start + batch]])
            if advance is not None:
                advance(len(chunk))
            yield chunk
        return
    tf = make_transform(data_config)

    def one(i) -> np.ndarray:
        x = tf(dataset.load(int(i))).numpy()
        if x.shape != expected:
            raise BadInput(f"{dataset.describe(int(i))} preprocesses to shape {list(x.shape)}, but the model "
                           f"takes {list(expected)}", hint="pass images with the model's channel count, "
                           "or set model.data_config.input_size to what the model was trained on")
        return x

    with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
        for start in range(0, len(indices), batch):
            chunk = np.stack(list(pool.map(one, indices[start:start + batch])))
            if advance is not None:
                advance(len(chunk))
            yield chunk


def preprocess(dataset: Dataset, indices: np.ndarray, data_config: dict, progress=None) -> np.ndarray:
    """Preprocessed float32 NCHW array of the given items, in memory: for sets bounded by a recipe size
    (calibration), not for eval sets, which `image_store` keeps on disk."""
    size = batch_size(tuple(data_config["input_size"]))
    parts = list(preprocessed_batches(dataset, indices, data_config, size, progress))
    return np.concatenate(parts) if parts else np.empty((0, *data_config["input_size"]), np.float32)


def image_store(dataset: Dataset, indices: np.ndarray, data_config: dict, path: Path, progress=None) -> ImageStore:
    """The given items preprocessed into an .npy file (imagestore.py), a batch at a time."""
    shape = tuple(int(v) for v in data_config["input_size"])
    batches = preprocessed_batches(dataset, indices, data_config, batch_size(shape), progress)
    return write_store(path, shape, len(indices), batches)


def preprocessed(dataset: Dataset, indices: np.ndarray, data_config: dict, cache_file: Path | None,
                 progress=None) -> np.ndarray | ImageStore:
    """The given items in `cache_file` on disk (image_store) when there is a cache, else in memory; a
    dataset of arrays stays in memory, where the caller already holds it."""
    if cache_file is not None and dataset.arrays is None:
        return image_store(dataset, indices, data_config, cache_file, progress)
    return preprocess(dataset, indices, data_config, progress)


@contextmanager
def data_cache(staging: Path) -> Iterator[Path]:
    """Where a build keeps its preprocessed image sets: $EDGEFOCAL_CACHE_DIR (a fresh directory in it) or
    the staging directory's `.cache`, which goes with the staging directory whatever ends the build.
    Removed on the way out, before the output is written."""
    root = os.environ.get("EDGEFOCAL_CACHE_DIR")
    path = Path(tempfile.mkdtemp(prefix="edgefocal-cache-", dir=root)) if root else Path(staging) / ".cache"
    path.mkdir(parents=True, exist_ok=True)
    try:
        with remove_on_forced_exit(path):
            yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class ImageSet:
    """Preprocessed float32 NCHW images with labels, and the identity of what was chosen. `images` is an
    array, or for an eval or held-out set in a build an ImageStore on disk, sliced the same way."""

    name: str
    images: np.ndarray | ImageStore
    labels: np.ndarray
    fingerprint: str

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class BuildData:
    """The calibration and eval sets of one build; `source` and `used` let held-out images be drawn later,
    into `cache` (None: in memory)."""

    calibration: ImageSet
    eval: ImageSet
    source: Dataset  # the calibration dataset
    used: np.ndarray  # its indices taken for calibration
    cache: Path | None = None


def _indices(ds: Dataset, what: str, size: int | None, seed: int) -> np.ndarray:
    if len(ds) == 0:
        raise BadInput(f"the {what} set ({ds.name}) is empty", hint=f"point {what} at labelled images")
    return balanced_subset(ds.labels, size, seed) if size else np.arange(len(ds))


def load_data(recipe, data_config: dict, num_classes: int, progress: Progress | None = None, *,
              calibration: Dataset | None = None, evaluation: Dataset | None = None,
              cache: Path | None = None) -> BuildData:
    """The recipe's calibration subset and eval set, preprocessed with the model's data config: the
    calibration subset in memory (its size is the recipe's), the eval set into `cache` on disk when given
    (its size is the user's data's). Datasets given here (the Python API's arrays) stand in for the recipe's
    sources; its sizes and seeds still apply."""
    progress = progress or Progress()
    source = calibration or open_dataset(recipe.calibration.source, recipe.calibration.split, recipe.calibration.path)
    used = _indices(source, "calibration", recipe.calibration.size, recipe.calibration.seed)
    with progress.task(f"preprocess calibration ({source.name})", len(used)) as advance:
        calib = ImageSet(source.name, preprocess(source, used, data_config, advance), source.labels[used],
                         fingerprint(source, used))
    ev = evaluation or open_dataset(recipe.eval.source, recipe.eval.split, recipe.eval.path)
    idx = _indices(ev, "eval", recipe.eval.size, recipe.eval.seed)
    labels = ev.labels[idx]
    if len(labels) and labels.max() >= num_classes:
        raise BadInput(f"eval labels go up to {labels.max()} but the model has {num_classes} classes",
                       hint="pass --num-classes / a checkpoint trained on this dataset")
    with progress.task(f"preprocess eval ({ev.name})", len(idx)) as advance:
        images = preprocessed(ev, idx, data_config, cache and cache / "eval.npy", advance)
    return BuildData(calib, ImageSet(ev.name, images, labels, fingerprint(ev, idx)), source, used, cache)


def held_out_available(data: BuildData) -> int:
    """How many images `held_out` can draw: the calibration source's unused ones (or, with none, the
    calibration images themselves)."""
    spare = len(data.source) - len(np.unique(data.used))
    return spare if spare > 0 else len(data.calibration)


def held_out(data: BuildData, size: int, seed: int, data_config: dict, name: str = "held_out") -> ImageSet:
    """Up to `size` class-balanced images of the calibration source that calibration did not use (and, the
    source being the train split by default, that the eval set does not hold), on disk in the build's cache
    when it has one. When calibration used every image (the Python API's arrays), the calibration images
    themselves: the precision search compares with FP32 logits, not labels, so it still works, only less
    independently, and the set's name says so."""
    spare = np.setdiff1d(np.arange(len(data.source)), data.used)
    if len(spare) == 0:
        c = data.calibration
        return ImageSet(f"{c.name} (calibration images: none held out)", c.images[:size], c.labels[:size],
                        c.fingerprint)
    pick = spare[balanced_subset(data.source.labels[spare], min(size, len(spare)), seed)]
    images = preprocessed(data.source, pick, data_config, data.cache and data.cache / f"{name}.npy")
    return ImageSet(f"{data.source.name} (held out)", images, data.source.labels[pick], fingerprint(data.source, pick))
