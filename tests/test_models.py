"""Checkpoint loading: timm names, timm-format and official-format checkpoints the tests make themselves."""
from __future__ import annotations

import re

import pytest
import torch

from edgefocal.errors import BadInput
from edgefocal.models import focalnet_names, load_model


def to_official(state: dict) -> dict:
    """Rename a timm FocalNet state dict to microsoft/FocalNet's layout (the inverse of timm's filter)."""
    out = {}
    for k, v in state.items():
        k2 = k.replace("stem.", "patch_embed.").replace("head.fc.", "head.")
        k2 = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k2)
        if re.search(r"(modulation\.(f|proj)|mlp\.fc[12])\.weight$", k2):
            v = v.reshape(v.shape[0], v.shape[1])  # the official model uses nn.Linear there
        out[k2] = v
    return out


@pytest.fixture(scope="module")
def small_timm_model():
    import timm

    torch.manual_seed(0)
    return timm.create_model("focalnet_tiny_srf", num_classes=7).eval()


def test_a_registered_name_builds_that_variant_with_its_data_config():
    """--model NAME builds timm's variant (tiny_lrf: three focal levels) with the head and preprocessing
    edgefocal reports."""
    assert "focalnet_tiny_lrf" in focalnet_names()
    loaded = load_model("focalnet_tiny_lrf", num_classes=3)
    assert len(loaded.model.layers[0].blocks[0].modulation.focal_layers) == 3
    assert loaded.model.num_classes == 3 and loaded.class_names == ["0", "1", "2"]
    assert tuple(loaded.data_config["input_size"]) == (3, 224, 224) and loaded.checkpoint is None


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_format_checkpoint_round_trips(tmp_path, small_timm_model, suffix):
    path = tmp_path / f"w{suffix}"
    state = small_timm_model.state_dict()
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": state}, path)
    loaded = load_model("focalnet_tiny_srf", path)
    assert loaded.model.num_classes == 7  # taken from the checkpoint's head
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), small_timm_model(x))
    assert loaded.checkpoint_sha256 and len(loaded.checkpoint_sha256) == 64
    assert loaded.data_config["input_size"] == (3, 224, 224)


def test_official_format_checkpoint_is_converted(tmp_path, small_timm_model):
    path = tmp_path / "focalnet_tiny_srf.pth"
    official = to_official(small_timm_model.state_dict())
    assert "patch_embed.proj.weight" in official and "head.weight" in official
    torch.save({"model": official, "epoch": 300}, path)
    loaded = load_model("focalnet_tiny_srf", path)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(loaded.model(x), small_timm_model(x))


class Config:
    """Stands for the yacs CfgNode that official checkpoints embed."""


def test_checkpoint_with_foreign_objects_needs_trust(tmp_path, small_timm_model):
    path = tmp_path / "with_config.pth"
    torch.save({"model": to_official(small_timm_model.state_dict()), "config": Config()}, path)
    with pytest.raises(BadInput, match=f"unsupported global {re.escape(Config.__module__)}.Config") as e:
        load_model("focalnet_tiny_srf", path)
    assert "--trust-checkpoint" in e.value.hint
    assert load_model("focalnet_tiny_srf", path, trust_checkpoint=True).model.num_classes == 7


def test_wrong_architecture_names_the_mismatched_keys(tmp_path, small_timm_model):
    path = tmp_path / "tiny.pth"
    torch.save(small_timm_model.state_dict(), path)
    with pytest.raises(BadInput) as e:
        load_model("focalnet_small_srf", path)
    msg = str(e.value)
    assert "does not fit the architecture" in msg and "missing 192 keys (layers.2.blocks.1" in msg


def test_shape_mismatch_is_named(tmp_path, small_timm_model):
    state = dict(small_timm_model.state_dict())
    state["layers.0.blocks.0.mlp.fc1.weight"] = torch.zeros(10, 96, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(BadInput, match=r"shape mismatch \(layers.0.blocks.0.mlp.fc1.weight"):
        load_model("focalnet_tiny_srf", path)


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_model("focalnet_tiny_srf", tmp_path / "nope.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(BadInput, match="not a readable"):
        load_model("focalnet_tiny_srf", bad)
    truncated = tmp_path / "trunc.pth"
    torch.save({"a": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(BadInput, match=str(truncated)):
        load_model("focalnet_tiny_srf", truncated)


def test_unknown_model_name_suggests(tmp_path):
    with pytest.raises(BadInput, match="did you mean 'focalnet_tiny_srf'"):
        load_model("focalnet_tiny_sfr")


def test_embedded_default_is_trained(default_model, fmnist_eval):
    images, labels = fmnist_eval
    with torch.inference_mode():
        pred = default_model.model(torch.from_numpy(images)).argmax(1).numpy()
    assert (pred == labels).mean() > 0.85  # a trained classifier, not random weights (10 % chance)
    assert default_model.class_names[9] == "Ankle boot"
    assert default_model.data_config["input_size"] == (1, 32, 32)


# ---------------------------------------------------------------- custom FocalNets, data configs, modules

TINY_ARCH = {"in_chans": 1, "num_classes": 10, "embed_dim": 16, "depths": [1, 1, 1, 1], "drop_path_rate": 0.0}
TINY_DATA = {"input_size": [1, 32, 32], "mean": [0.286], "std": [0.353], "interpolation": "bilinear",
             "crop_pct": 1.0}


def _tiny_weights(arch: dict = TINY_ARCH) -> dict:
    from timm.models.focalnet import FocalNet

    torch.manual_seed(0)
    kwargs = {**arch, "depths": tuple(arch["depths"])}
    return FocalNet(**kwargs).state_dict()


def test_focalnet_from_arch_builds_that_variant():
    """model.name focalnet + model.arch: another width, depth, levels and 3 channels than any timm name."""
    arch = {"in_chans": 3, "embed_dim": 24, "depths": [1, 2, 1], "focal_levels": 3, "focal_windows": [3, 5, 3],
            "num_classes": 5}
    data = {"input_size": [3, 48, 48], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2], "interpolation": "bicubic",
            "crop_pct": 1.0}
    loaded = load_model("focalnet", arch=arch, data_config=data, class_names=list("abcde"))
    m = loaded.model
    assert len(m.layers) == 3 and [len(s.blocks) for s in m.layers] == [1, 2, 1]
    assert m.stem.proj.in_channels == 3 and m.stem.proj.out_channels == 24 and m.num_classes == 5
    assert [len(s.blocks[0].modulation.focal_layers) for s in m.layers] == [3, 3, 3]
    assert m.layers[1].blocks[0].modulation.kernel_sizes == [5, 7, 9]  # focal_windows per stage
    assert loaded.data_config == {"input_size": (3, 48, 48), "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.2),
                                  "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center"}
    assert loaded.data_config_source["mean"] == "model.data_config"
    assert loaded.data_config_source["crop_mode"] == "timm default"
    assert loaded.arch["focal_levels"] == (3, 3, 3) and loaded.class_names == list("abcde")
    with torch.inference_mode():
        assert m(torch.randn(2, 3, 48, 48)).shape == (2, 5)


def test_custom_focalnet_without_a_data_config_names_what_is_missing():
    with pytest.raises(BadInput, match="model focalnet has no data config for input_size, mean, std, "
                                       "interpolation, crop_pct") as e:
        load_model("focalnet", arch=TINY_ARCH)
    assert "model.data_config" in e.value.hint and "train.py" in e.value.hint
    with pytest.raises(BadInput, match="no data config for crop_pct"):
        load_model("focalnet", arch=TINY_ARCH, data_config={k: v for k, v in TINY_DATA.items() if k != "crop_pct"})


def test_data_config_channels_must_match_the_model():
    with pytest.raises(BadInput, match=r"takes 1 input channels but its data config's input_size \[3, 32, 32\]"):
        load_model("focalnet", arch=TINY_ARCH, data_config={**TINY_DATA, "input_size": [3, 32, 32],
                                                            "mean": [0.1] * 3, "std": [0.2] * 3})


def test_timm_train_checkpoint_fills_the_data_config(tmp_path):
    """timm's train.py saves its command line as `args` (an argparse.Namespace): img_size, in_chans, a single
    mean/std, interpolation and crop_pct fill the data config where the recipe is silent; a recipe field wins."""
    import argparse

    args = argparse.Namespace(model="focalnet", num_classes=10, in_chans=1, input_size=None, img_size=32,
                              mean=[0.25], std=[0.5], interpolation="bilinear", crop_pct=1.0, crop_mode=None)
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 9, "arch": "focalnet", "state_dict": _tiny_weights(), "args": args, "version": 2,
                "metric": 88.0}, path)
    loaded = load_model("focalnet", path, arch=TINY_ARCH)
    assert loaded.data_config == {"input_size": (1, 32, 32), "mean": (0.25,), "std": (0.5,),
                                  "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}
    assert set(loaded.data_config_source.values()) == {"checkpoint args (timm train.py)", "timm default"}
    override = load_model("focalnet", path, arch=TINY_ARCH, data_config={"crop_pct": 0.875})
    assert override.data_config["crop_pct"] == 0.875 and override.data_config["mean"] == (0.25,)
    assert override.data_config_source["crop_pct"] == "model.data_config"


def test_checkpoint_pretrained_cfg_fills_the_data_config(tmp_path):
    path = tmp_path / "with_cfg.pth"
    cfg = {**TINY_DATA, "crop_mode": "squash", "architecture": "focalnet", "num_classes": 10}
    torch.save({"state_dict": _tiny_weights(), "pretrained_cfg": cfg}, path)
    loaded = load_model("focalnet", path, arch=TINY_ARCH)
    assert loaded.data_config["crop_mode"] == "squash" and loaded.data_config["std"] == (0.353,)
    assert loaded.data_config_source["input_size"] == "checkpoint pretrained_cfg"


def test_timm_train_checkpoint_of_a_registered_model_keeps_its_other_defaults(tmp_path, small_timm_model):
    import argparse

    path = tmp_path / "checkpoint-3.pth.tar"
    args = argparse.Namespace(model="focalnet_tiny_srf", img_size=160, in_chans=None, input_size=None, mean=None,
                              std=None, interpolation="", crop_pct=None, crop_mode=None)
    torch.save({"state_dict": small_timm_model.state_dict(), "args": args}, path)
    loaded = load_model("focalnet_tiny_srf", path)
    assert loaded.data_config["input_size"] == (3, 160, 160) and loaded.model.num_classes == 7
    assert loaded.data_config["interpolation"] == "bicubic" and loaded.data_config["crop_pct"] == 0.9
    assert loaded.data_config_source["crop_pct"] == "focalnet_tiny_srf's pretrained_cfg"
    with pytest.raises(BadInput, match="does not fit") as e:  # loaded into the default by mistake
        load_model("edgefocal-fmnist", path)
    assert e.value.hint.startswith("the checkpoint was trained as 'focalnet_tiny_srf'")


def test_checkpoint_that_does_not_fit_the_arch_names_keys_and_points_at_arch(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(_tiny_weights(), str(path))
    with pytest.raises(BadInput, match=r"shape mismatch \(head.fc.weight \(10, 128\) vs \(10, 192\)") as e:
        load_model("focalnet", path, arch={**TINY_ARCH, "embed_dim": 24}, data_config=TINY_DATA)
    assert "model.arch" in e.value.hint
    with pytest.raises(BadInput, match=r"missing \d+ keys \(layers.0.blocks.1"):
        load_model("focalnet", path, arch={**TINY_ARCH, "depths": [2, 1, 1, 1]}, data_config=TINY_DATA)


def test_class_names_must_match_the_head():
    with pytest.raises(BadInput, match="3 class names were given for model focalnet, which has 10 classes"):
        load_model("focalnet", arch=TINY_ARCH, data_config=TINY_DATA, class_names=["a", "b", "c"])


@pytest.mark.parametrize("kwargs", [
    {"embed_dim": 16, "depths": (1, 1, 1, 1)},
    {"in_chans": 3, "embed_dim": 24, "depths": (1, 2, 1), "focal_levels": (3, 3, 2), "focal_windows": (3, 5, 3),
     "num_classes": 5, "mlp_ratio": 3.0},
    {"embed_dim": 16, "depths": (1, 1), "focal_levels": (2, 2), "focal_windows": (3, 3), "use_overlap_down": True,
     "use_post_norm": True, "use_post_norm_in_modulation": True, "normalize_modulator": True,
     "layerscale_value": 1e-4, "head_hidden_size": 32, "global_pool": "max"},
], ids=["tiny", "custom", "large-style"])
def test_arch_of_reads_the_kwargs_back(kwargs):
    from timm.models.focalnet import FocalNet

    from edgefocal.models import arch_of

    model = FocalNet(**kwargs, drop_path_rate=0.0)
    arch = arch_of(model)
    assert arch is not None and arch.pop("class") == "timm.models.focalnet.FocalNet"
    for key, value in kwargs.items():
        assert arch[key] == value, key
    rebuilt = FocalNet(**arch)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_arch_of_a_changed_layout_is_none(tiny_focalnet):
    import copy

    from edgefocal.models import arch_of

    pruned = copy.deepcopy(tiny_focalnet)
    mlp = pruned.layers[0].blocks[0].mlp
    mlp.fc1, mlp.fc2 = torch.nn.Conv2d(16, 40, 1), torch.nn.Conv2d(40, 16, 1)  # not 4 × 16 hidden units
    assert arch_of(pruned) is None and arch_of(torch.nn.Linear(2, 2)) is None


def test_from_module_needs_a_data_config_or_its_own(tiny_focalnet):
    from timm.models.focalnet import FocalNet

    from edgefocal.models import from_module

    bare = FocalNet(in_chans=1, num_classes=10, embed_dim=16, depths=(1, 1, 1, 1))
    with pytest.raises(BadInput, match="the FocalNet module has no data config for input_size, mean"):
        from_module(bare)
    loaded = from_module(bare, TINY_DATA, class_names=[f"c{i}" for i in range(10)])
    assert loaded.data_config["input_size"] == (1, 32, 32) and loaded.arch["depths"] == (1, 1, 1, 1)
    assert loaded.name == "focalnet" and loaded.class_names[3] == "c3" and loaded.checkpoint is None
    own = from_module(tiny_focalnet)  # the fixture carries a pretrained_cfg
    assert own.data_config["mean"] == (0.286,) and own.data_config_source["mean"] == "the module's pretrained_cfg"
    with pytest.raises(BadInput, match="edgefocal builds timm FocalNet models; got a Linear"):
        from_module(torch.nn.Linear(2, 2), TINY_DATA)
