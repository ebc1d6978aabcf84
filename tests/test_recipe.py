"""Recipes validate strictly; flags override fields; every shipped recipe loads."""

import pytest

from edgefocal.errors import BadInput
from edgefocal.recipe import REPO_ROOT, Recipe, load_recipe


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    recipe = load_recipe(path)
    assert recipe.calibration.size >= 1


def test_default_yaml_matches_the_built_in_defaults():
    from_file = load_recipe(REPO_ROOT / "recipes" / "default.yaml")
    assert from_file.model == Recipe().model and from_file.calibration == Recipe().calibration
    assert from_file.bench == Recipe().bench and from_file.eval == Recipe().eval


def test_unknown_field_is_named(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("quantize:\n  fast_bias_corection: true\n")
    with pytest.raises(BadInput, match=r"quantize\.fast_bias_corection: Extra inputs are not permitted"):
        load_recipe(p)


def test_bad_value_and_bad_yaml(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("precision: int4\n")
    with pytest.raises(BadInput, match="precision"):
        load_recipe(p)
    p.write_text("model: [unclosed\n")
    with pytest.raises(BadInput, match="not valid YAML"):
        load_recipe(p)
    with pytest.raises(BadInput, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")


def test_overrides_win_and_named_calibration_resolves():
    r = load_recipe(REPO_ROOT / "recipes" / "openvino-int8.yaml",
                    {"precision": "fp32", "calibration": "fmnist-train-1000", "calibration.size": 64})
    assert r.precision == "fp32" and r.calibration.size == 64 and r.calibration.split == "train"
    with pytest.raises(BadInput, match="calibration set 'nope' was not found"):
        load_recipe(None, {"calibration": "nope"})


def test_conflicting_settings_fail_instead_of_being_fixed():
    with pytest.raises(BadInput, match="min_batch"):
        load_recipe(None, {"tensorrt.min_batch": 16, "tensorrt.opt_batch": 8})


def test_focalnet_arch_lists_exactly_timms_focalnet_arguments():
    """model.arch validates the keyword arguments of timm's FocalNet: the same names and defaults (those a
    YAML file can hold), so a timm release that adds or renames one fails here, not in a user's build."""
    import inspect

    from timm.models.focalnet import FocalNet

    from edgefocal.recipe import FocalNetArch

    params = {n: p.default for n, p in inspect.signature(FocalNet.__init__).parameters.items()
              if n not in ("self", "norm_layer", "device", "dtype")}
    assert list(FocalNetArch.model_fields) == list(params)
    ours = {n: f.default for n, f in FocalNetArch.model_fields.items()}
    for per_stage in ("focal_levels", "focal_windows"):  # an int applies to every one of the 4 default stages
        ours[per_stage] = (ours[per_stage],) * len(params["depths"])
    ours["depths"] = tuple(ours["depths"])
    assert ours == params


def test_model_arch_unknown_key_is_named_with_a_suggestion(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("model:\n  name: focalnet\n  arch: {embed_dims: 36, depths: [1, 2, 2, 1]}\n")
    with pytest.raises(BadInput, match=r"recipe .*r.yaml is invalid: model.arch: .*'embed_dims' is not an argument "
                                       r"of timm's FocalNet; did you mean 'embed_dim'\?"):
        load_recipe(p)


@pytest.mark.parametrize("model, message", [
    ({"name": "focalnet"}, "name focalnet builds timm's FocalNet from model.arch"),
    ({"name": "focalnet_tiny_srf", "arch": {"embed_dim": 8}}, "model.arch is used only with name: focalnet"),
    ({"name": "focalnet", "arch": {"depths": [1, 1], "focal_levels": [2, 2, 2]}},
     "focal_levels has 3 values but depths has 2 stages"),
    ({"name": "focalnet", "arch": {"num_classes": 10}, "num_classes": 5}, "num_classes 5 and arch.num_classes 10"),
    ({"data_config": {"mean": [0.5], "std": [0.2, 0.2]}}, "disagree on the number of channels: mean 1, std 2"),
    ({"data_config": {"std": [0.0]}}, "must be > 0"),
    ({"data_config": {"interpolation": "cubic"}}, "model.data_config.interpolation"),
    ({"data_config": {"crop": 1.0}}, r"model.data_config.crop: Extra inputs are not permitted"),
])
def test_model_section_conflicts_fail(model, message):
    with pytest.raises(BadInput, match=message):
        load_recipe(None, {"model": model})


def test_focalnet_arch_kwargs_broadcast_per_stage():
    r = load_recipe(None, {"model": {"name": "focalnet", "arch": {"embed_dim": 36, "depths": [1, 2, 2, 1],
                                                                  "focal_levels": 3, "in_chans": 3}}})
    assert r.model.arch.kwargs() == {"embed_dim": 36, "depths": (1, 2, 2, 1), "focal_levels": (3, 3, 3, 3),
                                     "in_chans": 3, "drop_path_rate": 0.0}
