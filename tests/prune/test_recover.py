"""Short distillation on held-out images brings a pruned model closer to its teacher, repeats itself, stays
within its MAC budget and keeps a 2:4 model 2:4."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgefocal.prune import prune_model
from edgefocal.prune.recover import MIN_STEPS, step_budget
from edgefocal.prune.sparsity import check_2of4
from edgefocal.recipe import PruneSpec

SILENT = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module")
def calib():
    return np.random.default_rng(0).normal(size=(32, 1, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def fmnist_held_out(default_model):
    """2000 Fashion-MNIST train images outside the calibration subset, and 1000 test images."""
    from edgefocal.data import balanced_subset, fashion_mnist, preprocess

    train, test = fashion_mnist("train"), fashion_mnist("test")
    spare = np.setdiff1d(np.arange(len(train)), balanced_subset(train.labels, 256, seed=0))
    held = preprocess(train, spare[balanced_subset(train.labels[spare], 2000, seed=1)], default_model.data_config)
    return held, preprocess(test, balanced_subset(test.labels, 1000, seed=2), default_model.data_config)


def _predictions(model, images) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(images)).argmax(1).numpy()


def test_recovery_on_held_out_images_brings_the_pruned_model_closer_to_its_teacher(
        default_model, fmnist_calibration, fmnist_held_out):
    held, test_images = fmnist_held_out
    asked = []

    def held_out(n):
        asked.append(n)
        return held[:n]

    spec = PruneSpec(method="channels", ratio=0.5, recover_steps=150, recover_images=1500)
    plain = prune_model(default_model.model, fmnist_calibration, spec.model_copy(update={"recover_steps": 0}), SILENT)
    recovered = prune_model(default_model.model, fmnist_calibration, spec, SILENT, held_out)
    rec = recovered.stats["recover"]
    # trained on 7/8 of the held-out images, judged on the rest: least squares fitted the calibration images
    assert asked == [1500] and rec["images"] == 1313 and rec["check_images"] == 187
    assert rec["steps"] == 150 and rec["kept"] and rec["mse_after"] < rec["mse_before"]
    teacher = _predictions(default_model.model, test_images)
    before = np.mean(_predictions(plain.model, test_images) == teacher)
    after = np.mean(_predictions(recovered.model, test_images) == teacher)
    assert after > before, f"agreement with the unpruned model on test images {before:.3f} → {after:.3f}"


def test_recovery_repeats_itself_to_the_bit(tiny_focalnet, calib):
    spec = PruneSpec(method="channels", ratio=0.3, recover_steps=MIN_STEPS)
    a, b = (prune_model(tiny_focalnet, calib, spec, SILENT).model.state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_recovery_stays_within_its_mac_budget(tiny_focalnet, calib):
    # 600 steps of 128 images at 0.0045 GMACs (the 32² default) fit 2000 GMACs; at 4.4 (224² FocalNet-T) 1 does
    assert step_budget(600, 128, 0.0045, 2000) == 600
    assert step_budget(600, 128, 4.4, 2000) == 1
    assert step_budget(600, 128, 4.4, None) == 600
    spec = PruneSpec(method="channels", ratio=0.3, recover_steps=600, recover_max_gmacs=1e-3)
    pruned = prune_model(tiny_focalnet, calib, spec, SILENT)
    plain = prune_model(tiny_focalnet, calib, spec.model_copy(update={"recover_steps": 0}), SILENT)
    assert pruned.stats["recover"]["steps"] == 0 and "prune.recover_max_gmacs" in pruned.stats["recover"]["skipped"]
    assert all(torch.equal(v, plain.model.state_dict()[k]) for k, v in pruned.model.state_dict().items())


def test_recovery_keeps_2of4_zeros(tiny_focalnet, calib):
    res = prune_model(tiny_focalnet, calib, PruneSpec(method="2:4", solver="wanda", recover_steps=MIN_STEPS), SILENT)
    assert res.stats["recover"]["steps"] == MIN_STEPS
    assert check_2of4(res.model) == [] and res.stats["sparsity_2of4"]
