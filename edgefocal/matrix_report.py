"""What a matrix writes: one combined table (matrix.md, which doubles as the CI step summary, and
matrix.html), one matrix.json and one junit.xml with a test suite per entry."""
from __future__ import annotations

import html
import json
from pathlib import Path

from edgefocal.core import jsonable
from edgefocal.gate import FAILED, INCONCLUSIVE, PASSED, counts, from_dict
from edgefocal.junit import write_junit
from edgefocal.serving_report import matrix_cells
from edgefocal.summary import speedup_text

HEAD = ["entry", "artifact", "top-1", "drop pt", "agreement", "×ref (smallest batch)", "MB", "cold start",
        "memory MB", "batch-consistent", "gates", "baseline"]
_SLIM = ("latency_samples_ms", "latency_rounds_ms", "foreign_load")  # per-sample data stays in each report.json


def _gates_text(gates: list[dict], artifact: str | None = None) -> str:
    mine = [from_dict(g) for g in gates if artifact is None or g["artifact"] == artifact]
    if not mine:
        return "no gates set"
    c = counts(mine)
    failing = sum(1 for g in mine if not g.passed)
    word = "FAILED" if failing else ("inconclusive" if c[INCONCLUSIVE] else "ok")
    return f"{word} ({c[PASSED]} passed, {c[FAILED]} failed, {c[INCONCLUSIVE]} inconclusive)"


def _baseline_text(record: dict, artifact: str) -> str:
    base = (record.get("report") or {}).get("baseline")
    if not base:
        return "–"
    regress = [g for g in record.get("gates", []) if g["artifact"] == artifact and
               any(k in g["gate"] for k in ("regression", "growth", "baseline")) and not g["passed"]]
    return "regression: " + ", ".join(g["gate"] for g in regress) if regress else "no regression"


def table_rows(result) -> list[list[str]]:
    """One row per requested artifact of every entry; one row per entry that could not be built."""
    rows = []
    for e in result.entries:
        rec = e.record
        if rec.get("error"):
            rows.append([e.name, "(build failed)", "", "", "", "", "", "", "", "", rec["error"], ""])
            continue
        report = rec["report"]
        batch = min(report["bench"]["batch_sizes"])
        for r in (r for r in report["rows"] if r.requested):
            rows.append([e.name + (" (resumed)" if e.resumed else ""), r.label,
                         "–" if r.top1 is None else f"{r.top1:.2%}",
                         "–" if r.top1_drop is None else f"{r.top1_drop:+.2f}",
                         "–" if r.agreement is None else f"{r.agreement:.2%}",
                         "skipped" if r.skipped else speedup_text(r, batch),
                         "–" if not r.size_bytes else f"{r.size_bytes / 1e6:.2f}", *matrix_cells(r),
                         _gates_text(rec["gates"], r.label), _baseline_text(rec, r.label)])
    return rows


def to_markdown(result) -> str:
    verdict = {0: "✅ passed", 1: "❌ a gate failed", 2: "❌ an entry could not be built"}[result.exit_code]
    lines = [f"## edgefocal matrix — {verdict}", "", f"{len(result.entries)} entries; "
             f"{sum(e.resumed for e in result.entries)} finished earlier and were not rebuilt", ""]
    lines += ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table_rows(result)]
    return "\n".join(lines) + "\n"


def to_html(result) -> str:
    from edgefocal.report_html import CSS

    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEAD)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(result))
    title = to_markdown(result).splitlines()[0].lstrip("# ")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><table><tr>{head}</tr>{body}</table>"
            "</body></html>\n")


def to_json(result) -> dict:
    entries = []
    for e in result.entries:
        rec = {k: v for k, v in e.record.items() if k != "report"}
        report = e.record.get("report") or {}
        rec["rows"] = [{k: v for k, v in jsonable(r).items() if k not in _SLIM}
                       for r in report.get("rows", []) if r.requested]
        rec["baseline"] = report.get("baseline")
        entries.append({**rec, "resumed": e.resumed})
    return {"schema": 1, "exit_code": result.exit_code, "entries": entries}


def write_outputs(result) -> dict[str, Path]:
    out = Path(result.out_dir)
    paths = {"json": out / "matrix.json", "md": out / "matrix.md", "html": out / "matrix.html", "junit": out / "junit.xml"}
    paths["json"].write_text(json.dumps(to_json(result), indent=2) + "\n")
    paths["md"].write_text(to_markdown(result))
    paths["html"].write_text(to_html(result))
    suites = {e.name: e.record.get("gates", []) for e in result.entries}
    write_junit(paths["junit"], suites, errors={e.name: e.record["error"] for e in result.entries if e.record.get("error")})
    return paths
