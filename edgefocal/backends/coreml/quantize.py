"""INT8 for Core ML: the recipe's `coreml.compression` of a float ML program, with the precision plan's float
parts left uncompressed (coremltools' per-op configs: `op_name_configs[op] = None`).

- w8: per-channel INT8 weights; palettize: a k-means weight palette; sparse: sparse weights.
- w8a8: INT8 weights and activations. coremltools' `linear_quantize_activations` collects activation ranges
  with Core ML prediction, which runs only on macOS, so the same per-tensor ranges are measured here by
  running the float program in edgefocal's numpy executor on the calibration set, and handed to the very
  graph passes `linear_quantize_activations` uses (quantize/dequantize pairs before conv/linear/add inputs).

The plan is keyed by torch module path; a Core ML conv or linear op is matched to its module through its
weight constant, which coremltools names after the parameter (`layers_0_blocks_0_mlp_fc1_weight_to_fp16`)."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgefocal._deps import require
from edgefocal.errors import BadInput
from edgefocal.plan import PrecisionPlan

_WEIGHT_CONST = re.compile(r"^(?:model_)?(.+)_weight(?:_to_fp16)?$")  # model_: the pixel-input wrapper


def _main_ops(mlmodel):
    prog = mlmodel._mil_program
    if prog is None:  # loaded from disk: read the program from its proto
        from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

        spec = mlmodel.get_spec()
        prog = milproto_load(spec, spec.specificationVersion, mlmodel.weights_dir)
    return prog.functions["main"].operations


def _weight_module(op, modules: dict[str, str]) -> str | None:
    w = op.inputs.get("weight")
    m = _WEIGHT_CONST.match(w.op.name) if w is not None and w.op is not None else None
    return modules.get(m.group(1)) if m else None


def float_op_names(mlmodel, plan: PrecisionPlan, module_names: list[str]) -> list[str]:
    """Names of the program's ops (and their weight constants) that the plan keeps float: weighted ops of
    float modules, and adds that do not follow an INT8 conv's residual (the gate accumulations) unless the
    plan makes the gate products INT8."""
    modules = {m.replace(".", "_"): m for m in module_names if m}
    gates_int8 = bool(plan.nodes(int8=True, roles_=("gates",)))
    names: list[str] = []
    for op in _main_ops(mlmodel):
        if op.op_type in ("conv", "linear"):
            module = _weight_module(op, modules)
            if module is not None and plan.module_is_int8(module) is False:
                names += [op.name, op.inputs["weight"].op.name]
        elif op.op_type == "add" and not gates_int8 and not _follows_residual_conv(op, modules, plan):
            names.append(op.name)
    return names


def _follows_residual_conv(op, modules: dict[str, str], plan: PrecisionPlan) -> bool:
    """An add of a block's residual stream and its proj/fc2 output, where the plan makes the residual INT8."""
    for var in (op.inputs.get("x"), op.inputs.get("y")):
        producer = var.op if var is not None else None
        while producer is not None and producer.op_type in ("cast", "transpose", "reshape"):
            producer = producer.inputs["x"].op
        module = _weight_module(producer, modules) if producer is not None and producer.op_type == "conv" else None
        if module and re.search(r"\.(modulation\.proj|mlp\.fc2)$", module):
            block = module.rsplit(".", 2)[0]
            return bool(plan.module_is_int8(block, "residual"))
    return False


def quantize(mlmodel, plan: PrecisionPlan, calibration: np.ndarray | None, spec, data_config: dict,
             module_names: list[str], scratch: Path, log=print):
    """The recipe's int8 compression of a float ML program; returns (MLModel, facts for the report)."""
    stats = calibrated_ranges(mlmodel, calibration, spec, data_config, scratch, log)
    return compress(mlmodel, plan, stats, spec, module_names, 0 if calibration is None else len(calibration))


def calibrated_ranges(mlmodel, calibration: np.ndarray | None, spec, data_config: dict, scratch: Path,
                      log) -> dict | None:
    """A W8A8 build's activation ranges (None for the weight-only compressions), measured once: the search
    compresses many plans with them."""
    if spec.compression != "w8a8":
        return None
    if not _computes_in_fp16(mlmodel):
        raise BadInput("W8A8 needs an FP16-compute program (coremltools' activation quantization writes FP16 "
                       "scales)", hint="set coreml.compute_precision: fp16, or use compression: w8")
    if calibration is None or len(calibration) == 0:
        raise BadInput("W8A8 needs calibration images", hint="set calibration in the recipe")
    float_pkg = scratch / "float_for_calibration.mlpackage"
    mlmodel.save(str(float_pkg))
    log(f"calibrating Core ML activations on {len(calibration)} images (numpy executor)")
    return activation_ranges(float_pkg, calibration, data_config["mean"], data_config["std"])


def compress(mlmodel, plan: PrecisionPlan, stats: dict | None, spec, module_names: list[str],
             calibration_images: int = 0):
    """The recipe's compression of a float ML program with the plan's float parts uncompressed, W8A8 from the
    calibrated `stats` (of `calibration_images` images); returns (MLModel, facts for the report)."""
    cto = require("coremltools.optimize.coreml", "coreml")
    kind = spec.compression
    skip = {name: None for name in float_op_names(mlmodel, plan, module_names)}
    facts: dict = {"compression": kind, "policy": plan.preset, "float_ops": len(skip)}
    if kind == "w8a8":
        mlmodel = insert_activation_qdq(mlmodel, stats or {}, spec.activation_mode, skip)
        facts.update(calibration_images=calibration_images, activation_mode=spec.activation_mode,
                     activation_ranges_from="edgefocal numpy executor (FP program) on the calibration set")
        kind = "w8"
    if kind == "w8":
        mlmodel = cto.linear_quantize_weights(mlmodel, _weights_config(spec, "w8", skip))
    elif kind == "palettize":
        mlmodel = cto.palettize_weights(mlmodel, _weights_config(spec, "palettize", skip))
        facts["palettize_bits"] = spec.palettize_bits
    elif kind == "sparse":
        mlmodel = cto.prune_weights(mlmodel, _weights_config(spec, "sparse", skip))
        facts["sparsity_target"] = spec.sparsity if spec.sparsity is not None else "zeros already in the weights"
    return mlmodel, facts


def activation_ranges(package: Path, calibration: np.ndarray, mean=None, std=None, batch: int = 32) -> dict:
    """Per-tensor {var name: {"rmin", "rmax"}} of every activation of a float .mlpackage over the
    calibration set: the statistics linear_quantize_activations would collect on macOS."""
    from edgefocal.backends.coreml.executor import MLProgramExecutor, to_program_input

    ex = MLProgramExecutor(package)
    stats: dict[str, dict[str, float]] = defaultdict(dict)

    def observe(name: str, value) -> None:
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            return
        lo, hi = float(value.min()), float(value.max())
        s = stats[name]
        s["rmin"] = min(lo, s.get("rmin", lo))
        s["rmax"] = max(hi, s.get("rmax", hi))

    for i in range(0, len(calibration), batch):
        ex.run(to_program_input(calibration[i:i + batch], ex.info.image_input, mean, std), observe=observe)
    return dict(stats)


def insert_activation_qdq(mlmodel, stats: dict, mode: str = "linear", skip: dict | None = None):
    """INT8 quantize/dequantize pairs from calibrated ranges before the inputs of INT8 ops: coremltools' own
    prefix pass from linear_quantize_activations, fed our statistics instead of macOS prediction. Its suffix
    pass, which re-quantizes every INT8 conv's output, is left out: FocalNet reads those outputs in float
    (GELU, the gate split, the modulation product), so it adds error for no INT8 op (the default, 10k test
    images: 99.36 → 99.43 % agreement, and 99.61 % with asymmetric ranges)."""
    cto = require("coremltools.optimize.coreml", "coreml")
    from coremltools import _SPECIFICATION_VERSION_IOS_17
    from coremltools.converters.mil.frontend.milproto import load as milproto_load
    from coremltools.converters.mil.mil.passes.graph_pass import PassOption
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
    from coremltools.models.utils import _apply_graph_pass

    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode=mode, dtype="int8"),
                                    op_name_configs=dict(skip or {}))
    prefix = PASS_REGISTRY["compression::insert_prefix_quantize_dequantize_pair"]
    prefix.set_options([PassOption("config", config), PassOption("activation_stats", stats)])
    passes = [prefix, PASS_REGISTRY["common::dequantize_quantize_pair_elimination"]]
    return _apply_graph_pass(mlmodel, passes, spec_version=_SPECIFICATION_VERSION_IOS_17,
                             pymil_load_func=milproto_load.load, skip_model_load=True)


def _weights_config(spec, kind: str, skip: dict):
    cto = require("coremltools.optimize.coreml", "coreml")
    if kind == "w8":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                         weight_threshold=spec.weight_threshold)
    elif kind == "palettize":
        op = cto.OpPalettizerConfig(mode="kmeans", nbits=spec.palettize_bits, weight_threshold=spec.weight_threshold)
    elif spec.sparsity is None:  # encode the zeros the pruning step left (tensors ≥ 30 % zeros)
        op = cto.OpThresholdPrunerConfig(threshold=1e-12, minimum_sparsity_percentile=0.3,
                                         weight_threshold=spec.weight_threshold)
    else:
        op = cto.OpMagnitudePrunerConfig(target_sparsity=spec.sparsity, weight_threshold=spec.weight_threshold)
    return cto.OptimizationConfig(global_config=op, op_name_configs=dict(skip))


def _computes_in_fp16(mlmodel) -> bool:
    from coremltools.converters.mil.mil import types

    return any(op.op_type == "cast" and op.outputs[0].dtype == types.fp16 for op in _main_ops(mlmodel))
