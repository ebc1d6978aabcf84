"""The serving figures (verify/serving.py) as text: one table for report.md, the job summary and
report.html, the matrix's short cells, and `edgefocal compare`'s before/after lines."""
from __future__ import annotations

import html

from edgefocal.core import Row
from edgefocal.gate import runs, str_keys as by_batch

HEADLINE = ("cold start (median of fresh processes, load + compile), first batch-1 inference, peak resident "
            "memory while serving, and top-1 consistency between batch 1 and the largest batch")


def has_serving(report: dict) -> bool:
    return any(r.cold_start_ms is not None or r.serving_note for r in report["rows"])


def memory_batches(report: dict) -> list[str]:
    return sorted({b for r in report["rows"] for b in by_batch(r.serving_memory_mb)}, key=int)


def cold_start_text(row: Row) -> str:
    """'212 ms (198–240 over 3)': the median with the spread of the runs."""
    if row.cold_start_ms is None:
        return "–"
    per = runs(row, "cold_start_runs_ms")
    spread = f" ({min(per):.0f}–{max(per):.0f} over {len(per)})" if len(per) > 1 else ""
    return f"{row.cold_start_ms:.0f} ms{spread}"


def consistency_text(row: Row) -> str:
    c = row.consistency
    if not c:
        return "–"
    head = (f"same top-1 on {c['images']}" if c["consistent"] else f"{c['mismatches']} of {c['images']} top-1 differ")
    return (f"{head} (b1 vs b{c['batch']}, gap {c['max_logit_gap']:.2g})"
            + ("" if c.get("repeatable", True) else ", NOT repeatable"))


def table(report: dict) -> tuple[list[str], list[list[str]]]:
    batches = memory_batches(report)
    header = ["artifact", "cold start", "first inference ms"] + [f"memory b{b} MB" for b in batches] + \
        ["batch consistency", "note"]
    rows = []
    for r in report["rows"]:
        mem = by_batch(r.serving_memory_mb)
        rows.append([r.label + (" *" if r.requested else ""), cold_start_text(r),
                     "–" if r.first_inference_ms is None else f"{r.first_inference_ms:.2f}",
                     *["–" if mem.get(b) is None else f"{mem[b]:.0f}" for b in batches],
                     consistency_text(r), r.serving_note or ""])
    return header, rows


def markdown(report: dict, title: str = "## Serving") -> list[str]:
    """report.md's and the job summary's serving section; nothing for a report without serving figures."""
    if not has_serving(report):
        return []
    header, rows = table(report)
    return (["", title, "", HEADLINE + ".", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows])


def html_section(report: dict) -> str:
    if not has_serving(report):
        return ""
    header, rows = table(report)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<section id="serving"><h2>Serving</h2><p>{html.escape(HEADLINE)}.</p>'
            f'<table class="serving"><tr>{head}</tr>{body}</table></section>')


def matrix_cells(row: Row) -> list[str]:
    """cold start, memory at the largest batch, consistency: the matrix table's short cells."""
    mem = by_batch(row.serving_memory_mb)
    big = max(mem, key=int) if mem else None
    c = row.consistency
    return [cold_start_text(row).split(" (")[0], "–" if big is None else f"{mem[big]:.0f} (b{big})",
            "–" if not c else ("yes" if c["consistent"] and c.get("repeatable", True) else
                               f"no ({c['mismatches']}/{c['images']})")]


def _pair(pair: list, spec: str) -> str:
    return " → ".join("–" if v is None else format(v, spec) for v in pair)


def compare_lines(deltas: list[dict]) -> list[str]:
    """`edgefocal compare`: each compared artifact's serving figures, baseline → new."""
    out = []
    for d in deltas:
        if "cold_start_ms" not in d or all(v is None for v in d["cold_start_ms"]):
            continue
        mem = "; ".join(f"memory b{b} {_pair(p, '.0f')} MB" for b, p in d["serving_memory_mb"].items())
        out.append(f"{d['label']}: cold start {_pair(d['cold_start_ms'], '.0f')} ms; first inference "
                   f"{_pair(d['first_inference_ms'], '.2f')} ms; {mem}; consistent "
                   f"{' → '.join(str(v) for v in d['consistent'])}")
    return out
