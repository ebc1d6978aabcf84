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
