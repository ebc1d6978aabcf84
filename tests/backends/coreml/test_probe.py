"""Core ML in the mixed-precision search: a variant the probe measures is the program the package holds,
and that W8A8 is coremltools' own linear_quantize_activations, less the suffix pairs left out on purpose."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("coremltools")

from edgefocal.backends.coreml import CoreMLBackend  # noqa: E402
from edgefocal.backends.coreml.executor import MLProgramExecutor, to_program_input  # noqa: E402
from edgefocal.backends.coreml.probe import with_float  # noqa: E402
from edgefocal.backends.coreml.quantize import activation_ranges, insert_activation_qdq  # noqa: E402
from edgefocal.recipe import CoreMLSpec, Recipe  # noqa: E402
from roundtrip import make_context  # noqa: E402


@pytest.fixture(scope="module")
def probe_and_ctx(tmp_path_factory, default_model, fmnist_calibration):
    """The default's Core ML probe under the focalnet plan, and its build context."""
    import onnx

    from edgefocal.precision import plan_precision

    work = tmp_path_factory.mktemp("probe")
    ctx = make_context(default_model.model, default_model.data_config, fmnist_calibration[:64], work,
                       Recipe.model_validate({"targets": ["coreml"]}), default_model.class_names)
    plan = plan_precision(onnx.load(str(ctx.onnx_fp32)), "focalnet")
    return CoreMLBackend().probe(ctx, plan), ctx, plan


def _package_logits(mlmodel, path: Path, images: np.ndarray, data_config: dict) -> np.ndarray:
    mlmodel.save(str(path))
    ex = MLProgramExecutor(path)
    probs = ex.run(to_program_input(images, ex.info.image_input, data_config["mean"], data_config["std"]))
    return np.log(np.maximum(probs, 1e-30))


def test_a_variant_measured_is_the_package_built_with_that_plan(probe_and_ctx, fmnist_eval, default_model, tmp_path):
    probe, ctx, plan = probe_and_ctx
    images = fmnist_eval[0][:96]
    part = next(p for p in plan.parts if p.int8 and p.module.endswith("mlp.fc2"))
    variant = CoreMLBackend().quantize(ctx, with_float(plan, frozenset(part.nodes)), ctx.calibration).model
    packaged = _package_logits(variant, tmp_path / "variant.mlpackage", images, default_model.data_config)
    measured = probe.logits(frozenset(part.nodes), images)
    assert np.array_equal(measured, packaged)
    assert not np.array_equal(measured, probe.logits(frozenset(), images))  # the part really went float
    assert ctx.quantized and not any(ctx.workdir.glob("tmp*"))  # all-INT8 kept for packaging; no scratch left


def test_the_probe_is_slow_enough_to_size_the_search_by(probe_and_ctx):
    from edgefocal.precision.search import affordable

    probe = probe_and_ctx[0]
    assert probe.load > 1 and probe.module_ms(True, np.zeros((1, 1, 32, 32), np.float32)) == {}
    logs: list[str] = []
    assert affordable([probe], 4_500_000, 842, 180, logs.append) == [probe] and not logs  # the 32² default
    assert affordable([probe], 4_400_000_000, 842, 180, logs.append) == []  # a 224² FocalNet-T: an hour a variant
    assert "left out" in logs[0] and probe.target in logs[0]


def test_w8a8_is_coremltools_activation_quantization_without_its_suffix_pass(default_model, fmnist_calibration,
                                                                            fmnist_eval, monkeypatch, tmp_path):
    """coremltools' linear_quantize_activations needs macOS to collect ranges; given ours, and with its suffix
    pass (re-quantizing INT8 ops' outputs) off, it writes the program insert_activation_qdq writes."""
    import coremltools.optimize.coreml as cto
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
    from coremltools.optimize.coreml import _post_training_quantization as ptq

    from edgefocal.backends.coreml import coreml_from_torch

    spec, dc = CoreMLSpec(), default_model.data_config
    fp16 = coreml_from_torch(default_model.model, dc, default_model.class_names, spec, "iOS17", "fp16")
    fp16.save(str(tmp_path / "fp16.mlpackage"))
    stats = activation_ranges(tmp_path / "fp16.mlpackage", fmnist_calibration[:32], dc["mean"], dc["std"])
    monkeypatch.setattr(ptq, "_get_activation_calibration_stats", lambda *a, **k: stats)
    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode=spec.activation_mode, dtype="int8"))
    images = fmnist_eval[0][:64]
    with_suffix = _package_logits(cto.linear_quantize_activations(fp16, config, [{}]), tmp_path / "a.mlpackage",
                                  images, dc)
    suffix = PASS_REGISTRY["compression::insert_suffix_quantize_dequantize_pair"]
    monkeypatch.setattr(type(suffix), "apply", lambda self, prog: None)
    theirs = _package_logits(cto.linear_quantize_activations(fp16, config, [{}]), tmp_path / "b.mlpackage", images, dc)
    ours = _package_logits(insert_activation_qdq(fp16, stats, spec.activation_mode), tmp_path / "c.mlpackage", images, dc)
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours, with_suffix)  # the suffix pass is what differs, and it does change the numbers
