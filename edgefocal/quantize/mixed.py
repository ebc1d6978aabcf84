"""Automatic mixed precision on a latency budget: which INT8 parts of a FocalNet to keep float so that
agreement with FP32 reaches a target, at the least measured latency cost.

1. Quantize once under the preset plan; from that one calibrated model, make every part float by surgery
   (surgery.py) and measure, on held-out "selection" images (disjoint from calibration and eval), what
   quantizing it costs: the agreement and mean logit KL lost against the all-INT8 model's figures
   (`sensitivity`). Measure each part's latency cost on the runtime's own profile: its ms in the FP32
   model minus its ms in the INT8 model, apportioned by MACs (verify/profile.py).
2. Keep parts float in order of KL bought per ms, re-measuring the combination each time, until the
   selection agreement reaches the target or the latency budget (a fraction of the INT8 latency) is spent.
3. Validate the chosen set on other held-out images it was not chosen on, and report selection,
   validation (and, in the report, eval) agreement separately.
The decision is a list of module paths that goes into the one precision plan (policy.py), so every target
is then quantized by its own quantizer with those parts float."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from edgefocal.quantize.policy import PrecisionPlan, plan_precision
from edgefocal.verify.metrics import agreement, mean_kl


@dataclass
class Probe:
    """One target's all-INT8 model, able to run variants with some parts float, and to profile them."""

    target: str
    logits: Callable[[frozenset, np.ndarray], np.ndarray]  # (float node names, images) -> logits
    module_ms: Callable[[bool, np.ndarray], dict[str, float]]  # (int8?, sample) -> ms per module at batch 1


@dataclass
class MixedPrecision:
    plan: PrecisionPlan
    measured_on: list[str]
    target_agreement: float
    sensitivity: list[dict] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)  # module paths kept float by the search
    selection: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    reached: bool = False
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"measured_on": self.measured_on, "target_agreement": self.target_agreement,
                "chosen": self.chosen, "selection": self.selection, "validation_agreement":
                self.validation.get("agreement"), "validation": self.validation, "budget": self.budget,
                "reached": self.reached, "seconds": round(self.seconds, 1)}


def _parts(plan: PrecisionPlan):
    return [p for p in plan.parts if p.int8]


def _latency_costs(probes: list[Probe], plan: PrecisionPlan, sample: np.ndarray,
                   macs: dict[str, int]) -> tuple[dict[str, float], dict[str, float]]:
    """Per INT8 part: the fraction of the INT8 latency it would add if float, and its share of the INT8
    latency as profiled (max over the runtimes). The first apportions what INT8 measurably buys on the
    whole model (FP32 total − INT8 total) by the part's MACs: per-op profiles of small parts are too noisy
    on a shared CPU to rank them by, while the totals and MAC counts are stable."""
    cost: dict[str, float] = {}
    share: dict[str, float] = {}
    int8_macs = sum(macs.get(p.module, 0) for p in _parts(plan)) or 1
    for probe in probes:
        int8, fp32 = probe.module_ms(True, sample), probe.module_ms(False, sample)
        t_int8, t_fp32 = sum(int8.values()) or 1.0, sum(fp32.values())
        gain = max(t_fp32 - t_int8, 0.0) / t_int8
        for p in _parts(plan):
            cost[p.module] = max(cost.get(p.module, 0.0), gain * macs.get(p.module, 0) / int8_macs)
            share[p.module] = max(share.get(p.module, 0.0), int8.get(p.module, 0.0) / t_int8)
    return cost, share


def _worst(probes: list[Probe], float_nodes: frozenset, images: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(lowest agreement, highest mean KL) over the probed runtimes for one variant."""
    results = [(agreement(lg, ref), mean_kl(ref, lg)) for lg in (p.logits(float_nodes, images) for p in probes)]
    return min(a for a, _ in results), max(k for _, k in results)


def sensitivity(probes: list[Probe], plan: PrecisionPlan, images: np.ndarray, ref: np.ndarray,
                latency_cost: dict[str, float], latency_share: dict[str, float]) -> list[dict]:
    """Per INT8 part: what quantizing it costs (agreement and KL vs keeping it float, all else INT8)."""
    base_agree, base_kl = _worst(probes, frozenset(), images, ref)
    rows = []
    for part in _parts(plan):
        agree, kl = _worst(probes, frozenset(part.nodes), images, ref)
        rows.append({"module": part.module, "role": part.role, "label": part.label,
                     "agreement_cost": round(agree - base_agree, 5), "kl_cost": float(base_kl - kl),
                     "latency_cost": round(latency_cost.get(part.module, 0.0), 5),
                     "latency_share": round(latency_share.get(part.module, 0.0), 5)})
    return sorted(rows, key=lambda r: -r["kl_cost"])


def _fit_to_time(probes: list[Probe], plan: PrecisionPlan, selection: tuple[np.ndarray, np.ndarray],
                 seconds: float, log) -> tuple[np.ndarray, np.ndarray]:
    """The first images of the selection set, as many as let every part be measured within `seconds`
    (at least 32): a 224² model takes ~1000× a 32² model's time per image. Two timed runs (16 and 48
    images) separate each variant's fixed cost (session, compile) from its cost per image."""
    def timed(n: int) -> float:
        t = time.time()
        _worst(probes, frozenset({"(timing)"}), selection[0][:n], selection[1][:n])
        return time.time() - t

    small, large = min(16, len(selection[0])), min(48, len(selection[0]))
    t_small, t_large = timed(small), timed(large)
    per_image = max((t_large - t_small) / max(large - small, 1), 1e-6)
    fixed = max(t_small - small * per_image, 0.0)
    budget = seconds / max(len(_parts(plan)), 1) - fixed
    n = max(32, min(len(selection[0]), int(budget / per_image)))
    if n < len(selection[0]):
        log(f"mixed precision: {n} of {len(selection[0])} selection images fit the {seconds:.0f} s search budget")
    return selection[0][:n], selection[1][:n]


def choose(probes: list[Probe], plan: PrecisionPlan, onnx_model, selection: tuple[np.ndarray, np.ndarray],
           validation: tuple[np.ndarray, np.ndarray], target_agreement: float, max_latency_cost: float,
           macs: dict[str, int], log=print, seconds: float = 180.0) -> MixedPrecision:
    """The search above; `selection` and `validation` are (images, FP32 logits) held out from everything
    else; `macs` per module path (prune/macs.py) apportions the measured INT8 gain among the parts;
    `seconds` bounds the sensitivity scan by measuring on fewer selection images where needed."""
    started = time.time()
    selection = _fit_to_time(probes, plan, selection, seconds, log)
    cost, share = _latency_costs(probes, plan, selection[0], macs)
    sens = sensitivity(probes, plan, *selection, cost, share)
    result = MixedPrecision(plan, [p.target for p in probes], target_agreement, sens)
    by_module = {p.module: p for p in _parts(plan)}
    chosen: list[str] = []
    spent = 0.0
    agree, _ = _worst(probes, frozenset(), *selection)
    result.selection = {"images": len(selection[0]), "agreement_int8": agree}
    floor = 0.002  # below 0.2 % of the latency, costs do not tell parts apart: KL decides there
    ranked = sorted((r for r in sens if r["kl_cost"] > 0), key=lambda r: -r["kl_cost"] / (r["latency_cost"] + floor))
    for row in ranked:
        if agree >= target_agreement:
            break
        if spent + row["latency_cost"] > max_latency_cost:
            continue
        chosen.append(row["module"])
        spent += row["latency_cost"]
        nodes = frozenset(n for m in chosen for n in by_module[m].nodes)
        agree, _ = _worst(probes, nodes, *selection)
        log(f"mixed precision: {row['label']} float (+{row['latency_cost']:.2%} latency) → selection agreement {agree:.4f}")
    nodes = frozenset(n for m in chosen for n in by_module[m].nodes)
    result.chosen, result.reached = chosen, agree >= target_agreement
    result.selection["agreement"] = agree
    result.validation = {"images": len(validation[0]), "agreement": _worst(probes, nodes, *validation)[0],
                         "agreement_int8": _worst(probes, frozenset(), *validation)[0]}
    result.budget = {"max_latency_cost": max_latency_cost, "spent": round(spent, 5)}
    result.plan = _with_float(onnx_model, plan, chosen)
    result.plan.sensitivity = sens
    result.seconds = time.time() - started
    return result


def _with_float(onnx_model, plan: PrecisionPlan, chosen: list[str]) -> PrecisionPlan:
    """The plan again, with the chosen modules float and saying why."""
    new = plan_precision(onnx_model, plan.preset, plan.forced + [f"^{re.escape(m)}$" for m in chosen])
    new.forced = list(plan.forced)
    picked = set(chosen)
    new.parts = [replace(p, why="mixed precision (measured sensitivity)") if p.module in picked and not p.int8
                 and p.why == "quantize.float_modules" else p for p in new.parts]
    return new
