"""The mixed-precision search's measure of Core ML: every variant of the plan is compressed by coremltools'
own passes (quantize.compress) from one float program and one set of calibrated ranges, so it is the
program the package would hold, not an approximation of it; edgefocal's numpy executor runs it, on any OS.

Measuring costs what the executor costs (about 1 GMAC/s here, a tenth of a compiled runtime), so the probe
declares a low nominal rate and the search sizes its image sets by it; at a size where even the decision
set would take longer than the search's budget (a 224² FocalNet-T), the backend offers no probe."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgefocal.backends.coreml.quantize import compress, float_op_names
from edgefocal.core import Probe
from edgefocal.imagestore import batch_size
from edgefocal.plan import PrecisionPlan

EXECUTOR_MACS_PER_SECOND = 1e9  # the numpy executor on 2 cores, rounded down from ~1.3 GMAC/s measured under load


def with_float(plan: PrecisionPlan, float_nodes: frozenset) -> PrecisionPlan:
    """The plan with every part whose nodes are all in `float_nodes` made float (a search variant)."""
    return replace(plan, parts=[replace(p, int8=False) if p.int8 and p.nodes and set(p.nodes) <= float_nodes
                                else p for p in plan.parts])


def coreml_probe(target: str, float_program, plan: PrecisionPlan, stats: dict | None, spec, module_names: list[str],
                 data_config: dict, scratch: Path) -> Probe:
    """A Probe whose variants are coremltools-compressed programs run by the numpy executor; each variant's
    package lives in a directory below `scratch` only while the executor loads it."""
    runs: dict = {}  # (float ops, image set) -> logits: variants that change no Core ML op share the base's

    def logits(float_nodes: frozenset, images: np.ndarray) -> np.ndarray:
        variant = with_float(plan, float_nodes)
        key = (frozenset(float_op_names(float_program, variant, module_names)), id(images), len(images))
        if key not in runs:
            if len(runs) > 8:  # the base's logits and the latest few; variants are seldom measured twice
                runs.pop(next(iter(runs)))
            runs[key] = _run(compress(float_program, variant, stats, spec, module_names)[0], images)
        return runs[key]

    def _run(mlmodel, images: np.ndarray) -> np.ndarray:
        from edgefocal.backends.coreml.executor import MLProgramExecutor, to_program_input

        package = Path(tempfile.mkdtemp(dir=scratch)) / "variant.mlpackage"
        try:
            mlmodel.save(str(package))
            executor = MLProgramExecutor(package)  # materialises every constant: the files can go
        finally:
            shutil.rmtree(package.parent, ignore_errors=True)
        batch = min(batch_size(images.shape), len(images))
        out = []
        for i in range(0, len(images), batch):
            x = to_program_input(np.asarray(images[i:i + batch]), executor.info.image_input, data_config["mean"],
                                 data_config["std"])
            out.append(executor.run(x).reshape(len(x), -1))
        result = np.concatenate(out)
        # a classifier program ends in class probabilities: their logs are logits up to a constant per image
        return np.log(np.maximum(result, 1e-30)) if executor.info.classifier else result

    def module_ms(int8: bool, sample: np.ndarray) -> dict[str, float]:
        return {}  # Core ML's latency exists only on Apple hardware: the MAC share stands for it

    return Probe(target, logits, module_ms, macs_per_second=EXECUTOR_MACS_PER_SECOND)
