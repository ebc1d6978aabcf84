"""Checkpoint loading: timm names, timm-format and official-format checkpoints the tests make themselves."""
from __future__ import annotations

import re

import pytest
import torch

from edgefocal.errors import BadInput
from edgefocal.models import focalnet_names, load_model, read_state_dict


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
        read_state_dict(tmp_path / "nope.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(BadInput, match="not a readable"):
        read_state_dict(bad)
    truncated = tmp_path / "trunc.pth"
    torch.save({"a": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(BadInput, match=str(truncated)):
        read_state_dict(truncated)


def test_unknown_model_name_suggests(tmp_path):
    with pytest.raises(BadInput, match="did you mean 'focalnet_tiny_srf'"):
        load_model("focalnet_tiny_sfr")


def test_embedded_default_is_trained(default_model, fmnist_eval):
    images, labels = fmnist_eval
    with torch.inference_mode():
        pred = default_model.model(torch.from_numpy(images)).argmax(1).numpy()
    assert (pred == labels).mean() > 0.85  # a trained classifier, not random weights (10 % chance)
    assert default_model.class_names[9] == "Ankle boot"
    assert default_model.data_config["input_size"] == [1, 32, 32]
