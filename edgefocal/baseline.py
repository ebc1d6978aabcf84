"""Regression gates: a new report compared with a baseline report (the last accepted build).

A build's own gates bound an artifact against the FP32 reference of the same run; they cannot see a
change that costs 0.4 pt of agreement or 20 % of speed while staying inside loose absolute bounds. This
module compares every requested artifact with the same artifact (matched by label) in a baseline:
top-1, agreement and cosine on the same eval set, speedup as the same-run ratio to the reference (never
milliseconds across runs: those move with the machine's load), artifact size, and serving memory and cold
start as ratios to the same run's FP32 reference (gate_serving.py).

Only like is compared with like: a baseline from another model, eval set or calibration set is refused
(BadInput, exit 2); one from another machine class is compared on accuracy (and serving memory, a ratio)
only, and says so."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgefocal.core import Row
from edgefocal.errors import BadInput
from edgefocal.gate import INCONCLUSIVE, PASSED, GateResult, inconclusive, interval_verdict
from edgefocal.recipe import Gates


def with_rows(report: dict) -> dict:
    """The report with its rows as Row (a loaded report.json's dicts are read with Row.from_dict, of any
    schema: the rows of schema 1, before report.json had a "schema" key, have the same keys)."""
    return {**report, "rows": [r if isinstance(r, Row) else Row.from_dict(r) for r in report["rows"]]}


def load_report(path: Path) -> dict:
    """A report.json, or the output directory holding one, its rows as Row."""
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    if not file.is_file():
        raise BadInput(f"baseline {path} has no report.json", hint="point at a previous build's output directory "
                       "or its report.json")
    try:
        report = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{file} is not valid JSON ({e})", hint="use the report.json a build wrote") from None
    if not isinstance(report, dict) or not isinstance(report.get("rows"), list):
        raise BadInput(f"{file} is not an edgefocal report (no rows)", hint="use the report.json a build wrote")
    return with_rows(report)


def _identity(report: dict) -> dict[tuple[str, str], object]:
    """(what, which field) -> value for everything that must match between a baseline and a build."""
    model, ev, cal = report.get("model", {}), report.get("eval", {}), report.get("calibration", {})
    return {
        ("model", "name"): model.get("name"),
        ("model", "checkpoint"): model.get("checkpoint_sha256"),
        ("model", "classes"): model.get("num_classes"),
        ("model", "input size"): tuple(model.get("input_size") or ()),
        ("eval set", "fingerprint" if ev.get("fingerprint") else "name and size"):
            ev.get("fingerprint") or (ev.get("name"), ev.get("count")),
        ("calibration set", "fingerprint" if cal.get("fingerprint") else "name and size"):
            cal.get("fingerprint") or (cal.get("name"), cal.get("count")),
    }


def _short(v) -> str:
    if isinstance(v, str) and len(v) == 64:
        return v[:12] + "…"
    return str(v)


def check_same_inputs(old: dict, new: dict, where: str = "the baseline") -> list[str]:
    """Raise BadInput (one line) when the two reports were built from another model, eval set or
    calibration set; return notes on what could only be compared loosely."""
    a, b = _identity(old), _identity(new)
    differ = [f"{what} ({field} {_short(a[(what, field)])} vs {_short(b.get((what, field), '?'))})"
              for what, field in a if a[(what, field)] != b.get((what, field))]
    if differ:
        raise BadInput(f"{where} was built from another " + ", ".join(differ),
                       hint="compare builds of the same model, eval set and calibration set, or make a new baseline")
    notes = []
    if not (old.get("eval", {}).get("fingerprint") and new.get("eval", {}).get("fingerprint")):
        notes.append("the eval set has no fingerprint in one of the reports: matched by name and size only")
    return notes


def latency_comparable(old: dict, new: dict) -> tuple[bool, str]:
    """Same-run ratios compare across runs only on the same machine class with the same thread count."""
    mc_old = (old.get("machine") or {}).get("class")
    mc_new = (new.get("machine") or {}).get("class")
    if not mc_old or not mc_new:
        return False, "a report does not name its machine class: accuracy compared, latency not"
    if mc_old != mc_new:
        return False, f"baseline from another machine class ({mc_old} vs {mc_new}): accuracy compared, latency not"
    t_old = (old.get("bench") or {}).get("threads_used")
    t_new = (new.get("bench") or {}).get("threads_used")
    if t_old != t_new:
        return False, f"baseline ran {t_old} threads, this build {t_new}: accuracy compared, latency not"
    return True, ""


@dataclass
class Comparison:
    """What `compare_reports` found: gate results (regressions), per-artifact before/after figures,
    and notes (what was not compared, and why)."""

    baseline: str
    results: list[GateResult] = field(default_factory=list)
    deltas: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    accuracy_only: bool = False

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.results)

    @property
    def exit_code(self) -> int:
        """`edgefocal compare`'s exit code: 0 no regression, 1 a regression (bad input raises, exit 2)."""
        return 0 if self.passed else 1

    def to_dict(self) -> dict:
        """What the pipeline stores as report.json's "baseline" (report.html plots the deltas)."""
        return {"path": self.baseline, "accuracy_only": self.accuracy_only, "notes": self.notes,
                "deltas": self.deltas, "passed": self.passed}


def _by_batch(d: dict | None) -> dict[str, object]:
    return {str(k): v for k, v in (d or {}).items()}


def _points_gate(name: str, label: str, metric: str, old: float | None, new: float | None,
                 bound: float) -> GateResult:
    """A figure that may lose at most `bound` points (figures are fractions; points are 1/100)."""
    if old is None or new is None:
        return GateResult(name, label, None, bound, False, baseline=old, detail=f"{metric} missing")
    lost = (old - new) * 100.0
    detail = f"{metric} {new:.2%} now, {old:.2%} in the baseline ({(new - old) * 100.0:+.2f} pt)"
    return GateResult(name, label, lost, bound, lost <= bound, baseline=old, detail=detail)


def _speedup_gate(gates: Gates, label: str, batch: str, old_row: Row, new_row: Row) -> GateResult | None:
    """Speedup (same-run ratio to the reference) may lose at most `max_speedup_regression` of the
    baseline's; decided on the new interval, and only on stable measurements."""
    old_s = _by_batch(old_row.speedup_vs_reference).get(batch)
    new_s = _by_batch(new_row.speedup_vs_reference).get(batch)
    if old_s is None or new_s is None:
        return None
    name, bound = f"max_speedup_regression b{batch}", gates.max_speedup_regression
    floor = old_s * (1.0 - bound)
    lost = 1.0 - new_s / old_s
    detail = f"speedup {new_s:.3g}x now, {old_s:.3g}x in the baseline ({new_s / old_s - 1.0:+.1%}); floor {floor:.3g}x"
    old_stab = _by_batch(old_row.latency_stability).get(batch)
    new_stab = _by_batch(new_row.latency_stability).get(batch)
    if old_stab is not None and not old_stab.get("stable", True):
        return inconclusive(name, label, lost, bound, gates, f"{detail}; the baseline's latency was unstable",
                            baseline=old_s)
    if new_stab is None:
        return GateResult(name, label, lost, bound, lost <= bound, baseline=old_s, detail=detail)
    if not new_stab["stable"]:
        return inconclusive(name, label, lost, bound, gates, f"{detail}; unstable: {new_stab['reason']}", old_s)
    verdict = interval_verdict(new_stab["speedup_low"], new_stab["speedup_high"], floor)
    detail += f"; per-round {new_stab['speedup_low']:.3g}-{new_stab['speedup_high']:.3g}x"
    if verdict == INCONCLUSIVE:
        return inconclusive(name, label, lost, bound, gates, detail + " straddles the floor", old_s)
    return GateResult(name, label, lost, bound, verdict == PASSED, verdict, old_s, detail)


def _size_gate(gates: Gates, label: str, old_row: Row, new_row: Row) -> GateResult | None:
    old, new = old_row.size_bytes, new_row.size_bytes
    if not old or not new:
        return None
    growth = new / old - 1.0
    detail = f"{new / 1e6:.3f} MB now, {old / 1e6:.3f} MB in the baseline ({growth:+.1%})"
    return GateResult("max_size_growth", label, growth, gates.max_size_growth, growth <= gates.max_size_growth,
                      baseline=float(old), detail=detail)


def _delta(label: str, old: Row, new: Row) -> dict:
    from edgefocal.gate_serving import serving_delta

    pair = lambda k: [getattr(old, k), getattr(new, k)]  # noqa: E731
    speed_old, speed_new = _by_batch(old.speedup_vs_reference), _by_batch(new.speedup_vs_reference)
    return {"label": label, "top1": pair("top1"), "agreement": pair("agreement"), "cosine": pair("cosine"),
            "size_bytes": pair("size_bytes"),
            "speedup": {b: [speed_old.get(b), speed_new.get(b)] for b in speed_new if b in speed_old},
            **serving_delta(old, new)}


def compare_artifact(gates: Gates, label: str, old: Row, new: Row, latency: bool, old_ref: Row | None = None,
                     new_ref: Row | None = None) -> list[GateResult]:
    """Every bound the recipe sets, for one artifact present in both reports; the serving bounds need each
    report's FP32 reference row (`old_ref`, `new_ref`): they compare ratios to it (gate_serving.py)."""
    from edgefocal.gate_serving import serving_regressions

    out = []
    if gates.max_top1_regression is not None:
        out.append(_points_gate("max_top1_regression", label, "top-1", old.top1, new.top1,
                                gates.max_top1_regression))
    if gates.max_agreement_regression is not None:
        out.append(_points_gate("max_agreement_regression", label, "agreement", old.agreement,
                                new.agreement, gates.max_agreement_regression))
    if latency and gates.max_speedup_regression is not None:
        batches = sorted(_by_batch(new.speedup_vs_reference), key=int)
        out += [g for b in batches if (g := _speedup_gate(gates, label, b, old, new)) is not None]
    if gates.max_size_growth is not None and (g := _size_gate(gates, label, old, new)) is not None:
        out.append(g)
    return out + serving_regressions(gates, label, old, new, old_ref, new_ref, latency)


def improvements(gates: Gates, label: str, old: Row, new: Row) -> list[str]:
    """Gains larger than a regression bound: not a failure, but worth a new baseline so they are kept."""
    out = []
    for key, name, bound in (("top1", "top-1", gates.max_top1_regression),
                             ("agreement", "agreement", gates.max_agreement_regression)):
        before, after = getattr(old, key), getattr(new, key)
        if bound is not None and before is not None and after is not None:
            gained = (after - before) * 100.0
            if gained > bound:
                out.append(f"{label}: {name} improved {gained:.2f} pt over the baseline: make this build the "
                           "new baseline to keep the gain")
    return out


def compare_reports(old: dict, new: dict, gates: Gates, baseline: str = "the baseline") -> Comparison:
    """Compare the new report's requested artifacts with the baseline's. `baseline` names it in messages.
    Rows are Row objects (load_report's); a report.json dict's rows are read with Row.from_dict."""
    notes = check_same_inputs(old, new, baseline)
    latency, why = latency_comparable(old, new)
    comp = Comparison(baseline, notes=notes + ([why] if why else []), accuracy_only=not latency)
    old_rows = {r.label: r for r in with_rows(old)["rows"]}
    new_rows = {r.label: r for r in with_rows(new)["rows"]}
    for label, row in new_rows.items():
        if not row.requested:
            continue
        base = old_rows.get(label)
        if row.skipped and (base is None or base.skipped):
            continue  # not built now, not built then (an engine on a machine without TensorRT)
        if base is None or base.skipped:
            comp.notes.append(f"{label}: not in the baseline (a new artifact): nothing to compare")
        elif row.skipped:
            comp.results.append(GateResult("built as in the baseline", label, None, "built", False,
                                           detail=f"skipped now: {row.skipped}"))
        else:
            comp.results += compare_artifact(gates, label, base, row, latency, _reference(old_rows, base),
                                             _reference(new_rows, row))
            comp.deltas.append(_delta(label, base, row))
            comp.notes += improvements(gates, label, base, row)
    for label, base in old_rows.items():
        if base.requested and not base.skipped and label not in new_rows:
            comp.results.append(GateResult("built as in the baseline", label, None, "built", False,
                                           detail="the baseline has this artifact; this build does not"))
    comp.notes += _serving_notes(old_rows, new_rows, latency)
    return comp


def _reference(rows: dict[str, Row], row: Row) -> Row | None:
    """The same-run FP32 row a row's serving ratios are taken against (the CPU baseline for CPU runners
    beside a GPU reference, as for speedups)."""
    from edgefocal.verify.compare import REFERENCE

    return rows.get(row.speedup_against or REFERENCE)


def _serving_notes(old_rows: dict[str, Row], new_rows: dict[str, Row], latency: bool) -> list[str]:
    measured = lambda rows: any(r.cold_start_ms is not None or r.serving_memory_mb for r in rows.values())  # noqa: E731
    if not measured(new_rows):
        return []
    if not measured(old_rows):
        return ["the baseline has no serving figures (a report of schema < 3): cold start and memory not compared"]
    if not latency:
        return ["serving memory compared as the ratio to each run's FP32 reference; cold start not (a time)"]
    return []


def compare_paths(old: Path, new: Path, gates: Gates) -> Comparison:
    """`edgefocal compare OLD NEW`: two existing reports (files or output directories), no rebuild."""
    return compare_reports(load_report(old), load_report(new), gates, baseline=f"baseline {old}")

