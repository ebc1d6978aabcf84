"""The mixed-precision search: its choice logic on a named fake (FakeProbe: scripted flips, no runtime), and
the real search on the trained default through ONNX Runtime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefocal.export import onnx_from_torch
from edgefocal.precision import plan_precision
from edgefocal.core import Probe
from edgefocal.precision.search import SearchSets, auto_target_agreement, choose, decision_count, selection_count


@pytest.fixture(scope="module")
def tiny(tiny_focalnet, tmp_path_factory):
    graph = onnx.load(str(onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("mp") / "t.onnx")))
    return graph, plan_precision(graph)


def FakeProbe(plan, harm: dict[str, int], n: int = 1000, fp32_ms: float = 2.0) -> Probe:
    """A FAKE runtime (not a model): INT8 part `module` flips the answer of `harm[module]` images; keeping
    it float restores them. FP32 at batch 1 takes `fp32_ms` per part, INT8 1 ms."""
    nodes = {p.module: set(p.nodes) for p in plan.parts}
    rng = np.random.default_rng(0)
    victims = {m: rng.choice(n, k, replace=False) for m, k in harm.items()}

    def logits(float_nodes, images):
        out = np.tile([[1.0, 0.0]], (len(images), 1))
        for module, idx in victims.items():
            if not nodes[module] <= set(float_nodes):
                out[idx[idx < len(images)]] = [0.0, 1.0]
        return out

    def module_ms(int8, sample):
        return {p.module: (1.0 if int8 else fp32_ms) for p in plan.parts if p.int8}

    return Probe("fake", logits, module_ms)


def test_a_slow_probe_measures_the_combinations_but_does_not_rank(tiny):
    """Core ML's executor (a tenth of a runtime's rate) joins the trials and the confirmation, where its own
    flips count, and leaves the parts × images ranking to the compiled runtimes."""
    from dataclasses import replace

    graph, plan = tiny
    images = np.zeros((1000, 1, 32, 32), np.float32)
    ref = np.tile([[1.0, 0.0]], (1000, 1))
    fast = FakeProbe(plan, {"stem.proj": 8})
    slow_harm = FakeProbe(plan, {"stem.proj": 8, "layers.3.blocks.0.mlp.fc2": 6})
    seen: list[int] = []
    slow = replace(slow_harm, target="slow", macs_per_second=1e9,
                   logits=lambda nodes, x: seen.append(len(x)) or slow_harm.logits(nodes, x))
    result = choose([fast, slow], plan, graph, (images, ref), (images[:500], ref[:500]), 0.995, 0.5,
                    {p.module: 100 for p in plan.parts}, log=lambda m: None, scan=(images[:200], ref[:200]))
    assert slow.load == 10 and result.selection["ranked_on"] == ["fake"] and 200 not in seen  # no scan on it
    assert result.chosen == ["stem.proj"] and result.validation["agreement"] < 1.0  # its fc2 flips still count
    assert 500 in seen  # it confirmed the choice


def test_keeps_the_harmful_parts_float_until_the_target(tiny):
    graph, plan = tiny
    harm = {"stem.proj": 8, "layers.3.blocks.0.mlp.fc2": 4, "layers.2.blocks.0.modulation.h": 1}
    images = np.zeros((1000, 1, 32, 32), np.float32)
    ref = np.tile([[1.0, 0.0]], (1000, 1))
    macs = {p.module: 100 for p in plan.parts}
    result = choose([FakeProbe(plan, harm)], plan, graph, (images, ref), (images[:500], ref[:500]), 0.995, 0.5, macs,
                    log=lambda m: None)
    assert result.chosen == ["stem.proj"] and result.reached  # 8 of 1000 flips: 99.2 % → one part reaches 99.5 %
    assert result.selection == {"images": 1000, "scan_images": 1000, "ranked_on": ["fake"], "agreement_int8": 0.987,
                                "agreement": 0.995}
    assert result.plan.module_is_int8("stem.proj") is False
    why = {p.module: p.why for p in result.plan.parts}
    assert why["stem.proj"].startswith("mixed precision") and why["layers.0.blocks.0.mlp.fc1"] == "preset focalnet"
    assert result.sensitivity[0]["module"] == "stem.proj" and result.sensitivity[0]["agreement_cost"] == 0.008


def test_an_int8_model_at_the_target_keeps_nothing_float_and_ranks_nothing(tiny):
    """At 224² ranking is parts × compiles (minutes): when all INT8 already reaches the target it decides
    nothing, so no part is measured alone (the fake counts every variant it runs)."""
    graph, plan = tiny
    fake = FakeProbe(plan, {"stem.proj": 2})
    variants = []

    def logits(float_nodes, images):
        variants.append(frozenset(float_nodes))
        return fake.logits(float_nodes, images)

    images = np.zeros((1000, 1, 32, 32), np.float32)
    ref = np.tile([[1.0, 0.0]], (1000, 1))
    result = choose([Probe("fake", logits, fake.module_ms)], plan, graph, (images, ref), (images[:500], ref[:500]),
                    0.995, 0.5, {p.module: 100 for p in plan.parts}, log=lambda m: None)
    assert result.chosen == [] and result.reached and result.sensitivity == []
    assert variants == [frozenset()] * 2  # the all-INT8 model on the selection, then on the validation images
    assert result.selection["scan_images"] == 0 and result.validation["agreement"] == result.validation["agreement_int8"]


def test_the_latency_budget_is_never_exceeded(tiny):
    graph, plan = tiny
    harm = {"stem.proj": 8, "layers.3.blocks.0.mlp.fc2": 4}
    images = np.zeros((1000, 1, 32, 32), np.float32)
    ref = np.tile([[1.0, 0.0]], (1000, 1))
    macs = {p.module: 1 for p in plan.parts} | {"stem.proj": 1000}  # the stem carries nearly every MAC
    result = choose([FakeProbe(plan, harm)], plan, graph, (images, ref), (images, ref), 0.999, 0.05, macs,
                    log=lambda m: None)
    assert "stem.proj" not in result.chosen and not result.reached  # it would cost ~100 % of the INT8 latency
    assert result.budget["spent"] <= 0.05 and result.chosen == ["layers.3.blocks.0.mlp.fc2"]


def test_the_choice_does_not_move_with_the_measured_speed(tiny):
    """The same inputs give the same plan whether the machine measured INT8 as 1.5× or 4× faster than FP32
    (a loaded CPU moves those ms), as long as the budget does not bind."""
    graph, plan = tiny
    harm = {"stem.proj": 3, "layers.3.blocks.0.mlp.fc2": 3, "layers.2.blocks.0.modulation.h": 2,
            "layers.1.blocks.0.mlp.fc1": 2}
    images = np.zeros((1000, 1, 32, 32), np.float32)
    ref = np.tile([[1.0, 0.0]], (1000, 1))
    macs = {p.module: 10 * (i + 1) for i, p in enumerate(plan.parts)}
    chosen = [choose([FakeProbe(plan, harm, fp32_ms=ms)], plan, graph, (images, ref), (images, ref), 0.996, 1.0,
                     macs, log=lambda m: None).chosen for ms in (1.5, 4.0)]
    assert chosen[0] == chosen[1] and len(chosen[0]) >= 2


def test_a_part_that_hurts_in_combination_stays_int8(tiny):
    """Parts interact: h helps alone (3 images) but, once fc2 is float, floating it too flips 5 others. The
    search measures each combination and keeps h INT8."""
    graph, plan = tiny
    fc2, h = "layers.3.blocks.0.mlp.fc2", "layers.2.blocks.0.modulation.h"
    base = FakeProbe(plan, {fc2: 6, h: 3})
    nodes = {p.module: set(p.nodes) for p in plan.parts}

    def logits(float_nodes, images):
        out = base.logits(float_nodes, images)
        if nodes[fc2] | nodes[h] <= set(float_nodes):
            out[900:905] = [0.0, 1.0]  # images no part flips on its own
        return out

    images = np.zeros((1000, 1, 32, 32), np.float32)
    ref = np.tile([[1.0, 0.0]], (1000, 1))
    macs = {p.module: 100 for p in plan.parts}
    result = choose([Probe("fake", logits, base.module_ms)], plan, graph, (images, ref), (images, ref), 0.999, 1.0,
                    macs, log=lambda m: None)
    assert result.chosen == [fc2] and result.selection["agreement"] == 0.997


def test_the_scan_size_comes_from_macs_not_from_a_clock():
    small = selection_count(4000, macs_per_image=4_500_000, int8_parts=30, probes=3, seconds=180)
    big = selection_count(4000, macs_per_image=4_400_000_000, int8_parts=89, probes=2, seconds=180)
    assert small == 4000 and big == 32  # the 32² default measures on all; a 224² tiny FocalNet on the minimum
    assert selection_count(4000, 4_500_000, 30, 3, 180) == small  # the same inputs, the same count


def test_the_auto_target_leaves_room_for_measuring_on_finite_images():
    """At the gate's flip rate, a choice that just reaches the target on the images it was decided on has a
    true agreement at the gate ~95 % of the time: checked by drawing the measurement."""
    target = auto_target_agreement(0.995, 4000)
    assert 0.996 < target < 0.998 and auto_target_agreement(0.995, 40000) < target
    rng = np.random.default_rng(0)
    true = rng.uniform(0.99, 1.0, 400000)  # choices of every quality, measured on 4000 images
    measured = rng.binomial(4000, true) / 4000
    reached = true[measured >= target]
    assert 0.93 < np.mean(reached >= 0.995) and len(reached) > 1000


def test_the_target_comes_from_the_images_decided_on():
    """Never a silent 0.9999: a 0.995 gate needs ~842 images for a target ≤ 0.999; fewer gives a higher
    target, and SearchSets says so."""
    need = decision_count(0.995)
    assert 800 < need < 900
    assert auto_target_agreement(0.995, need) <= 0.999 < auto_target_agreement(0.995, need - 1)
    assert decision_count(0.999) is None and decision_count(0.99) < need
    assert auto_target_agreement(0.995, 600) < 1.0 == auto_target_agreement(0.995, 25)  # 1.018 uncapped: never above 1


def _spec(**kw):
    from edgefocal.recipe import QuantizeSpec

    return QuantizeSpec(**kw)


def test_search_sets_decide_on_enough_images_and_confirm_on_others():
    held = np.random.default_rng(0).normal(size=(3000, 1, 4, 4)).astype(np.float32)
    seen = []

    def logits_of(images):
        seen.append(len(images))
        return np.asarray(images).reshape(len(images), -1)[:, :3]

    big_model = SearchSets.split(lambda n: held[:n], len(held), _spec(selection_size=2000, validation_size=1000), 0.995,
                                 macs_per_image=4_400_000_000, int8_parts=89, probes=3, logits_of=logits_of)
    assert len(big_model.scan[0]) == 32  # ranking is parts × a few images on a 224² FocalNet-T
    assert len(big_model.decide[0]) == decision_count(0.995) and big_model.target <= 0.999
    assert len(big_model.confirm[0]) == 1000 and not big_model.warnings
    n = len(big_model.decide[0])
    np.testing.assert_array_equal(big_model.confirm[0], held[n:n + 1000])  # disjoint from the decision images
    assert max(seen) == 1000 and sum(seen) == n + 1000  # only the images used are drawn and run
    assert big_model.max_trials >= 4

    small = SearchSets.split(lambda n: held[:n], 600, _spec(selection_size=400, validation_size=200), 0.995,
                             macs_per_image=4_400_000_000, int8_parts=89, probes=3, logits_of=logits_of)
    assert small.target > 0.999 and len(small.warnings) == 3  # too few to decide, to confirm, and the target
    assert any("confirmed on 200" in w for w in small.warnings)


@pytest.mark.slow
def test_real_search_on_the_default(default_model, tmp_path):
    """The search through the pipeline on ONNX Runtime: chosen parts are float in the plan that every target
    then quantizes under, validated on other held-out images, named as torch module paths."""
    from edgefocal import models
    from edgefocal.data import load_data
    from edgefocal.export import export
    from edgefocal.pipeline import context, prepare, search_precision
    from edgefocal.progress import Progress
    from edgefocal.recipe import load_recipe

    recipe = load_recipe(None, {"targets": ["onnxruntime"], "calibration.size": 128, "eval.size": 100,
                                "quantize.selection_size": 500, "quantize.validation_size": 500,
                                "quantize.target_agreement": 0.999, "output": str(tmp_path / "o")})
    targets = prepare(recipe)
    loaded = models.load(recipe.model)
    data = load_data(recipe, loaded.data_config, 10)
    exported = export(loaded.model, (1, 32, 32), data.eval.images[:8], tmp_path)
    graph = onnx.load(str(exported.onnx))
    plan = plan_precision(graph)
    ctx = context(recipe, loaded, data, exported, None, tmp_path, 2, Progress())
    searched = search_precision(recipe, targets, ctx, plan, data, graph)
    summary = searched.summary()
    assert summary["mixed_precision"]["validation"]["images"] == 500
    assert all(r["module"].startswith(("stem", "layers", "head")) for r in summary["sensitivity"])
    assert not any(r["module"].startswith("node_") for r in summary["sensitivity"])
    for module in summary["mixed_precision"]["chosen"]:
        assert searched.module_is_int8(module) is False and module in summary["float_modules"]
