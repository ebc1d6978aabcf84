"""Pruning with calibration data, before quantization: one pass over the calibration set chooses what to
remove and repairs what is left, no retraining.

- "channels": a smaller dense FocalNet (MLP hidden units, modulator and context channels per block),
  next layers refitted by least squares. `ratio` is the fraction of the *whole model's* conv/linear MACs
  removed (at its input size); the fraction of prunable channels removed is reported beside it. By default
  (`allocation: macs`) every stage gives up the same channel fraction, planned from MAC counts alone, so a
  recipe prunes the same channels on any machine under any load; `allocation: latency` weights the stages
  by the target's measured INT8 time per MAC (prune/latency.py), which moves with the machine's load.
- "2:4": every 1×1 conv of every block (f, h, proj, fc1, fc2) gets ≥2 zeros in each group of 4 input
  channels, chosen and repaired with SparseGPT (or Wanda); TensorRT can run it with sparse kernels.
"""
from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from edgefocal.errors import BadInput
from edgefocal.prune import channels as ch
from edgefocal.prune.macs import count
from edgefocal.recipe import PruneSpec


@dataclass
class PruneResult:
    model: torch.nn.Module  # a pruned deep copy, eval mode (the model itself when nothing was pruned)
    stats: dict | None = field(default_factory=dict)  # None: not pruned


def prune(model: torch.nn.Module, calibration: np.ndarray, spec: PruneSpec, log=print,
          held_out: Callable[[int], np.ndarray] | None = None) -> PruneResult:
    """The prune stage: `model` unchanged when the recipe prunes nothing."""
    if spec.method == "none":
        return PruneResult(model, None)
    log(f"pruning ({spec.method}, ratio {spec.ratio})")
    return prune_model(model, calibration, spec, log, held_out)


def parse_prune_flag(flag: str) -> dict:
    """`--prune channels:0.3`, `--prune 2:4`, `--prune 2:4:wanda`, `--prune none`; options after commas:
    `channels:0.3,reconstruct=off,recover=200`."""
    head, *opts = [p.strip() for p in flag.split(",")]
    out: dict = {}
    if head == "none":
        out["method"] = "none"
    elif head.startswith("2:4"):
        out["method"] = "2:4"
        solver = head[4:]
        if solver:
            if solver not in ("sparsegpt", "wanda"):
                raise BadInput(f"--prune {flag}: unknown 2:4 solver '{solver}'", hint="use 2:4, 2:4:sparsegpt or 2:4:wanda")
            out["solver"] = solver
    elif head.startswith("channels"):
        _, _, ratio = head.partition(":")
        try:
            out.update(method="channels", ratio=float(ratio))
        except ValueError:
            raise BadInput(f"--prune {flag}: '{ratio}' is not a fraction of MACs",
                           hint="e.g. --prune channels:0.3 removes 30 % of the model's MACs") from None
    else:
        raise BadInput(f"--prune {flag} is not a pruning method", hint="use channels:RATIO, 2:4 or none")
    for opt in opts:
        key, _, value = opt.partition("=")
        if key == "reconstruct" and value in ("on", "off", "true", "false"):
            out["reconstruct"] = value in ("on", "true")
        elif key == "recover" and value.isdigit():
            out["recover_steps"] = int(value)
        else:
            raise BadInput(f"--prune {flag}: unknown option '{opt}'", hint="options: reconstruct=on|off, recover=STEPS")
    return out


def _excluded(name: str, patterns: list[str]) -> bool:
    return any(re.search(p, name) for p in patterns)


def _blocks(model, input_size, dense_count) -> list[ch.BlockInfo]:
    out = []
    for name, stage, block in ch.focal_blocks(model):
        fc1 = block.mlp.fc1
        hw = dense_count.per_module[f"{name}.mlp.fc1"] // (fc1.in_channels * fc1.out_channels)
        out.append(ch.BlockInfo(name, stage, block, hw))
    return out


def plan_channels(model: torch.nn.Module, input_size, spec: PruneSpec) -> tuple[dict, dict]:
    """Kept channels per block and group for `spec`, from the MAC counts alone (no data needed): at most the
    requested MACs removed, within one channel step of them."""
    dense = count(model, input_size)
    blocks = _blocks(model, input_size, dense)
    stages = sorted({b.stage for b in blocks})
    allowed = {b.name: {g for g in spec.groups if not _excluded(f"{b.name}.{ch.GROUP_MODULE[g]}", spec.exclude)
                        and not _excluded(b.name, spec.exclude)
                        and not (g == "modulator" and b.block.modulation.use_post_norm)}  # LayerNorm couples them
               for b in blocks}
    weights = {g: spec.group_weights.get(g, 1.0) for g in ch.GROUPS}
    fractions: dict[int, float] = {}
    budgets: dict[int, int] = {}
    if spec.stage_ratios is not None:
        if len(spec.stage_ratios) != len(stages):
            raise BadInput(f"prune.stage_ratios has {len(spec.stage_ratios)} entries but the model has {len(stages)} stages",
                           hint=f"give one fraction of MACs per stage, e.g. {[spec.ratio or 0.3] * len(stages)}")
        for s, r in zip(stages, spec.stage_ratios):
            stage_macs = sum(v for k, v in dense.per_module.items() if k.startswith(f"layers.{s}."))
            budgets[s] = int(r * stage_macs)
            fractions[s] = ch.solve_fraction(blocks, budgets[s], [s], allowed, weights, spec.round_to) if r else 0.0
        kept = ch.plan(blocks, fractions, allowed, weights, spec.round_to)
        for s in stages:
            in_stage = [b for b in blocks if b.stage == s]
            kept.update(ch.fill(in_stage, kept, allowed, budgets[s] - ch.removed_macs(in_stage, kept), spec.round_to))
    else:
        sw = dict(zip(stages, spec.stage_weights)) if spec.stage_weights else {}
        if spec.stage_weights and len(spec.stage_weights) != len(stages):
            raise BadInput(f"prune.stage_weights has {len(spec.stage_weights)} entries but the model has {len(stages)} stages",
                           hint="give one relative weight per stage, e.g. [2, 1.5, 1, 0.8]")
        target = int(spec.ratio * dense.macs)
        p = ch.solve_fraction(blocks, target, stages, allowed, weights, spec.round_to, sw)
        fractions = {s: p * sw.get(s, 1.0) for s in stages}
        kept = ch.plan(blocks, fractions, allowed, weights, spec.round_to)
        kept = ch.fill(blocks, kept, allowed, target - ch.removed_macs(blocks, kept), spec.round_to, sw)
    return kept, {"fractions": fractions, "dense": dense}


def allocation(spec: PruneSpec) -> str:
    """How a channel-pruning spec spreads its MACs over the stages: "stage_ratios" and "stage_weights" as the
    recipe gives them, "latency" for weights measured on the target (pipeline.prune_spec puts them in
    stage_weights; the same when a recipe pins them), else "macs": the same fraction everywhere, from MAC counts."""
    if spec.stage_ratios is not None:
        return "stage_ratios"
    if spec.stage_weights:
        return "latency" if spec.allocation == "latency" else "stage_weights"
    return "macs"


def _channel_ratio(before: torch.nn.Module, after: torch.nn.Module) -> float:
    total = removed = 0
    for (_, _, b0), (_, _, b1) in zip(ch.focal_blocks(before), ch.focal_blocks(after)):
        s0, s1 = ch.group_sizes(b0), ch.group_sizes(b1)
        total += sum(s0.values())
        removed += sum(s0[g] - s1[g] for g in s0)
    return removed / total if total else 0.0


def _recover(pruned, dense, calibration: np.ndarray, spec: PruneSpec, gmacs: float, log, held_out) -> dict:
    """The recipe's distillation, on held-out images when there are some, within its MAC budget."""
    from edgefocal.prune.recover import BATCH, MIN_STEPS, distill, step_budget

    steps = step_budget(spec.recover_steps, BATCH, gmacs, spec.recover_max_gmacs)
    if steps < MIN_STEPS:
        why = (f"{gmacs:.2f} GMACs an image allow {steps} distillation steps of {BATCH} images within "
               f"prune.recover_max_gmacs ({spec.recover_max_gmacs}), fewer than {MIN_STEPS}")
        log(f"recovery skipped: {why}")
        return {"steps": 0, "skipped": why}
    if held_out is None or not spec.recover_images:
        return distill(pruned, dense, calibration, steps, check=calibration, log=log) | {"held_out": False}
    images = held_out(spec.recover_images)
    checked = max(1, len(images) // 8)  # not the calibration images: least squares fitted the pruned model to them
    return distill(pruned, dense, images[:-checked], steps, check=images[-checked:], log=log) | {"held_out": True}


def prune_model(model: torch.nn.Module, calibration: np.ndarray, spec: PruneSpec, log=print,
                held_out: Callable[[int], np.ndarray] | None = None) -> PruneResult:
    """Prune a deep copy of `model` with `calibration` (float32 NCHW, preprocessed like the eval data).
    `held_out(n)` gives up to n unlabeled images calibration did not use, for the recovery's distillation;
    without it recovery trains on the calibration images themselves."""
    if calibration is None or len(calibration) == 0:
        raise BadInput("pruning needs calibration images", hint="set calibration.size ≥ 1")
    images = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    input_size = tuple(images.shape[1:])
    dense = copy.deepcopy(model).eval()
    pruned = copy.deepcopy(model).eval()
    before = count(dense, input_size)
    t0 = time.perf_counter()
    stats: dict = {"method": spec.method, "ratio_requested": spec.ratio, "ratio_counts": "fraction of the whole "
                   "model's conv/linear MACs at its input size", "calibration_images": len(images)}
    if spec.method == "none":
        pass
    elif spec.method == "channels":
        kept, info = plan_channels(dense, input_size, spec)
        mode = "lstsq" if spec.reconstruct else "none"
        log(f"channel pruning {len(kept)} blocks (channel fraction per stage "
            f"{ {s: round(p, 3) for s, p in info['fractions'].items()} }, repair: {mode})")
        got = ch.prune_channels(pruned, dense, images, kept, mode=mode, damping=spec.damping, log=log)
        stats["blocks"] = {name: {g: [got[name][g], ch.group_sizes(b)[g]] for g in ch.GROUPS}
                           for name, _, b in ch.focal_blocks(dense)}
        stats["channel_ratio_removed"] = _channel_ratio(dense, pruned)
        stats["allocation"] = allocation(spec)
        # the channel fraction per stage relative to the others, what `prune.stage_weights` pins (None: stage_ratios)
        stats["stage_weights"] = None if spec.stage_ratios else spec.stage_weights or [1.0] * len(info["fractions"])
        stats["reconstruct"] = spec.reconstruct
    elif spec.method == "2:4":
        from edgefocal.prune.semistructured import prune_2of4
        from edgefocal.prune.sparsity import check_2of4

        names = prune_2of4(pruned, dense, images, spec, log=log)
        offending = check_2of4(pruned, names)
        stats.update(pruned_modules=names, sparsity_2of4=bool(names) and not offending, solver=spec.solver,
                     reconstruct=spec.solver == "sparsegpt")
    if spec.recover_steps:
        stats["recover"] = _recover(pruned, dense, calibration, spec, before.macs / 1e9, log, held_out)
        if spec.method == "2:4" and stats["recover"].get("steps"):  # distillation must not refill the zeros
            from edgefocal.prune.sparsity import check_2of4

            stats["sparsity_2of4"] = not check_2of4(pruned, stats["pruned_modules"])
    after = count(pruned, input_size)
    stats.update(params_before=before.params, params_after=after.params, macs_before=before.macs,
                 macs_after=after.macs, mac_ratio_removed=1 - after.macs / before.macs,
                 seconds=round(time.perf_counter() - t0, 2))
    stats.setdefault("channel_ratio_removed", 0.0)
    stats.setdefault("sparsity_2of4", False)
    stats.setdefault("reconstruct", spec.reconstruct)
    if spec.method != "none":
        log(f"pruned: MACs {before.macs / 1e6:.2f}M → {after.macs / 1e6:.2f}M ({stats['mac_ratio_removed']:.1%} removed), "
            f"params {before.params / 1e6:.3f}M → {after.params / 1e6:.3f}M")
    return PruneResult(model=pruned.eval(), stats=stats)
