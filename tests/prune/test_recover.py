"""Short distillation lowers the distance to the teacher and keeps a 2:4 model 2:4."""
from __future__ import annotations

import numpy as np
import pytest

from edgefocal.prune import prune_model
from edgefocal.prune.sparsity import check_2of4
from edgefocal.recipe import PruneSpec



@pytest.fixture(scope="module")
def calib():
    return np.random.default_rng(0).normal(size=(32, 1, 32, 32)).astype(np.float32)


def test_recovery_lowers_kl(default_model, fmnist_calibration):
    spec = PruneSpec(method="channels", ratio=0.5, reconstruct=False, recover_steps=30)
    rec = prune_model(default_model.model, fmnist_calibration, spec, log=lambda *_: None).stats["recover"]
    assert rec["steps"] == 30 and rec["kept"] and rec["kl_after"] < rec["kl_before"]


def test_recovery_keeps_2of4_zeros(tiny_focalnet, calib):
    res = prune_model(tiny_focalnet, calib, PruneSpec(method="2:4", solver="wanda", recover_steps=10),
                      log=lambda *_: None)
    assert check_2of4(res.model) == [] and res.stats["sparsity_2of4"]
