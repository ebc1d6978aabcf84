"""INT8 OpenVINO IR with NNCF: symmetric S8S8 (OpenVINO's fast CPU flavour), the precision plan's float parts
in NNCF's ignored scope, ModelType.TRANSFORMER so LayerNorm and GELU internals stay unquantized, and the
recipe's activation range estimator (min-max by default: see QuantizeSpec.range_estimator). Its LayerNorms
then run as NormalizeL2 (normalize_l2.py), after NNCF has placed its quantizers on the MVNs."""
from __future__ import annotations

import numpy as np

from edgefocal._deps import require
from edgefocal.backends.nncf import advanced_parameters, dataset, ignored_scope, quiet_nncf
from edgefocal.backends.openvino.normalize_l2 import channel_norms_as_normalize_l2
from edgefocal.plan import PrecisionPlan
from edgefocal.recipe import QuantizeSpec


def quantize(ov_model, plan: PrecisionPlan, calibration: np.ndarray, spec: QuantizeSpec):
    """The INT8 ov.Model of `ov_model` under `plan`."""
    nncf = require("nncf", "quantize")
    with quiet_nncf():
        int8 = nncf.quantize(ov_model, dataset(calibration), advanced_parameters=advanced_parameters(spec),
                             subset_size=len(calibration), fast_bias_correction=spec.fast_bias_correction,
                             model_type=nncf.ModelType.TRANSFORMER, ignored_scope=ignored_scope(plan))
    channel_norms_as_normalize_l2(int8)
    return int8
