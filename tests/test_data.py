"""Dataset readers and the calibration subset."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from edgefocal.data import balanced_subset, fashion_mnist, fingerprint, image_folder, preprocess, read_idx
from edgefocal.errors import BadInput


def write_idx(path, array: np.ndarray, gz: bool = True):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_read_idx_round_trip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a", a, gz=False)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    assert np.array_equal(read_idx(tmp_path / "a"), a)


def test_read_idx_rejects_truncated_and_foreign(tmp_path):
    a = np.zeros((5, 4, 4), np.uint8)
    write_idx(tmp_path / "t", a, gz=False)
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(BadInput, match="truncated"):
        read_idx(tmp_path / "t")
    (tmp_path / "f").write_bytes(b"PNG....")
    with pytest.raises(BadInput, match="not an idx file"):
        read_idx(tmp_path / "f")


def test_fashion_mnist_is_real():
    test = fashion_mnist("test")
    assert len(test) == 10000 and np.bincount(test.labels).tolist() == [1000] * 10


def test_fashion_mnist_root_override_and_missing(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2], np.uint8))
    assert len(fashion_mnist("test", tmp_path)) == 3
    with pytest.raises(BadInput, match="train-images-idx3-ubyte.gz does not exist") as e:
        fashion_mnist("train", tmp_path)
    assert "dataset-fashion-mnist" in e.value.hint


def test_balanced_subset_is_deterministic_and_balanced():
    labels = fashion_mnist("train").labels
    a = balanced_subset(labels, 300, seed=0)
    assert np.array_equal(a, balanced_subset(labels, 300, seed=0))
    assert np.bincount(labels[a]).tolist() == [30] * 10
    assert not np.array_equal(a, balanced_subset(labels, 300, seed=1))
    uneven = np.array([0] * 100 + [1] * 3)
    b = balanced_subset(uneven, 10, seed=0)
    assert len(b) == 10 and (uneven[b] == 1).sum() == 3  # a small class gives all it has


def test_fingerprint_tracks_the_chosen_items():
    ds = fashion_mnist("train")
    a = balanced_subset(ds.labels, 50, seed=0)
    assert fingerprint(ds, a) == fingerprint(ds, a.copy())
    assert fingerprint(ds, a) != fingerprint(ds, balanced_subset(ds.labels, 50, seed=1))


def test_empty_calibration_is_an_error():
    with pytest.raises(BadInput, match="empty"):
        balanced_subset(np.array([], dtype=np.int64), 10)


def test_image_folder_and_corrupt_file(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = image_folder(tmp_path)
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1]
    cfg = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
           "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}
    x = preprocess(ds, np.arange(4), cfg)
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.float32
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png")
    ds = image_folder(tmp_path)
    with pytest.raises(BadInput, match=r"broken\.png is corrupt"):
        preprocess(ds, np.arange(len(ds)), cfg)


def test_image_folder_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(BadInput, match="holds no images"):
        image_folder(tmp_path)
