"""An engine's layers as the report tells them: the fusion spots (Q/DQ pairs TensorRT cannot fuse into its INT8
kernels) and the layer counts predicted on paper for a Q/DQ ONNX, and, where an engine was built, its real
layer list, which replaces the prediction. For report.md and report.html.

Reads the row facts a backend records (`fusion_spots`, `engine_on_paper`, `layers`; backends/tensorrt/
on_paper.py writes the first two), never a runtime's name."""
from __future__ import annotations

import html

from edgefocal.core import Row

TITLE = "Engine layers on paper"
SPOTS_HEADLINE = ("fusion spots: Q/DQ placements TensorRT accepts but cannot fuse into its INT8 kernels; the engine "
                  "builds and runs, and each spot costs a layer of its own, padded work or an op left in float")
PARTS_SHOWN = 3


def has_layers(report: dict) -> bool:
    return any(_facts(r) for r in report["rows"])


def _facts(row: Row) -> bool:
    return any(k in row.facts for k in ("engine_on_paper", "fusion_spots", "layers"))


def summary_text(s: dict) -> str:
    """'150 layers: 29 INT8 and 42 FP16 compute, 48 reformats (24 Quantize, 22 Shuffle, 2 Cast), 31 slices'."""
    kinds = s.get("by_kind", {})
    reformats = ", ".join(f"{kinds[k]} {k}" for k in ("Quantize", "Dequantize", "Shuffle", "Cast") if kinds.get(k))
    return (f"{s['layers']} layers: {s['int8']} INT8 and {s['float']} {s.get('float_precision', 'float')} compute, "
            f"{s['reformats']} reformats" + (f" ({reformats})" if reformats else "")
            + f", {s['data_movement']} slices/gathers")


def spot_table(spots: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One line per rule: how many spots, the FocalNet parts (the first few), what each costs."""
    by_rule: dict[str, list[dict]] = {}
    for s in spots:
        by_rule.setdefault(s["rule"], []).append(s)
    rows = []
    for rule, found in by_rule.items():
        parts = list(dict.fromkeys(s["part"] for s in found))
        more = f" (+{len(parts) - PARTS_SHOWN} more)" if len(parts) > PARTS_SHOWN else ""
        rows.append([rule, str(len(found)), "; ".join(parts[:PARTS_SHOWN]) + more, found[0].get("cost", "")])
    return ["rule", "spots", "FocalNet parts", "cost"], rows


def lines(report: dict) -> list[tuple[str, str, list[dict]]]:
    """(row label, text, spots) for every row with layer facts: the prediction, or the built engine's count."""
    built = [r for r in report["rows"] if r.facts.get("layers")]
    out = []
    for r in report["rows"]:
        paper = r.facts.get("engine_on_paper")
        if paper:
            text = f"predicted on paper, {summary_text(paper)}. {paper['note'][0].upper()}{paper['note'][1:]}"
            if paper.get("layers_file"):
                text += f"; every predicted layer in `{paper['layers_file']}`"
            if built:
                text += f". Replaced by the engine built here ({', '.join(b.label for b in built)})"
            out.append((r.label, text + ".", r.facts.get("fusion_spots", [])))
        elif r.facts.get("layers"):
            where = ", ".join(f"{n} {d}" for d, n in (r.facts.get("residency") or {}).items())
            out.append((r.label, f"the engine's own layer list: {len(r.facts['layers'])} layers"
                        + (f" ({where})" if where else ""), []))
    return out


def markdown(report: dict) -> list[str]:
    """report.md's section; nothing for a report without layer facts."""
    if not has_layers(report):
        return []
    out = ["", f"## {TITLE}", ""]
    for label, text, spots in lines(report):
        out.append(f"- {label}: {text}")
        if spots:
            header, rows = spot_table(spots)
            out += ["", f"{len(spots)} {SPOTS_HEADLINE}:", "", "| " + " | ".join(header) + " |",
                    "|" + "---|" * len(header)] + ["| " + " | ".join(c.replace("|", "/") for c in row) + " |"
                                                   for row in rows] + [""]
    return out[:-1] if out[-1] == "" else out


def html_section(report: dict) -> str:
    """report.html's section; empty for a report without layer facts."""
    if not has_layers(report):
        return ""
    body = [f'<section id="engine-layers"><h2>{TITLE}</h2>']
    for label, text, spots in lines(report):
        body.append(f"<p><b>{html.escape(label)}</b>: {html.escape(text.replace('`', ''))}</p>")
        if spots:
            header, rows = spot_table(spots)
            body.append(f"<p>{len(spots)} {html.escape(SPOTS_HEADLINE)}:</p><table class=\"spots\"><tr>"
                        + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
                        + "</table>")
    return "".join(body) + "</section>"
