"""Automatic mixed precision on a latency budget: which INT8 parts of a FocalNet to keep float so that
agreement with FP32 reaches a target, at the least latency cost (MAC share, or measured: latency_costs).

1. Quantize once under the preset plan. If that all-INT8 model already reaches the target on the selection
   images, nothing is kept float and no part is ranked. Otherwise, from that one calibrated model, make every
   part float by surgery (surgery.py) and measure, on held-out "selection" images (disjoint from calibration
   and eval), what quantizing it costs: the agreement and mean logit KL lost against the all-INT8 model's figures
   (`sensitivity`). A part's latency cost is its share of the INT8 MACs, or, with `latency_cost:
   measured`, that share of what INT8 measurably buys on the runtime's own profile (naming.by_module and the backends' op_times).
2. Keep parts float in order of KL bought per cost, re-measuring the combination each time, until the
   selection agreement reaches the target or the latency budget is spent. With MAC costs nothing in the
   decision depends on a clock, so the same inputs give the same artifacts.
3. Validate the chosen set on other held-out images it was not chosen on, and report selection,
   validation (and, in the report, eval) agreement separately.
The decision is a list of module paths that goes into the one precision plan (policy.py), so every target
is then quantized by its own quantizer with those parts float."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace

import numpy as np

from edgefocal.core import NOMINAL_MACS_PER_SECOND, Probe
from edgefocal.imagestore import rows_of
from edgefocal.plan import PrecisionPlan
from edgefocal.precision.policy import plan_precision
from edgefocal.metrics import agreement, mean_kl


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


def latency_costs(probes: list[Probe], plan: PrecisionPlan, sample: np.ndarray, macs: dict[str, int],
                   measured: bool) -> tuple[dict[str, float], dict[str, float]]:
    """Per INT8 part: its latency cost if float, and its share of the INT8 latency as profiled (max over
    the runtimes; reported only). The cost is its share of the INT8 parts' MACs; `measured` scales that by
    what INT8 measurably buys on the whole model ((FP32 − INT8) / INT8 ms, from the runtime's profile).
    On a shared CPU that ratio moves several-fold between runs of the same model, so only the MAC share
    keeps a build reproducible; a quiet device (a Jetson building its own engine) can measure."""
    cost: dict[str, float] = {}
    share: dict[str, float] = {}
    int8_macs = sum(macs.get(p.module, 0) for p in _parts(plan)) or 1
    for probe in probes:
        int8, fp32 = probe.module_ms(True, sample), probe.module_ms(False, sample)
        t_int8, t_fp32 = sum(int8.values()) or 1.0, sum(fp32.values())
        gain = max(t_fp32 - t_int8, 0.0) / t_int8 if measured and int8 else 1.0  # no profile: the MAC share
        for p in _parts(plan):
            cost[p.module] = max(cost.get(p.module, 0.0), gain * macs.get(p.module, 0) / int8_macs)
            share[p.module] = max(share.get(p.module, 0.0), int8.get(p.module, 0.0) / t_int8)
    return cost, share


def worst_agreement_and_kl(probes: list[Probe], float_nodes: frozenset, images: np.ndarray,
                           ref: np.ndarray) -> tuple[float, float]:
    """(lowest agreement, highest mean KL) over the probed runtimes for one variant."""
    results = [(agreement(lg, ref), mean_kl(ref, lg)) for lg in (p.logits(float_nodes, images) for p in probes)]
    return min(a for a, _ in results), max(k for _, k in results)


def sensitivity(probes: list[Probe], plan: PrecisionPlan, images: np.ndarray, ref: np.ndarray,
                latency_cost: dict[str, float], latency_share: dict[str, float], log=None) -> list[dict]:
    """Per INT8 part: what quantizing it costs (agreement and KL vs keeping it float, all else INT8); `log`
    hears how far the scan is every PROGRESS_EVERY parts."""
    base_agree, base_kl = worst_agreement_and_kl(probes, frozenset(), images, ref)
    rows, started, parts = [], time.perf_counter(), _parts(plan)
    for i, part in enumerate(parts, 1):
        if log is not None and i % PROGRESS_EVERY == 0:
            log(f"mixed precision: {i} of {len(parts)} parts measured ({time.perf_counter() - started:.0f} s)")
        agree, kl = worst_agreement_and_kl(probes, frozenset(part.nodes), images, ref)
        rows.append({"module": part.module, "role": part.role, "label": part.label,
                     "agreement_cost": round(agree - base_agree, 5), "kl_cost": float(base_kl - kl),
                     "latency_cost": round(latency_cost.get(part.module, 0.0), 5),
                     "latency_share": round(latency_share.get(part.module, 0.0), 5)})
    return sorted(rows, key=lambda r: -r["kl_cost"])


PROGRESS_EVERY = 10  # parts between the scan's progress lines


def selection_count(available: int, macs_per_image: int, int8_parts: int, probes: float, seconds: float) -> int:
    """How many selection images the sensitivity scan measures on (at least 32): as many as `seconds` allow at
    a nominal rate, from the model's MACs rather than a timed run, because a count that moved with the
    machine's load would change the chosen parts and so the artifacts of the same inputs. `probes`: their
    summed Probe.load (a slow probe, Core ML's numpy executor, counts as several)."""
    passes = max(int8_parts, 1) * max(probes, 1)
    return max(min(32, available), min(available, int(seconds * NOMINAL_MACS_PER_SECOND / (passes * macs_per_image))))


def affordable(probes: list[Probe], macs_per_image: int, images: int, seconds: float, log=print) -> list[Probe]:
    """The probes that measure `images` images (a decision set) within `seconds` at their nominal rate, and
    every probe at the compiled runtimes' rate, which the search sizes itself for. A slower probe (Core ML's
    numpy executor on a 224² FocalNet-T: over an hour per variant) is left out, and `log` says so."""
    kept = []
    for probe in probes:
        need = images * macs_per_image / probe.macs_per_second
        if probe.load > 1 and need > seconds:
            log(f"mixed precision: {probe.target} left out: one variant on {images} images would take "
                f"~{need / 60:.0f} min at its nominal {probe.macs_per_second / 1e9:g} GMAC/s (budget {seconds:.0f} s)")
        else:
            kept.append(probe)
    return kept


Z = 1.645  # one-sided 95 %
MAX_TARGET = 0.999  # above this, a target asks for fewer flips than the images decided on can tell apart


def auto_target_agreement(gate: float, decided_on: int, z: float = Z) -> float:
    """The agreement to aim for on the `decided_on` images so that the model's agreement is at the gate
    about 19 times in 20: the gate plus z standard errors of an agreement measured on that many images
    (at the gate's flip rate). It comes from the images the search decides on, never a fixed 0.9999: on
    32 images no target tells INT8 noise from a real loss (decision_count says how many it takes). At most 1:
    on a few dozen images the formula passes 1 (1.018 on 25 at a 0.995 gate), an agreement no model can have."""
    return min(1.0, gate + z * (gate * (1 - gate) / max(decided_on, 1)) ** 0.5)


def decision_count(gate: float, z: float = Z, ceiling: float = MAX_TARGET) -> int | None:
    """The fewest images on which auto_target_agreement stays at or below `ceiling` (842 for a 0.995 gate);
    None for a gate at or above the ceiling, which no held-out set of a build's size can confirm."""
    if gate >= ceiling:
        return None
    return int(np.ceil(z * z * gate * (1 - gate) / (ceiling - gate) ** 2))


MIN_CONFIRMATION = 500  # held-out images below which a confirmation cannot separate a 0.995 gate from a miss
MIN_TRIALS = 4


def trial_count(decide: int, macs_per_image: int, probes: float, seconds: float) -> int:
    """How many combinations the greedy walk may measure on the decision images: what `seconds` allow at the
    nominal MAC rate (no clock, as selection_count), and never fewer than MIN_TRIALS."""
    per_trial = max(probes, 1) * max(decide, 1) * max(macs_per_image, 1)
    return max(MIN_TRIALS, int(seconds * NOMINAL_MACS_PER_SECOND / per_trial))


@dataclass
class SearchSets:
    """The search's held-out images, each (images, FP32 logits): `scan` ranks every part by KL (a prefix of
    `decide`, so its cost is parts × a few images), `decide` is where combinations are measured against the
    target, `confirm` other images the choice is confirmed on. `target` is the agreement aimed for on
    `decide`; `warnings` say what the build's data could not support."""

    scan: tuple
    decide: tuple
    confirm: tuple
    target: float
    max_trials: int
    warnings: list[str]

    @classmethod
    def split(cls, held_of, available: int, spec, gate: float, macs_per_image: int, int8_parts: int,
              probes: float, logits_of, trial_probes: float | None = None) -> "SearchSets":
        """Of the `available` held-out images: as many to decide on as the scan budget allows and the target
        needs (at most quantize.selection_size), then quantize.validation_size to confirm on; only those are
        drawn (`held_of(n)`: n held-out images, an array or ImageStore). `logits_of(images)`: FP32 logits.
        `probes`: the ranking probes' load (`rankers`), `trial_probes` every probe's (default: the same)."""
        warnings: list[str] = []
        held_n = min(available, spec.selection_size + spec.validation_size)
        cut = spec.selection_size if held_n > spec.selection_size else held_n // 2
        scan_n = selection_count(cut, macs_per_image, int8_parts, probes, spec.search_seconds)
        need = decision_count(gate) if spec.target_agreement == "auto" else None
        decide_n = min(cut, max(scan_n, need or 0))
        if need is not None and decide_n < need:
            warnings.append(f"{decide_n} held-out images to decide on; a {gate} gate needs {need} for a target "
                            f"≤ {MAX_TARGET}: calibrate from a source with more images than calibration.size, or "
                            "raise quantize.selection_size")
        held = held_of(decide_n + held_n - cut)
        decide, confirm = rows_of(held, 0, decide_n), rows_of(held, decide_n, len(held))
        if len(confirm) < MIN_CONFIRMATION:
            warnings.append(f"the choice is confirmed on {len(confirm)} held-out images (fewer than "
                            f"{MIN_CONFIRMATION}): raise quantize.validation_size or use a larger calibration source")
        target = spec.target_agreement if spec.target_agreement != "auto" else auto_target_agreement(gate, decide_n)
        if target > MAX_TARGET:
            warnings.append(f"target agreement {target:.4f} on {decide_n} images is out of reach of what that many "
                            "images can tell apart from noise")
        decide_logits = logits_of(decide)
        scan = (np.asarray(decide[:scan_n]), decide_logits[:scan_n])
        return cls(scan, (decide, decide_logits), (confirm, logits_of(confirm)), float(target),
                   trial_count(decide_n, macs_per_image, trial_probes or probes, spec.search_seconds), warnings)


def choose(probes: list[Probe], plan: PrecisionPlan, onnx_model, selection: tuple[np.ndarray, np.ndarray],
           validation: tuple[np.ndarray, np.ndarray], target_agreement: float, max_latency_cost: float,
           macs: dict[str, int], log=print, measured_latency: bool = False, scan: tuple | None = None,
           max_trials: int | None = None) -> MixedPrecision:
    """The search above; `selection` and `validation` are (images, FP32 logits) held out from everything
    else, `scan` (default: `selection`) the images every part is ranked on; `macs` per module path
    (prune/macs.py) sets each part's latency cost (see latency_costs); `max_trials` bounds the combinations
    measured on `selection`."""
    started = time.time()
    scan = scan or selection
    base = worst_agreement_and_kl(probes, frozenset(), *selection)
    sens: list[dict] = []
    if base[0] >= target_agreement:  # the scan (parts × compiles, minutes at 224²) would decide nothing
        log(f"mixed precision: all INT8 already reaches the target ({base[0]:.4f} on {len(selection[0])} images); "
            "no part needs ranking")
    else:
        cost, share = latency_costs(probes, plan, scan[0], macs, measured_latency)
        log(f"mixed precision: ranking {len(_parts(plan))} INT8 parts by logit KL on {len(scan[0])} images")
        sens = sensitivity(rankers(probes), plan, *scan, cost, share, log)
    result = MixedPrecision(plan, [p.target for p in probes], target_agreement, sens)
    result.selection = {"images": len(selection[0]), "scan_images": len(scan[0]) if sens else 0,
                        "ranked_on": [p.target for p in rankers(probes)] if sens else [], "agreement_int8": base[0]}
    chosen, spent, (agree, _) = _greedy(probes, plan, _ranked(sens, macs), selection, base, target_agreement,
                                        max_latency_cost, log, max_trials)
    nodes = _nodes(plan, chosen)
    result.chosen, result.reached = chosen, agree >= target_agreement
    result.selection["agreement"] = agree
    int8_validation = worst_agreement_and_kl(probes, frozenset(), *validation)[0]
    result.validation = {"images": len(validation[0]), "agreement_int8": int8_validation,
                         "agreement": (worst_agreement_and_kl(probes, nodes, *validation)[0] if nodes
                                       else int8_validation)}
    result.budget = {"max_latency_cost": max_latency_cost, "spent": round(spent, 5),
                     "of": "measured INT8 latency" if measured_latency else "INT8 MACs"}
    result.plan = _with_float(onnx_model, plan, chosen)
    result.plan.sensitivity = sens
    result.seconds = time.time() - started
    return result


def rankers(probes: list[Probe]) -> list[Probe]:
    """The probes that rank the parts: the compiled runtimes when there are any. Ranking costs parts × images
    and orders parts by KL, which the runtimes largely agree on; a slow probe (Core ML's executor) would shrink
    the scan for all of them, so it measures only the combinations and the confirmation, where it counts."""
    return [p for p in probes if p.load <= 1] or probes


def _nodes(plan: PrecisionPlan, modules: list[str]) -> frozenset:
    by_module = {p.module: p for p in _parts(plan)}
    return frozenset(n for m in modules for n in by_module[m].nodes)


def _greedy(probes: list[Probe], plan: PrecisionPlan, ranked: list[dict], selection, base: tuple[float, float],
            target: float, budget: float, log, max_trials: int | None = None) -> tuple[list[str], float, tuple[float, float]]:
    """Walk the ranked parts, keeping each float only if the combination measures better on the selection
    images (higher agreement, or equal agreement and lower KL; parts interact, so a part that helped alone
    can hurt with others), until the target is reached, nothing more fits the budget or `max_trials`
    combinations were measured."""
    chosen: list[str] = []
    spent, best, trials = 0.0, base, 0
    for row in ranked:
        if best[0] >= target or (max_trials is not None and trials >= max_trials):
            break
        if spent + row["latency_cost"] > budget:
            continue
        trial = worst_agreement_and_kl(probes, _nodes(plan, chosen + [row["module"]]), *selection)
        trials += 1
        kept = trial[0] > best[0] or (trial[0] == best[0] and trial[1] < best[1])
        log(f"mixed precision: {row['label']} float (cost {row['latency_cost']:.2%}) → selection agreement "
            f"{trial[0]:.4f}" + ("" if kept else ", no better: stays INT8"))
        if kept:
            chosen.append(row["module"])
            spent, best = spent + row["latency_cost"], trial
    return chosen, spent, best


def _ranked(sens: list[dict], macs: dict[str, int]) -> list[dict]:
    """Parts in order of KL bought per latency cost. Every cost is the part's MAC share times one factor
    per build (1, or the measured INT8 gain: latency_costs), so ranking by the MAC share gives that order
    without the measured ms, which move with the machine's load: the order, and the artifacts, reproduce."""
    total = sum(macs.get(r["module"], 0) for r in sens) or 1
    floor = 0.01  # below 1 % of the INT8 MACs, costs do not tell parts apart: KL decides there
    return sorted((r for r in sens if r["kl_cost"] > 0),
                  key=lambda r: (-r["kl_cost"] / (macs.get(r["module"], 0) / total + floor), r["module"]))


def _with_float(onnx_model, plan: PrecisionPlan, chosen: list[str]) -> PrecisionPlan:
    """The plan again, with the chosen modules float and saying why."""
    new = plan_precision(onnx_model, plan.preset, plan.forced + [f"^{re.escape(m)}$" for m in chosen])
    new.forced = list(plan.forced)
    picked = set(chosen)
    new.parts = [replace(p, why="mixed precision (measured sensitivity)") if p.module in picked and not p.int8
                 and p.why == "quantize.float_modules" else p for p in new.parts]
    return new
