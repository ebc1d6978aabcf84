"""Precision: which FocalNet parts run INT8, decided once for every backend. `policy.py` makes the plan from
a preset, `search.py` keeps float the parts that held-out agreement needs (measuring through the backends'
probes). Backends only translate the plan."""
from __future__ import annotations

from edgefocal.plan import PRESETS, PrecisionPlan
from edgefocal.precision.policy import plan_precision

__all__ = ["PRESETS", "PrecisionPlan", "plan_precision"]
