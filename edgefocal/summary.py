"""Markdown for `$GITHUB_STEP_SUMMARY` (and any CI page that renders markdown): the verdict first, then
the gates that need a look (failed, inconclusive), then every figure with its stability and the
baseline's notes. Also the text helpers that put a latency's stability next to it, shared by report.md
(through the integrator), report.html and the matrix table."""
from __future__ import annotations

from pathlib import Path

from edgefocal.core import Row
from edgefocal.gate import FAILED, INCONCLUSIVE, PASSED, GateResult, counts, from_dict

ICON = {PASSED: "✅", FAILED: "❌", INCONCLUSIVE: "⚠️"}


def _fmt(v, spec: str, missing: str = "–") -> str:
    return missing if v is None else format(v, spec)


def by_batch(d: dict | None, batch) -> object:
    """report.json keys batch sizes as strings, a report still in memory as ints."""
    d = d or {}
    for key in (batch, str(batch)):
        if key in d:
            return d[key]
    return d.get(int(batch)) if str(batch).isdigit() else None


def speedup_text(row: Row, batch) -> str:
    """'2.22× [2.15–2.29]' for a stable measurement, '2.22× (unstable)' otherwise, '2.22×' without
    stability figures (an older report): the ratio never appears without how far to trust it."""
    s = by_batch(row.speedup_vs_reference, batch)
    if s is None:
        return "–"
    stab = by_batch(row.latency_stability, batch)
    if not stab or "speedup_low" not in stab:
        return f"{s:.2f}×"
    if not stab["stable"]:
        return f"{s:.2f}× (unstable)"
    return f"{s:.2f}× [{stab['speedup_low']:.2f}–{stab['speedup_high']:.2f}]"


def stability_text(row: Row, batch) -> str:
    """The stability figure beside a latency: spread of the per-round ratios (or the reference's drift),
    rounds used, and the foreign CPU load; 'unstable: why' when it is."""
    stab = by_batch(row.latency_stability, batch)
    if not stab:
        return "–"
    if not stab["stable"]:  # the short flags in a table; the full reason is in the gate's detail
        return "unstable: " + (", ".join(stab["flags"]) if stab.get("flags") else stab["reason"])
    spread = stab.get("spread", stab.get("reference_drift"))
    load = stab.get("foreign_load")
    return (f"±{spread / 2:.1%} over {stab['rounds_used']} rounds"
            + ("" if load is None else f", load {load:.0%}"))


def gate_table(gates: list[GateResult]) -> list[str]:
    lines = ["| | artifact | gate | figure | bound | baseline | detail |", "|---|---|---|---|---|---|---|"]
    for g in gates:
        lines.append(f"| {ICON[g.status]} | {g.artifact} | {g.gate} | {_fmt(g.value, '.4g')} | {g.bound} | "
                     f"{_fmt(g.baseline, '.4g')} | {g.detail.replace('|', '/')} |")
    return lines


def figures_table(report: dict) -> list[str]:
    """One line per row (report["rows"]: Row objects, as a build holds them and baseline.load_report reads them)."""
    batches = report["bench"]["batch_sizes"]
    head = ["artifact", "top-1", "agreement", "cosine"]
    for b in batches:
        head += [f"b{b} p50 ms", f"b{b} ×ref", f"b{b} stability"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        cells = [r.label + (" *" if r.requested else ""), _fmt(r.top1, ".2%"),
                 _fmt(r.agreement, ".2%"), _fmt(r.cosine, ".4f")]
        for b in batches:
            lat = by_batch(r.latency_ms, b)
            cells += [_fmt(lat and lat["p50"], ".2f"), speedup_text(r, b), stability_text(r, b)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return lines


def headline(title: str, gates: list[GateResult]) -> str:
    c = counts(gates)
    failing = sum(1 for g in gates if not g.passed)
    verdict = "❌ failed" if failing else ("⚠️ passed with inconclusive gates" if c[INCONCLUSIVE] else "✅ passed")
    return (f"## edgefocal: {title} — {verdict}\n\n{c[PASSED]} passed, {c[FAILED]} failed, "
            f"{c[INCONCLUSIVE]} inconclusive")


def summary_markdown(report: dict, gates: list[GateResult | dict] | None = None, comparison=None) -> str:
    """The whole summary of one build. `gates` default to report.json's; `comparison` is a
    baseline.Comparison (its gates are usually among `gates` already: it adds its notes)."""
    gates = [g if isinstance(g, GateResult) else from_dict(g) for g in (report.get("gates", []) if gates is None else gates)]
    base = comparison.to_dict() if comparison is not None else report.get("baseline")
    lines = [headline(report["model"]["name"], gates), ""]
    attention = [g for g in gates if g.status != PASSED]
    if attention:
        lines += ["### Needs a look", ""] + gate_table(sorted(attention, key=lambda g: g.passed)) + [""]
    lines += ["### Figures (same run; × = speedup vs the FP32 reference, [low–high] over the rounds)", ""]
    lines += figures_table(report) + [""]
    from edgefocal.serving_report import markdown as serving_markdown

    serving = serving_markdown(report, "### Serving (fresh processes of the same run)")
    lines += serving[1:] + [""] if serving else []
    if base:
        lines += [f"### Baseline: {base['path']}", ""] + [f"- {n}" for n in base.get("notes", [])] + [""]
    if gates:
        lines += ["<details><summary>All gates</summary>", ""] + gate_table(gates) + ["", "</details>", ""]
    return "\n".join(lines) + "\n"


def append_summary(path: Path, text: str) -> None:
    """Append, not overwrite: $GITHUB_STEP_SUMMARY collects every step's markdown in one file."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")
