"""What the NNCF-based quantizers (OpenVINO, TensorRT Q/DQ) share: datasets, the plan as an ignored scope,
the recipe's range estimator, quiet logs."""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import Callable

import numpy as np

from edgefocal._deps import require
from edgefocal.plan import PrecisionPlan


def dataset(images: np.ndarray, transform: Callable = lambda x: x):
    """One image per item, the way NNCF's calibration and accuracy-control rankers index them."""
    nncf = require("nncf", "quantize")
    return nncf.Dataset([images[i: i + 1] for i in range(len(images))], transform)


def ignored_scope(plan: PrecisionPlan):
    """The plan's float nodes as NNCF patterns: an OpenVINO op keeps its ONNX node's name, with suffixes
    such as `/WithoutBiases` where OpenVINO splits a node."""
    nncf = require("nncf", "quantize")
    names = plan.nodes(int8=False)
    if not names:
        return None
    return nncf.IgnoredScope(patterns=[f"{re.escape(n)}(/|$)" for n in names], validate=False)


@contextmanager
def quiet_nncf():
    """NNCF logs one INFO line per ignored node and per statistic; keep warnings only."""
    from nncf.common.logging import nncf_logger

    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        nncf_logger.setLevel(level)


def advanced_parameters(spec, **fields):
    """NNCF's AdvancedQuantizationParameters for the recipe: the activation range estimator, plus `fields`."""
    require("nncf", "quantize")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if spec.range_estimator == "min_max":
        fields["activations_range_estimator_params"] = RangeEstimatorParametersSet.MINMAX
    return AdvancedQuantizationParameters(**fields)
