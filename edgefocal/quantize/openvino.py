"""INT8 OpenVINO IR with NNCF: symmetric S8S8 (OpenVINO's fast CPU flavour), the precision plan's float parts
in NNCF's ignored scope, ModelType.TRANSFORMER so LayerNorm and GELU internals stay unquantized, and the
recipe's activation range estimator (min-max by default: see QuantizeSpec.range_estimator).

With `quantize.max_agreement_drop`, NNCF's accuracy control reverts the most sensitive INT8 layers to float
until agreement with FP32 on held-out images is within the bound."""
from __future__ import annotations

import numpy as np

from edgefocal._deps import require
from edgefocal.quantize.nncf_common import (
    advanced_parameters,
    agreement_metric,
    dataset,
    ignored_scope,
    quiet_nncf,
    validation_dataset,
)
from edgefocal.quantize.policy import PrecisionPlan
from edgefocal.recipe import QuantizeSpec


def quantize(ov_model, plan: PrecisionPlan, calibration: np.ndarray, spec: QuantizeSpec,
             validation: tuple[np.ndarray, np.ndarray] | None = None):
    """The INT8 ov.Model of `ov_model` under `plan`."""
    nncf = require("nncf", "quantize")
    kwargs = dict(subset_size=len(calibration), fast_bias_correction=spec.fast_bias_correction,
                  model_type=nncf.ModelType.TRANSFORMER, ignored_scope=ignored_scope(plan))
    with quiet_nncf():
        if spec.max_agreement_drop is None or validation is None:
            return nncf.quantize(ov_model, dataset(calibration), advanced_parameters=advanced_parameters(spec),
                                 **kwargs)
        return nncf.quantize_with_accuracy_control(
            ov_model, dataset(calibration), validation_dataset(validation),
            agreement_metric(lambda compiled, images: compiled(images)[0]), max_drop=spec.max_agreement_drop,
            advanced_quantization_parameters=advanced_parameters(spec), **kwargs)
