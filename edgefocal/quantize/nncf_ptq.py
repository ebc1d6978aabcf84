"""NNCF post-training INT8 for OpenVINO IR and for ONNX Runtime's Q/DQ ONNX.

Flavours follow what each runtime executes fastest on x86 (measured on this 2-core Xeon, see
benchmarks/README.md): OpenVINO takes NNCF's default (symmetric S8S8); ONNX Runtime runs symmetric
S8S8 Q/DQ *slower* than FP32 but fuses U8S8 (asymmetric uint8 activations, symmetric int8 per-channel
weights, NNCF's MIXED preset) into fast QLinearConv kernels.

With `max_agreement_drop` set, NNCF's accuracy control ranks layers by sensitivity and reverts them to
float until top-1 agreement with the FP32 model on held-out images is within the bound: that is the
mixed-precision fallback for layers that cannot take INT8."""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from edgefocal._deps import require
from edgefocal.recipe import QuantizeSpec


def _dataset(images: np.ndarray, transform: Callable = lambda x: x):
    nncf = require("nncf", "openvino")
    return nncf.Dataset([images[i : i + 1] for i in range(len(images))], transform)


def _depthwise_conv_names(onnx_model) -> list[str]:
    names = []
    for node in onnx_model.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and group > 1:
            names.append(node.name)
    return names


def _preset_kwargs(spec: QuantizeSpec, backend: str, onnx_model=None) -> dict:
    """NNCF arguments for the recipe's placement preset and ignored patterns.

    Measured on the embedded default (10k test images, agreement with FP32): OpenVINO default 98.65 %,
    transformer model type 99.04 %, plus depthwise convs and products in float 99.14 %; ONNX Runtime
    U8S8 default 98.88 %, transformer 99.03 %."""
    import nncf

    names: list[str] = []
    types: list[str] = []
    kwargs: dict = {}
    if spec.preset == "focalnet":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
        if backend == "openvino":
            types = ["Multiply", "GroupConvolution"]
        else:
            types = ["Mul"]
            names = _depthwise_conv_names(onnx_model)
    if spec.ignored_patterns or names or types:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=names, types=types, patterns=list(spec.ignored_patterns),
                                                    validate=False)
    return kwargs


def _agreement_fn(predict: Callable[[object, np.ndarray], np.ndarray]):
    """validation_fn for NNCF accuracy control: the metric is top-1 agreement with FP32 logits."""

    def validate(model, items: Iterable) -> tuple[float, list[float]]:
        per_item = []
        for images, reference in items:
            per_item.extend((predict(model, images).argmax(1) == reference.argmax(1)).astype(float).tolist())
        return float(np.mean(per_item)), per_item

    return validate


def _validation(validation: tuple[np.ndarray, np.ndarray]):
    """One image per item: NNCF's ranker picks items by index and expects one metric value per item."""
    nncf = require("nncf", "openvino")
    images, reference = validation
    return nncf.Dataset([(images[i : i + 1], reference[i : i + 1]) for i in range(len(images))])


def quantize_openvino(ov_model, calibration: np.ndarray, spec: QuantizeSpec,
                      validation: tuple[np.ndarray, np.ndarray] | None = None):
    """INT8 OpenVINO model (NNCF default: symmetric weights and activations)."""
    nncf = require("nncf", "openvino")
    kwargs = dict(subset_size=len(calibration), fast_bias_correction=spec.fast_bias_correction,
                  **_preset_kwargs(spec, "openvino"))
    if spec.max_agreement_drop is None or validation is None:
        return nncf.quantize(ov_model, _dataset(calibration), **kwargs)

    def predict(compiled, images):
        return compiled(images)[0]

    return nncf.quantize_with_accuracy_control(
        ov_model, _dataset(calibration), _validation(validation), _agreement_fn(predict),
        max_drop=spec.max_agreement_drop, **kwargs)


def activations_to_uint8(onnx_model):
    """Rewrite int8 activation Q/DQ pairs as uint8 with the zero point shifted by 128: the same grid
    (q_u8 = q_s8 + 128), so the numbers do not change, but ONNX Runtime on x86 then fuses the pairs into
    its fast U8S8 kernels. Hand-written because NNCF's transformer model type (which keeps LayerNorm and
    GELU internals unquantized, better agreement here) always emits int8 activations."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in onnx_model.graph.initializer}
    activation_zps = {n.input[2] for n in onnx_model.graph.node
                      if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[0] not in inits}
    weight_zps = {n.input[2] for n in onnx_model.graph.node
                  if n.op_type == "DequantizeLinear" and len(n.input) > 2 and n.input[0] in inits}
    converted = set()
    for name in activation_zps - weight_zps:
        init = inits.get(name)
        if init is None or init.data_type != onnx.TensorProto.INT8:
            continue
        shifted = (numpy_helper.to_array(init).astype(np.int16) + 128).astype(np.uint8)
        init.CopyFrom(numpy_helper.from_array(shifted, name))
        converted.add(name)
    # the quantized tensors' recorded types are now stale: drop them and let the runtime infer
    outputs = {n.output[0] for n in onnx_model.graph.node
               if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in converted}
    kept = [v for v in onnx_model.graph.value_info if v.name not in outputs]
    del onnx_model.graph.value_info[:]
    onnx_model.graph.value_info.extend(kept)
    return onnx_model


def quantize_onnx_u8s8(onnx_model, calibration: np.ndarray, spec: QuantizeSpec,
                       validation: tuple[np.ndarray, np.ndarray] | None = None):
    """INT8 Q/DQ ONNX for ONNX Runtime on x86: uint8 asymmetric activations, int8 per-channel weights."""
    nncf = require("nncf", "onnx")
    input_name = onnx_model.graph.input[0].name
    kwargs = dict(subset_size=len(calibration), fast_bias_correction=spec.fast_bias_correction,
                  preset=nncf.QuantizationPreset.MIXED, **_preset_kwargs(spec, "onnx", onnx_model))
    calib = _dataset(calibration, lambda x: {input_name: x})
    if spec.max_agreement_drop is None or validation is None:
        return activations_to_uint8(nncf.quantize(onnx_model, calib, **kwargs))

    def predict(model, images):
        import onnxruntime as ort

        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {input_name: images})[0]

    return activations_to_uint8(nncf.quantize_with_accuracy_control(
        onnx_model, calib, _validation(validation), _agreement_fn(predict),
        max_drop=spec.max_agreement_drop, **kwargs))
