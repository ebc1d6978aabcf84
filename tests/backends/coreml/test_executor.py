"""The numpy ML-program executor against torch: FP32 parity, compressed programs, unsupported ops."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("coremltools")

from edgefocal.backends.coreml.executor import MLProgramExecutor  # noqa: E402
from edgefocal.backends.coreml.executor.ops import OPS, RunContext, _unpack_bits  # noqa: E402
from edgefocal.errors import BadInput  # noqa: E402
from edgefocal.recipe import CoreMLSpec  # noqa: E402
from edgefocal.precision import plan_precision  # noqa: E402
from edgefocal.backends.coreml.quantize import quantize  # noqa: E402
from edgefocal.backends.coreml import coreml_from_torch, package_size  # noqa: E402


def _torch_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def fp32_package(tmp_path_factory, default_model):
    """The embedded default as an uncompressed ML program: tensor input, FP32 compute, logits out."""
    spec = CoreMLSpec(input_type="tensor", class_labels=False, batch=1)
    path = tmp_path_factory.mktemp("coreml") / "fp32.mlpackage"
    coreml_from_torch(default_model.model, default_model.data_config, default_model.class_names, spec,
                      "iOS17", "fp32").save(str(path))
    return path, spec


def test_fp32_parity_with_torch_on_64_eval_images(fp32_package, default_model, fmnist_eval):
    x = fmnist_eval[0][:64]
    out = MLProgramExecutor(fp32_package[0]).run(x)  # a batch-1 program runs on a batch of 64
    diff = np.abs(out - _torch_logits(default_model.model, x)).max()
    assert out.shape == (64, 10)
    assert diff <= 1e-3, f"executor vs torch max abs diff {diff}"


def test_image_classifier_with_ranged_batch(tmp_path, default_model, fmnist_eval):
    """Image input (normalization folded in) + class labels + ranged batch, fed raw pixels."""
    spec = CoreMLSpec(input_type="image", class_labels=True, batch=(1, 16))
    path = tmp_path / "img.mlpackage"
    dc = default_model.data_config
    coreml_from_torch(default_model.model, dc, default_model.class_names, spec, "iOS16", "fp32").save(str(path))
    ex = MLProgramExecutor(path)
    assert ex.info.image_input and ex.info.classifier and ex.info.color_layout == "GRAYSCALE"
    assert ex.info.class_labels == list(default_model.class_names)
    assert ex.info.declared_batch is None
    x = fmnist_eval[0][:16]
    pixels = (x * np.float32(dc["std"][0]) + np.float32(dc["mean"][0])) * 255
    diff = np.abs(ex.run(pixels) - _torch_logits(default_model.model, x)).max()
    assert diff <= 1e-3


@pytest.fixture(scope="module")
def compress(default_model, tmp_path_factory):
    """The quantize stage's Core ML compression with every part INT8 (the `all` policy): the programs below
    exercise the executor on every compressed op kind."""
    import onnx

    from edgefocal.export import onnx_from_torch

    onnx_path = onnx_from_torch(default_model.model, (1, 32, 32), tmp_path_factory.mktemp("plan") / "m.onnx")
    plan = plan_precision(onnx.load(str(onnx_path)), "all")
    modules = [n for n, _ in default_model.model.named_modules()]
    return lambda ml, spec, calibration, data_config, scratch: quantize(ml, plan, calibration, spec, data_config,
                                                                        modules, scratch, log=lambda m: None)


@pytest.mark.parametrize("kind", ["w8", "palettize", "sparse"])
def test_compressed_programs_run(kind, fp32_package, tmp_path, default_model, fmnist_eval, fmnist_calibration,
                                 compress):
    import coremltools as ct

    path, base_spec = fp32_package
    spec = base_spec.model_copy(update={"compression": kind, "weight_threshold": 512, "sparsity": 0.3,
                                        "palettize_bits": 4})  # 4-bit k-means is the quick one to fit
    mlmodel, facts = compress(ct.models.MLModel(str(path), skip_model_load=True), spec, fmnist_calibration[:64],
                              default_model.data_config, tmp_path)
    out_path = tmp_path / f"{kind}.mlpackage"
    mlmodel.save(str(out_path))
    ex = MLProgramExecutor(out_path)
    expected_op = {"w8": "constexpr_affine_dequantize", "palettize": "constexpr_lut_to_dense",
                   "sparse": "constexpr_sparse_to_dense"}[kind]
    assert ex.census.get(expected_op, 0) > 0
    x, labels = fmnist_eval[0][:200], fmnist_eval[1][:200]
    ref = _torch_logits(default_model.model, x)
    out = ex.run(x)
    agreement = float((out.argmax(1) == ref.argmax(1)).mean())
    assert np.isfinite(out).all()
    assert agreement >= {"w8": 0.97, "palettize": 0.85, "sparse": 0.9}[kind], f"{kind}: agreement {agreement}"
    assert np.abs(out - ref).max() > 0  # compression really changed the numbers


def test_w8a8_fp16_program_runs(tmp_path, default_model, fmnist_eval, fmnist_calibration, compress):
    """W8A8: FP16 compute, activation ranges from the executor, quantize/dequantize before conv/linear/add."""
    spec = CoreMLSpec(input_type="tensor", class_labels=False, compression="w8a8", weight_threshold=512)
    fp16 = coreml_from_torch(default_model.model, default_model.data_config, default_model.class_names, spec,
                             "iOS17", "fp16")
    mlmodel, facts = compress(fp16, spec, fmnist_calibration[:64], default_model.data_config, tmp_path)
    mlmodel.save(str(tmp_path / "w8a8.mlpackage"))
    ex = MLProgramExecutor(tmp_path / "w8a8.mlpackage")
    assert ex.census["quantize"] > 20 and ex.census["constexpr_affine_dequantize"] > 20
    assert facts["calibration_images"] == 64
    x = fmnist_eval[0][:200]
    ref = _torch_logits(default_model.model, x)
    out = ex.run(x)
    assert float((out.argmax(1) == ref.argmax(1)).mean()) >= 0.97


def test_w8a8_refuses_fp32_compute(fp32_package, tmp_path, default_model, fmnist_calibration, compress):
    import coremltools as ct

    path, spec = fp32_package
    ml = ct.models.MLModel(str(path), skip_model_load=True)
    with pytest.raises(BadInput, match="FP16-compute"):
        compress(ml, spec.model_copy(update={"compression": "w8a8"}), fmnist_calibration[:8],
                 default_model.data_config, tmp_path)


def test_w8_package_is_under_30_percent_of_fp32(fp32_package, tmp_path, default_model, compress):
    import coremltools as ct

    path, spec = fp32_package
    w8, _ = compress(ct.models.MLModel(str(path), skip_model_load=True), spec.model_copy(update={"compression": "w8"}),
                     None, default_model.data_config, tmp_path)
    w8.save(str(tmp_path / "w8.mlpackage"))
    ratio = package_size(tmp_path / "w8.mlpackage") / package_size(path)
    assert ratio <= 0.30, f"W8/FP32 size ratio {ratio:.3f}"


def test_unsupported_op_is_named(tmp_path):
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.sin(x=x)

    path = tmp_path / "sin.mlpackage"
    ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
               compute_precision=ct.precision.FLOAT32, skip_model_load=True).save(str(path))
    with pytest.raises(BadInput, match=r"unsupported Core ML op 'sin' in .*sin\.mlpackage"):
        MLProgramExecutor(path)


def test_not_a_package(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(BadInput, match="not an .mlpackage"):
        MLProgramExecutor(tmp_path / "model.onnx")
    with pytest.raises(BadInput, match="does not exist"):
        MLProgramExecutor(tmp_path / "missing.mlpackage")


@pytest.mark.parametrize("kernel,stride,pad,groups,dilation", [
    (3, 1, "custom", 1, 1), (3, 2, "same", 1, 1), (4, 4, "valid", 1, 1), (3, 1, "custom", 4, 1),
    (5, 1, "custom", 8, 1), (3, 1, "custom", 8, 2), (1, 1, "valid", 1, 1),
])
def test_conv_matches_torch(kernel, stride, pad, groups, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 8 // groups, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    p = (kernel - 1) * dilation // 2
    args = {"x": x, "weight": w, "bias": b, "strides": [stride, stride], "dilations": [dilation, dilation],
            "groups": groups, "pad_type": pad, "pad": [p, p, p, p]}
    (out,) = OPS["conv"](args, RunContext(declared_batch=None, batch=2))
    tpad = 0 if pad == "valid" else p
    if pad == "same":  # torch has no 'same' for stride 2: pad as MIL does (extra on the end)
        xt = torch.nn.functional.pad(torch.from_numpy(x), (0, 1, 0, 1))
        ref = torch.nn.functional.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), stride, 0, dilation, groups)
    else:
        ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                         stride, tpad, dilation, groups)
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-4, rtol=1e-4)


def test_packed_bits_are_lsb_first():
    # elements 1, 2, 3 as 2-bit values packed LSB first: 0b00_11_10_01 = 0x39
    assert _unpack_bits(np.array([0x39], np.uint8), 2, 3).tolist() == [1, 2, 3]
