"""What a matrix writes: one combined table (matrix.md, which doubles as the CI step summary, and
matrix.html), one matrix.json and one junit.xml with a test suite per entry. Given the entries' histories
(`--history DIR`: DIR/<entry>/history.html, as `edgefocal history` writes them), matrix.html links each entry
to its history page and each artifact and figure to its trend chart there: relative links, to the ids the
page itself declares (data-artifact, data-figure), so a link is only made where its target exists."""
from __future__ import annotations

import html
import json
import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

from edgefocal.core import jsonable
from edgefocal.gate import FAILED, INCONCLUSIVE, PASSED, counts, from_dict
from edgefocal.junit import write_junit
from edgefocal.serving_report import matrix_cells
from edgefocal.summary import speedup_text

HEAD = ["entry", "artifact", "top-1", "drop pt", "agreement", "×ref (smallest batch)", "first inference", "MB",
        "cold start", "memory MB", "batch-consistent", "gates", "baseline"]
#: the columns history.html charts, by the figure key of its charts (history.FIGURES)
TRENDS = {"top-1": "top1", "agreement": "agreement", "×ref (smallest batch)": "speedup", "MB": "size",
          "cold start": "cold_start", "memory MB": "serving_memory"}
HISTORY_PAGE = "history.html"
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


def _lines(result) -> list[tuple[str, str | None, list[str]]]:
    """(entry name, artifact label or None for a failed entry, the row's cells), in table order."""
    lines = []
    for e in result.entries:
        rec = e.record
        if rec.get("error"):
            lines.append((e.name, None, [e.name, "(build failed)", *[""] * (len(HEAD) - 4), rec["error"], ""]))
            continue
        report = rec["report"]
        batch = min(report["bench"]["batch_sizes"])
        for r in (r for r in report["rows"] if r.requested):
            lines.append((e.name, r.label, [
                e.name + (" (resumed)" if e.resumed else ""), r.label,
                "–" if r.top1 is None else f"{r.top1:.2%}",
                "–" if r.top1_drop is None else f"{r.top1_drop:+.2f}",
                "–" if r.agreement is None else f"{r.agreement:.2%}",
                "skipped" if r.skipped else speedup_text(r, batch),
                "–" if r.first_inference_ms is None else f"{r.first_inference_ms:.2f} ms",
                "–" if not r.size_bytes else f"{r.size_bytes / 1e6:.2f}", *matrix_cells(r),
                _gates_text(rec["gates"], r.label), _baseline_text(rec, r.label)]))
    return lines


def table_rows(result) -> list[list[str]]:
    """One row per requested artifact of every entry; one row per entry that could not be built."""
    return [cells for _, _, cells in _lines(result)]


class _Ids(HTMLParser):
    """The ids a history page declares: {(artifact, figure key or None for its section): id}."""

    def __init__(self):
        super().__init__()
        self.ids: dict[tuple[str, str | None], str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id") and a.get("data-artifact") is not None:
            self.ids.setdefault((a["data-artifact"], a.get("data-figure")), a["id"])


def history_ids(page: Path) -> dict[tuple[str, str | None], str]:
    parser = _Ids()
    parser.feed(Path(page).read_text(encoding="utf-8"))
    parser.close()
    return parser.ids


def _href(page: Path, out_dir: Path) -> str:
    """The page relative to matrix.html (offline, and wherever the two folders are copied together)."""
    try:
        return quote(Path(os.path.relpath(page.resolve(), out_dir.resolve())).as_posix())
    except ValueError:  # another drive (Windows): no relative path exists
        return page.resolve().as_uri()


def trend_links(result) -> dict[tuple[str, str | None, str | None], str]:
    """{(entry, None, None): its history page, (entry, artifact, None): the artifact's section,
    (entry, artifact, figure key): its chart}: only entries with a page in result.history, only ids the
    page has. Empty without a history."""
    history = getattr(result, "history", None)
    if history is None:
        return {}
    links = {}
    for e in result.entries:
        page = Path(history) / e.name / HISTORY_PAGE
        if not page.is_file():
            continue
        href = _href(page, Path(result.out_dir))
        links[(e.name, None, None)] = href
        links.update({(e.name, art, fig): f"{href}#{quote(i)}" for (art, fig), i in history_ids(page).items()})
    return links


def to_markdown(result) -> str:
    verdict = {0: "✅ passed", 1: "❌ a gate failed", 2: "❌ an entry could not be built"}[result.exit_code]
    lines = [f"## edgefocal matrix — {verdict}", "", f"{len(result.entries)} entries; "
             f"{sum(e.resumed for e in result.entries)} finished earlier and were not rebuilt", ""]
    lines += ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table_rows(result)]
    return "\n".join(lines) + "\n"


def _cell_link(links: dict, entry: str, label: str | None, column: str, text: str) -> str | None:
    if column == "entry":
        return links.get((entry, None, None))
    if label is None or text in ("", "–", "skipped"):
        return None
    if column == "artifact":
        return links.get((entry, label, None))
    return links.get((entry, label, TRENDS[column])) if column in TRENDS else None


def _td(text: str, href: str | None) -> str:
    if href is None:
        return f"<td>{html.escape(text)}</td>"
    return f'<td><a href="{html.escape(href, quote=True)}">{html.escape(text)}</a></td>'


def to_html(result) -> str:
    from edgefocal.report_html import CSS

    links = trend_links(result)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEAD)
    body = "".join("<tr>" + "".join(_td(c, _cell_link(links, entry, label, col, c)) for col, c in zip(HEAD, cells))
                   + "</tr>" for entry, label, cells in _lines(result))
    title = to_markdown(result).splitlines()[0].lstrip("# ")
    linked = sorted({entry for entry, _, _ in links})
    note = (f"<p>Trends: {len(linked)} of {len(result.entries)} entries link to their history.html (the accepted "
            "builds); each artifact and charted figure links to its trend chart.</p>") if linked else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{note}"
            f"<table><tr>{head}</tr>{body}</table></body></html>\n")


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
