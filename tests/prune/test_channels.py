"""Structured channel pruning: MAC counting, the plan, least-squares repair, ONNX export, recipe/flag."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from edgefocal.errors import BadInput
from edgefocal.prune import parse_prune_flag, plan_channels, prune_model
from edgefocal.prune import channels as ch
from edgefocal.prune.macs import count
from edgefocal.recipe import PruneSpec, load_recipe



def test_macs_hand_checked():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),            # 8·8 · 4 out · 1 in · 9 = 2304
        nn.Conv2d(4, 8, 1),                       # 64 · 8 · 4 = 2048
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 64 · 8 · 1 · 9 = 4608
        nn.Conv2d(8, 8, 2, stride=2),             # 16 · 8 · 8 · 4 = 4096
        nn.Flatten(),
        nn.Linear(8 * 16, 10),                    # 1280
    )
    c = count(net, (1, 8, 8))
    assert c.per_module == {"0": 2304, "1": 2048, "2": 4608, "3": 4096, "5": 1280}
    assert c.macs == 14336
    assert c.params == sum(p.numel() for p in net.parameters())


def test_block_formula_matches_hook_count(tiny_focalnet):
    c = count(tiny_focalnet, (1, 32, 32))
    for name, _, block in ch.focal_blocks(tiny_focalnet):
        hw = c.per_module[f"{name}.mlp.fc1"] // (block.mlp.fc1.in_channels * block.mlp.fc1.out_channels)
        prunable = c.macs_under(f"{name}.modulation") + c.macs_under(f"{name}.mlp")
        assert ch.block_macs(block, ch.group_sizes(block), hw) == prunable


def _top1(model, images, labels):
    with torch.inference_mode():
        return float((model(torch.from_numpy(images)).argmax(1).numpy() == labels).mean())


def _logits(model, images):
    with torch.inference_mode():
        return model(torch.from_numpy(images))


def test_ratio_counts_macs_and_keeps_multiples(default_model, fmnist_calibration):
    res = prune_model(default_model.model, fmnist_calibration, PruneSpec(method="channels", ratio=0.3), log=lambda *_: None)
    s = res.stats
    assert 0.29 < s["mac_ratio_removed"] <= 0.3  # never more than asked, within a channel step of it
    assert s["macs_after"] == count(res.model, (1, 32, 32)).macs
    assert s["params_after"] < s["params_before"]
    assert 0 < s["channel_ratio_removed"] < 1
    for kept in s["blocks"].values():
        for k, total in kept.values():
            assert k % 8 == 0 and 0 < k <= total
    # the original model is untouched
    assert default_model.model.layers[0].blocks[0].mlp.fc1.out_channels == 128


def test_reconstruction_beats_plain_removal(default_model, fmnist_calibration, fmnist_eval):
    images, labels = fmnist_eval
    dense = _logits(default_model.model, images)
    errs, top1 = {}, {}
    for rec in (False, True):
        spec = PruneSpec(method="channels", ratio=0.5, reconstruct=rec)
        m = prune_model(default_model.model, fmnist_calibration, spec, log=lambda *_: None).model
        errs[rec] = float((_logits(m, images) - dense).pow(2).mean())
        top1[rec] = _top1(m, images, labels)
    assert errs[True] < 0.5 * errs[False]
    assert top1[True] >= top1[False]
    assert top1[True] >= _top1(default_model.model, images, labels) - 0.02


def test_pruned_model_exports_to_onnx_and_matches(default_model, fmnist_calibration, fmnist_eval, tmp_path):
    import onnxruntime as ort

    from edgefocal.export import onnx_from_torch

    m = prune_model(default_model.model, fmnist_calibration, PruneSpec(method="channels", ratio=0.4),
                    log=lambda *_: None).model
    path = onnx_from_torch(m, (1, 32, 32), tmp_path / "pruned.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = fmnist_eval[0][:16]
    got = sess.run(None, {"input": x})[0]
    assert np.abs(got - _logits(m, x).numpy()).max() < 1e-4


def test_exclude_and_stage_ratios(tiny_focalnet):
    spec = PruneSpec(method="channels", ratio=0.2, exclude=[r"layers\.0\."], round_to=1)
    kept, _ = plan_channels(tiny_focalnet, (1, 32, 32), spec)
    full = {n: ch.group_sizes(b) for n, _, b in ch.focal_blocks(tiny_focalnet)}
    assert kept["layers.0.blocks.0"] == full["layers.0.blocks.0"]
    assert kept["layers.1.blocks.0"]["mlp"] < full["layers.1.blocks.0"]["mlp"]
    only_mlp = PruneSpec(method="channels", ratio=0.2, groups=["mlp"], round_to=1)
    kept, _ = plan_channels(tiny_focalnet, (1, 32, 32), only_mlp)
    assert all(k["modulator"] == full[n]["modulator"] and k["context"] == full[n]["context"] for n, k in kept.items())
    staged = PruneSpec(method="channels", stage_ratios=[0.0, 0.0, 0.3, 0.3], round_to=1)
    kept, _ = plan_channels(tiny_focalnet, (1, 32, 32), staged)
    assert kept["layers.1.blocks.0"] == full["layers.1.blocks.0"]
    assert kept["layers.3.blocks.0"]["mlp"] < full["layers.3.blocks.0"]["mlp"]
    weighted = PruneSpec(method="channels", ratio=0.2, stage_weights=[2.0, 1.0, 1.0, 0.5], round_to=1)
    kept, info = plan_channels(tiny_focalnet, (1, 32, 32), weighted)
    assert info["fractions"][0] == pytest.approx(2 * info["fractions"][1]) == pytest.approx(4 * info["fractions"][3])
    with pytest.raises(BadInput, match="stage_ratios"):
        plan_channels(tiny_focalnet, (1, 32, 32), PruneSpec(method="channels", stage_ratios=[0.1, 0.1]))


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.3, 0.45])
@pytest.mark.parametrize("round_to", [1, 8, 16])
def test_plan_removes_at_most_the_ratio_within_one_step(tiny_focalnet, ratio, round_to):
    """Never more MACs than asked (the bar counts ≤ 30 %), and no channel step left unspent that would fit."""
    spec = PruneSpec(method="channels", ratio=ratio, stage_weights=[1.3, 1.0, 0.9, 0.8], round_to=round_to)
    kept, info = plan_channels(tiny_focalnet, (1, 32, 32), spec)
    dense = info["dense"]
    blocks = {n: (b, dense.per_module[f"{n}.mlp.fc1"] // (b.mlp.fc1.in_channels * b.mlp.fc1.out_channels))
              for n, _, b in ch.focal_blocks(tiny_focalnet)}
    removed = sum(ch.block_macs(b, ch.group_sizes(b), hw) - ch.block_macs(b, kept[n], hw) for n, (b, hw) in blocks.items())
    assert 0 < removed <= ratio * dense.macs
    for n, (b, hw) in blocks.items():
        for g, size in kept[n].items():
            step = ch._step(ch.group_sizes(b)[g], round_to)
            if size - step >= max(step, 0.05 * ch.group_sizes(b)[g]):
                one_more = ch.block_macs(b, kept[n], hw) - ch.block_macs(b, dict(kept[n], **{g: size - step}), hw)
                assert removed + one_more > ratio * dense.macs, (n, g)
    assert plan_channels(tiny_focalnet, (1, 32, 32), spec)[0] == kept  # pinned stage weights: the same plan


def test_pruned_modulation_runs_timm_forward(tiny_focalnet):
    """Only input_split changes: timm's own forward runs the pruned module (q, ctx, gates all narrower)."""
    torch.manual_seed(0)
    calib = np.random.default_rng(0).normal(size=(16, 1, 32, 32)).astype(np.float32)
    spec = PruneSpec(method="channels", ratio=0.15, round_to=1, groups=["modulator", "context"])
    m = prune_model(tiny_focalnet, calib, spec, log=lambda *_: None).model
    mod = m.layers[0].blocks[0].modulation
    cm, cc, ng = mod.input_split
    assert cm < 16 and cc < 16 and ng == mod.focal_level + 1
    assert mod.f.out_channels == cm + cc + ng and mod.h.weight.shape[:2] == (cm, cc)
    assert all(layer[0].groups == cc for layer in mod.focal_layers)
    assert m(torch.from_numpy(calib)).shape == (16, 10)


def test_parse_prune_flag():
    assert parse_prune_flag("channels:0.3") == {"method": "channels", "ratio": 0.3}
    assert parse_prune_flag("2:4") == {"method": "2:4"}
    assert parse_prune_flag("2:4:wanda") == {"method": "2:4", "solver": "wanda"}
    assert parse_prune_flag("channels:0.2,reconstruct=off,recover=100") == {
        "method": "channels", "ratio": 0.2, "reconstruct": False, "recover_steps": 100}
    for bad in ("channels:x", "magnitude", "2:4:obs", "channels:0.3,foo=1"):
        with pytest.raises(BadInput):
            parse_prune_flag(bad)


def test_recipe_rejects_conflicts():
    load_recipe(overrides={"prune.method": "channels", "prune.ratio": 0.3})
    for bad in ({"prune.method": "channels"}, {"prune.method": "none", "prune.ratio": 0.3},
                {"prune.method": "2:4", "prune.ratio": 0.3},
                {"prune.method": "channels", "prune.ratio": 0.3, "prune.stage_ratios": [0.1, 0.1, 0.1, 0.1]}):
        with pytest.raises(BadInput):
            load_recipe(overrides=bad)


def test_post_norm_layerscale_variant_prunes():
    """large/huge-style blocks (post-norm, layer scale, LayerNorm in the modulation) take the local repair
    target and keep the modulator channels that the LayerNorm couples."""
    from timm.models.focalnet import FocalNet

    torch.manual_seed(0)
    net = FocalNet(in_chans=1, num_classes=10, embed_dim=16, depths=(1, 1, 1, 1), use_post_norm=True,
                   use_post_norm_in_modulation=True, layerscale_value=1e-4).eval()
    calib = np.random.default_rng(0).normal(size=(16, 1, 32, 32)).astype(np.float32)
    res = prune_model(net, calib, PruneSpec(method="channels", ratio=0.2, round_to=1), log=lambda *_: None)
    for kept in res.stats["blocks"].values():
        assert kept["modulator"][0] == kept["modulator"][1]
    assert abs(res.stats["mac_ratio_removed"] - 0.2) < 0.01
    assert res.model(torch.from_numpy(calib)).shape == (16, 10)
