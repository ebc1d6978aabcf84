"""`edgefocal build`'s flags: a value a recipe field rejects is reported against the flag that gave it (one
line, exit 2, nothing written), never as an error in the recipe file the user did not touch."""
from __future__ import annotations

import pytest

from edgefocal.cli import main
from edgefocal.errors import BadInput
from edgefocal.recipe import Overrides, load_recipe


def _fails(capsys, tmp_path, *args, recipe=None) -> tuple[str, str]:
    """(error line, hint line) of a build that must exit 2 before writing anything."""
    out = tmp_path / "o"
    argv = ["build", *(["--recipe", str(recipe)] if recipe else []), *map(str, args), "--output", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("error: ") and err[1].startswith("hint: "), err
    assert not out.exists() and not list(tmp_path.glob(".o.staging-*"))
    return err[0], err[1]


@pytest.mark.parametrize("args, expected", [
    (["--prune", "channels:1.5"], "error: edgefocal build: --prune channels:1.5: prune.ratio must be < 1, got 1.5"),
    (["--prune", "channels:0"], "error: edgefocal build: --prune channels:0: prune: method channels needs ratio > 0"),
    (["--batch-sizes", "0"], "error: edgefocal build: --batch-sizes 0: bench.batch_sizes: batch_sizes needs at least "
                             "one positive batch size"),
    (["--batch-sizes", "1,x"], "error: edgefocal build: --batch-sizes 1,x: not a list of integers"),
    (["--calib-size", "0"], "error: edgefocal build: --calib-size 0: calibration.size must be ≥ 1, got 0"),
    (["--min-agreement", "1.5"], "error: edgefocal build: --min-agreement 1.5: gates.min_agreement must be ≤ 1, got 1.5"),
    (["--max-size-growth", "-1"], "error: edgefocal build: --max-size-growth -1: gates.max_size_growth must be ≥ 0"),
    (["--calibration", "nope"], "error: edgefocal build: --calibration nope: calibration set 'nope' was not found"),
])
def test_a_bad_flag_gets_that_flags_error(args, expected, capsys, tmp_path):
    error, hint = _fails(capsys, tmp_path, *args)  # the default recipe (recipes/default.yaml) is fine
    assert error.startswith(expected) and "recipe" not in error.removeprefix(expected), error
    assert hint != "hint: fix the named field (see recipes/default.yaml)"


def test_the_prune_hint_says_what_a_good_value_is(capsys, tmp_path):
    _, hint = _fails(capsys, tmp_path, "--prune", "channels:1.5")
    assert "0 < RATIO < 1" in hint and "--prune channels:0.3" in hint


def test_a_bad_recipe_is_still_the_recipes_error(capsys, tmp_path):
    """An error the recipe file has without any flag is the file's, even in a section a flag also sets."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("prune: {method: channels, ratio: 0.3, stage_ratios: [0.1, 0.1, 0.1, 0.1]}\n")
    error, hint = _fails(capsys, tmp_path, "--prune", "channels:0.2", recipe=recipe)
    assert error == f"error: recipe {recipe} is invalid: prune: set either ratio or stage_ratios, not both"
    assert hint == "hint: fix the named field (see recipes/default.yaml)"


def test_a_flag_that_breaks_a_fine_recipe_names_both(capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("prune: {stage_ratios: [0.1, 0.1, 0.1, 0.1]}\n")  # fine while method is none...
    error, _ = _fails(capsys, tmp_path, "--prune", "channels:0.2", recipe=recipe)  # ...not with a ratio too
    assert error == (f"error: edgefocal build: --prune channels:0.2: prune: set either ratio or stage_ratios, not both "
                     f"(with the rest of recipe {recipe})")


def test_overrides_without_flags_keep_the_recipe_message():
    """The Python API and tests pass plain dicts: errors read as before."""
    with pytest.raises(BadInput, match=r"^recipe is invalid: bench\.batch_sizes: batch_sizes needs"):
        load_recipe(None, {"bench.batch_sizes": []})
    o = Overrides(origin="edgefocal build")
    o.set("calibration.size", 0, "--calib-size 0")
    o.set("eval.size", 0, "--eval-size 0")
    with pytest.raises(BadInput, match=r"^edgefocal build: --calib-size 0: calibration.size must be ≥ 1, got 0; "
                                       r"--eval-size 0: eval.size must be ≥ 1, got 0$"):
        load_recipe(None, o)


@pytest.mark.parametrize("argv, expected", [
    (["compare", "a", "b", "--max-size-growth", "-1"], "error: edgefocal compare: --max-size-growth -1: "),
    (["sensitivity", "--images", "3"], "error: edgefocal sensitivity: --images 3: quantize.selection_size must be ≥ 10"),
])
def test_other_commands_name_their_flags_too(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(expected)
    assert not list(tmp_path.iterdir())
