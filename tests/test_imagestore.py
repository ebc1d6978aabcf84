"""Image sets on disk (edgefocal/imagestore.py) and the streaming data stage (data.load_data with a cache):
the same values as the in-memory path, read a batch at a time, and a clear error before a set that the disk
cannot hold is written."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgefocal.data import fashion_mnist, image_store, load_data, preprocess
from edgefocal.errors import BadInput
from edgefocal.imagestore import ImageStore, batch_size, write_store
from edgefocal.recipe import load_recipe

CONFIG = {"input_size": (1, 32, 32), "mean": (0.286,), "std": (0.353,), "interpolation": "bilinear",
          "crop_pct": 1.0, "crop_mode": "center"}


def test_a_store_slices_like_the_array_it_holds(tmp_path):
    x = np.random.default_rng(0).normal(size=(37, 3, 5, 4)).astype(np.float32)
    store = write_store(tmp_path / "x.npy", (3, 5, 4), len(x), (x[i:i + 10] for i in range(0, len(x), 10)))
    assert len(store) == 37 and store.shape == x.shape
    for key in (slice(None), slice(3, 20), slice(30, 99), slice(None, None, 2), slice(20, 3, -3), 5, -1,
                np.array([0, 36, 7]), x[:, 0, 0, 0] > 0):
        np.testing.assert_array_equal(store[key], x[key])
    np.testing.assert_array_equal(np.concatenate(list(store.batches(8))), x)
    view = store.rows(10, 30)
    assert len(view) == 20 and view.shape == (20, 3, 5, 4)
    np.testing.assert_array_equal(view[5:9], x[15:19])
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), x)  # an ordinary .npy for any reader


def test_batches_are_sized_by_pixels():
    assert batch_size((3, 224, 224)) == 10 and batch_size((1, 32, 32)) == 256 and batch_size((3, 4096, 4096)) == 1


def test_a_set_larger_than_the_disk_fails_before_writing(tmp_path):
    with pytest.raises(BadInput) as e:
        write_store(tmp_path / "eval.npy", (3, 224, 224), 10 ** 9, iter(()))
    assert str(tmp_path) in str(e.value) and "EDGEFOCAL_CACHE_DIR" in e.value.hint
    assert not (tmp_path / "eval.npy").exists()


def test_streamed_eval_set_equals_the_in_memory_one(tmp_path):
    recipe = load_recipe(None, {"calibration.size": 20, "eval.size": 300})
    memory = load_data(recipe, CONFIG, 10)
    (tmp_path / "cache").mkdir()
    streamed = load_data(recipe, CONFIG, 10, cache=tmp_path / "cache")
    assert isinstance(streamed.eval.images, ImageStore) and isinstance(memory.eval.images, np.ndarray)
    np.testing.assert_array_equal(np.asarray(streamed.eval.images), memory.eval.images)
    np.testing.assert_array_equal(streamed.calibration.images, memory.calibration.images)
    assert streamed.eval.fingerprint == memory.eval.fingerprint


def test_threaded_decoding_keeps_the_order():
    ds = fashion_mnist("test")
    idx = np.arange(0, 500, 7)
    one_by_one = np.stack([preprocess(ds, np.array([i]), CONFIG)[0] for i in idx])
    np.testing.assert_array_equal(preprocess(ds, idx, CONFIG), one_by_one)


def test_preprocessing_into_a_store_does_not_hold_the_set(tmp_path):
    """Peak RSS of a child that preprocesses 200 and 6000 images at 64² into a store: within 30 MB (the
    6000 are 98 MB as one array)."""
    code = ("import resource, sys, numpy as np; from pathlib import Path; "
            "from edgefocal.data import fashion_mnist, image_store; "
            "cfg = {'input_size': (1, 64, 64), 'mean': (0.3,), 'std': (0.3,), 'interpolation': 'bilinear', "
            "'crop_pct': 1.0, 'crop_mode': 'center'}; n = int(sys.argv[1]); "
            "image_store(fashion_mnist('test'), np.arange(n), cfg, Path(sys.argv[2]) / f'{n}.npy'); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peaks = {n: int(subprocess.run([sys.executable, "-c", code, str(n), str(tmp_path)], capture_output=True,
                                   text=True, check=True).stdout) / 1024 for n in (200, 6000)}
    assert (tmp_path / "6000.npy").stat().st_size > 6000 * 64 * 64 * 4
    assert peaks[6000] - peaks[200] < 30, peaks


def test_array_images_of_the_wrong_channel_count_are_named(tmp_path):
    from edgefocal.data import array_dataset

    ds = array_dataset("eval", np.zeros((4, 3, 32, 32), np.float32), np.zeros(4, np.int64))
    with pytest.raises(BadInput) as e:
        image_store(ds, np.arange(4), CONFIG, tmp_path / "e.npy")
    assert "(3, 32, 32)" in str(e.value) and "[1, 32, 32]" in str(e.value)
