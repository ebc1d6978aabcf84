"""2:4 sparsity with SparseGPT and Wanda on the trained default."""
from __future__ import annotations

import pytest
import torch

from edgefocal.prune import prune_model
from edgefocal.prune.semistructured import layer_inputs, sparsegpt_2of4, wanda_2of4
from edgefocal.prune.sparsity import candidates, check_2of4, is_2of4
from edgefocal.recipe import PruneSpec



@pytest.mark.parametrize("layer", ["layers.0.blocks.0.mlp.fc2", "layers.1.blocks.0.modulation.f"])
def test_sparsegpt_beats_wanda_on_a_trained_layer(default_model, fmnist_calibration, layer):
    conv = dict(default_model.model.named_modules())[layer]
    x = layer_inputs(default_model.model, conv, torch.from_numpy(fmnist_calibration))
    w = conv.weight.data.reshape(conv.out_channels, -1)
    errs = {}
    for name, fn in (("sparsegpt", sparsegpt_2of4), ("wanda", wanda_2of4)):
        new = fn(w, x)
        assert is_2of4(new)
        errs[name] = float((x @ (new - w).T).pow(2).mean())
    assert errs["sparsegpt"] < errs["wanda"]


def test_2of4_model_passes_verifier_dense_fails(default_model, fmnist_calibration, fmnist_eval):
    res = prune_model(default_model.model, fmnist_calibration, PruneSpec(method="2:4"), log=lambda *_: None)
    names = res.stats["pruned_modules"]
    assert names == candidates(default_model.model) and len(names) == 25
    assert check_2of4(res.model) == []
    assert res.stats["sparsity_2of4"] is True
    assert check_2of4(default_model.model) == names
    images, labels = fmnist_eval
    with torch.inference_mode():
        pruned = res.model(torch.from_numpy(images)).argmax(1).numpy()
        dense = default_model.model(torch.from_numpy(images)).argmax(1).numpy()
    assert (pruned == labels).mean() >= (dense == labels).mean() - 0.02


def test_exclude_leaves_layers_dense(default_model, fmnist_calibration):
    spec = PruneSpec(method="2:4", solver="wanda", exclude=[r"\.fc2$"])
    res = prune_model(default_model.model, fmnist_calibration, spec, log=lambda *_: None)
    assert not any(n.endswith("fc2") for n in res.stats["pruned_modules"])
    assert all(n.endswith("fc2") for n in check_2of4(res.model))
