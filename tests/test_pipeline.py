"""The build's stages called one by one, as the Python API and `build()` call them: each takes and
returns a small dataclass, and their sequence gives the same rows `build()` reports."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefocal import models
from edgefocal.data import BuildData, ImageSet, held_out, load_data
from edgefocal.export import Exported, export
from edgefocal.pipeline import build, context, package, prepare
from edgefocal.progress import Progress
from edgefocal.prune import prune
from edgefocal.precision import plan_precision
from edgefocal.recipe import load_recipe
from edgefocal.backends.torch import TorchRunner
from edgefocal.verify.compare import REFERENCE, artifact_subject, torch_subjects, verify

SMALL = {"targets": ["openvino"], "calibration.size": 32, "eval.size": 100,
         "bench.batch_sizes": [1], "bench.iterations": 3, "bench.rounds": 1, "bench.warmup": 1,
         "bench.cold_start_runs": 0, "gates.max_latency_rounds": 1,  # serving and latency have tests of their own
         "quantize.target_agreement": None}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return load_recipe(None, {**SMALL, "output": str(tmp_path_factory.mktemp("p") / "out")})


def test_stages_one_by_one(recipe, tmp_path):
    targets = prepare(recipe)
    loaded = models.load(recipe.model)
    data = load_data(recipe, loaded.data_config, loaded.model.num_classes)
    assert isinstance(data, BuildData) and isinstance(data.calibration, ImageSet)
    assert data.calibration.images.shape == (32, 1, 32, 32) and len(data.eval) == 100
    pruned = prune(loaded.model, data.calibration.images, recipe.prune)
    assert pruned.model is loaded.model and pruned.stats is None  # the recipe prunes nothing
    exported = export(pruned.model, loaded.data_config["input_size"], data.eval.images[:8], tmp_path)
    assert isinstance(exported, Exported) and exported.max_abs_diff < 1e-3
    plan = plan_precision(onnx.load(str(exported.onnx)), recipe.quantize.preset)
    ctx = context(recipe, loaded, data, exported, None, tmp_path, 2, Progress())
    artifacts = [a for t in targets for a in package(t, ctx, plan)]
    assert [a.label for a in artifacts] == ["openvino fp32", "openvino int8"]
    subjects = torch_subjects(TorchRunner(loaded.model, threads=2), None) + \
        [artifact_subject(a, tmp_path) for a in artifacts]
    rows = verify(subjects, data.eval.images, data.eval.labels, recipe.bench)
    by_label = {r.label: r for r in rows}
    assert by_label[REFERENCE].agreement == 1.0 and by_label["openvino fp32"].agreement == 1.0
    assert by_label["openvino int8"].agreement >= 0.95 and set(by_label["openvino int8"].latency_ms) == {1}


def test_build_is_the_stages_in_order(recipe):
    """build() gives the same accuracy rows as the stages above, and writes report, manifest and artifacts."""
    result = build(recipe)
    rows = {r.label: r for r in result.report["rows"]}
    assert list(rows) == [REFERENCE, "openvino fp32", "openvino int8"]
    assert result.report["precision_plan"]["policy"] == "focalnet"
    assert {"report.json", "report.md", "manifest.json", "model_fp32.onnx"} <= {p.name for p in result.output.iterdir()}


def test_held_out_images_are_disjoint_from_calibration(recipe, default_model):
    data = load_data(recipe, default_model.data_config, 10)
    held = held_out(data, 50, seed=1, data_config=default_model.data_config)
    assert len(held) == 50 and held.fingerprint != data.calibration.fingerprint
    calib = {img.tobytes() for img in data.calibration.images}
    assert not any(img.tobytes() in calib for img in held.images)
    assert np.bincount(held.labels, minlength=10).min() == 5  # class-balanced


def test_without_spare_images_the_calibration_images_stand_in_and_say_so(recipe, default_model):
    data = load_data(recipe, default_model.data_config, 10)
    everything = BuildData(data.calibration, data.eval, data.source, np.arange(len(data.source)))
    held = held_out(everything, 50, seed=1, data_config=default_model.data_config)
    assert held.name.endswith("(calibration images: none held out)")
    assert np.array_equal(held.images, data.calibration.images[:50])


@pytest.mark.slow
def test_the_same_inputs_give_byte_identical_artifacts(tmp_path):
    """Two builds of the same recipe, mixed-precision search included (pushed to walk every part it can), on
    OpenVINO and ONNX Runtime: every artifact has the same sha256. The search's decision has no clock in it."""
    import json

    searched = {**SMALL, "targets": ["openvino", "onnxruntime"], "quantize.target_agreement": 0.9999,
                "quantize.selection_size": 300, "quantize.validation_size": 100}
    digests = []
    for run in ("a", "b"):
        result = build(load_recipe(None, {**searched, "output": str(tmp_path / run)}), console=None)
        assert result.report["precision_plan"]["mixed_precision"]["chosen"]  # the search decided something
        manifest = json.loads((tmp_path / run / "manifest.json").read_text())
        digests.append({a["path"]: a["sha256"] for a in manifest["artifacts"]})
    assert digests[0] == digests[1] and len(digests[0]) >= 4
