"""report.html: the build's table and gates plus charts — agreement against latency per artifact, the
latency distribution per batch size, and with a baseline, before/after.

One self-contained file that opens offline (a CI artifact is often viewed on a machine without network,
and a report that pulls a script or a font from a CDN breaks there): charts are matplotlib figures
inlined as SVG with text drawn as paths, styles are inline, and there is no script at all."""
from __future__ import annotations

import html
import io
from pathlib import Path

from edgefocal.core import Row
from edgefocal.gate import GateResult, from_dict
from edgefocal.layer_report import html_section as layers_html
from edgefocal.report import STAGES_HEADLINE, build_totals, profile_lines, stage_label, stages_table
from edgefocal.serving_report import html_section as serving_html
from edgefocal.summary import by_batch, speedup_text, stability_text

CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.failed{background:#fde2e1}.inconclusive{background:#fff4ce}figure.chart{display:inline-block;vertical-align:top;margin:8px}
figcaption{font-weight:600}table.gates td,table.spots td{text-align:left}"""


def _svg(fig) -> str:
    """A matplotlib figure as inline SVG: glyphs as paths (no font to fetch or lack), stable ids (the same
    report gives the same file), no XML prolog, no DOCTYPE (it names a remote DTD), no date."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "edgefocal"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=figsize)


def _timed_rows(report: dict) -> list[Row]:
    return [r for r in report["rows"] if r.latency_ms and not r.skipped]


def _log_if_wide(ax, values: list[float]) -> None:
    """A log time axis when latencies span more than 20x (a loaded reference next to INT8 artifacts),
    so the fast artifacts are not squeezed into one pixel."""
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_xscale("log")
    else:
        ax.set_xlim(left=0)


def agreement_vs_latency(report: dict) -> str:
    """Each artifact at (p50 latency at the smallest batch, agreement with FP32): up and left is better."""
    batch = min(report["bench"]["batch_sizes"])
    fig = _figure((6.4, 4.2))
    ax = fig.add_subplot()
    for r in _timed_rows(report):
        lat, agree = by_batch(r.latency_ms, batch), r.agreement
        if lat is None or agree is None:
            continue
        ax.scatter([lat["p50"]], [agree * 100], s=60, marker="*" if r.requested else "o")
        ax.errorbar([lat["p50"]], [agree * 100], xerr=[[0], [max(lat["p99"] - lat["p50"], 0)]], fmt="none", alpha=0.4)
        ax.annotate(r.label, (lat["p50"], agree * 100), textcoords="offset points", xytext=(5, 4), fontsize=8)
    _log_if_wide(ax, [by_batch(r.latency_ms, batch)[q] for r in _timed_rows(report)
                      if by_batch(r.latency_ms, batch) for q in ("p50", "p99")])
    ax.margins(x=0.3, y=0.15)
    ax.set_xlabel(f"latency p50 ms at batch {batch} (bar to p99)")
    ax.set_ylabel("agreement with FP32 (%)")
    ax.grid(alpha=0.3)
    return _svg(fig)


def latency_distributions(report: dict) -> str:
    """Per batch size, each runner's latency samples from the interleaved rounds as a box plot (p50,
    p90 and p99 markers where a report has no samples)."""
    batches = report["bench"]["batch_sizes"]
    rows = _timed_rows(report)
    fig = _figure((6.4, 1.2 + 0.45 * len(rows) * len(batches)))
    for i, b in enumerate(batches):
        ax = fig.add_subplot(len(batches), 1, i + 1)
        samples = [by_batch(r.latency_samples_ms, b) for r in rows]
        if all(samples):
            ax.boxplot(samples, orientation="horizontal", tick_labels=[r.label for r in rows], showfliers=True)
        else:
            for j, r in enumerate(rows):
                lat = by_batch(r.latency_ms, b) or {}
                ax.plot([lat.get("p50"), lat.get("p90"), lat.get("p99")], [j + 1] * 3, "|-", ms=12)
            ax.set_yticks(range(1, len(rows) + 1), [r.label for r in rows])
        _log_if_wide(ax, [v for s in samples if s for v in s])
        ax.set_title(f"batch {b}", fontsize=10)
        ax.set_xlabel("ms per batch")
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return _svg(fig)


def before_after(report: dict) -> str | None:
    """With a baseline: agreement and speedup (smallest batch) of each compared artifact, then and now."""
    deltas = (report.get("baseline") or {}).get("deltas") or []
    if not deltas:
        return None
    import numpy as np

    fig = _figure((6.4, 3.4))
    labels = [d["label"] for d in deltas]
    x = np.arange(len(labels))
    for k, (title, get) in enumerate((("agreement with FP32 (%)", lambda d: [v and v * 100 for v in d["agreement"]]),
                                      ("speedup vs reference, smallest batch", _first_speedup))):
        ax = fig.add_subplot(1, 2, k + 1)
        pairs = [get(d) for d in deltas]
        ax.bar(x - 0.2, [p[0] or 0 for p in pairs], 0.4, label="baseline")
        ax.bar(x + 0.2, [p[1] or 0 for p in pairs], 0.4, label="this build")
        ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        if k == 0:
            low = min((v for p in pairs for v in p if v), default=0)
            ax.set_ylim(max(0, low - 1), 100.2)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _svg(fig)


def _first_speedup(delta: dict) -> list:
    speed = delta.get("speedup") or {}
    return speed[min(speed, key=int)] if speed else [None, None]


def _table(report: dict) -> str:
    batches = report["bench"]["batch_sizes"]
    head = ["artifact", "top-1", "agreement", "cosine"] + [h for b in batches for h in
                                                           (f"b{b} p50 ms", f"b{b} p99 ms", f"b{b} ×ref", f"b{b} stability")] + ["MB"]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in report["rows"]:
        cells = [r.label + (" *" if r.requested else ""), _pct(r.top1), _pct(r.agreement),
                 "–" if r.cosine is None else f"{r.cosine:.4f}"]
        for b in batches:
            lat = by_batch(r.latency_ms, b) or {}
            cells += [_ms(lat.get("p50")), _ms(lat.get("p99")), speedup_text(r, b), stability_text(r, b)]
        cells.append("–" if not r.size_bytes else f"{r.size_bytes / 1e6:.2f}")
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(out) + "</table>"


def _pct(v) -> str:
    return "–" if v is None else f"{v:.2%}"


def _ms(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def _gates(gates: list[GateResult]) -> str:
    """Status as a word, not an emoji: a CI machine's browser often has no emoji font."""
    head = "".join(f"<th>{h}</th>" for h in ("artifact", "gate", "status", "figure", "bound", "baseline", "detail"))
    rows = []
    for g in gates:
        status = g.status if g.passed or g.status == "failed" else "inconclusive (fails)"
        cells = (g.artifact, g.gate, status, "missing" if g.value is None else f"{g.value:.4g}", g.bound,
                 "–" if g.baseline is None else f"{g.baseline:.4g}", g.detail)
        rows.append(f'<tr class="{g.status}">' + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f'<table class="gates"><tr>{head}</tr>' + "".join(rows) + "</table>"


def sensitivity_chart(rows: list[dict], top: int = 20) -> str:
    """The costliest INT8 parts (KL bought back by keeping each float), in FocalNet terms, with each part's
    share of the INT8 latency beside its bar: what the mixed-precision search traded."""
    rows = sorted(rows, key=lambda r: -r["kl_cost"])[:top][::-1]
    fig = _figure((7.2, 0.3 * len(rows) + 1.2))
    ax = fig.add_subplot()
    ax.barh([r["label"] for r in rows], [r["kl_cost"] for r in rows], color="#4c72b0")
    for i, r in enumerate(rows):
        if r.get("latency_share") is not None:
            ax.text(max(r["kl_cost"], 0), i, f"  {r['latency_share']:.1%} of latency", va="center", fontsize=7)
    ax.set_xlabel("KL(FP32 ‖ INT8) bought back by keeping the part float")
    return _svg(fig)


#: the part kinds in the profile chart's order (the FocalNet block's dataflow), each with its colour; others grey
PART_COLOURS = {"stem": "#8c564b", "downsample": "#c49c94", "norm": "#9467bd", "f": "#1f77b4", "focal": "#aec7e8",
                "focal act": "#17becf", "context": "#9edae5", "modulation": "#bcbd22", "h": "#2ca02c", "proj": "#98df8a",
                "fc1": "#d62728", "act": "#ff9896", "fc2": "#ff7f0e", "residual": "#ffbb78", "pool": "#e377c2",
                "head": "#f7b6d2", "model": "#7f7f7f"}
UNATTRIBUTED_COLOUR, MAC_COLOUR, REST_COLOUR = "#d9d9d9", "#4c72b0", "#dd8452"


def profile_chart(profile: dict) -> str:
    """Per profiled artifact, two stacked bars of its batch-1 time (ms): by FocalNet part kind, with what no part
    took (unattributed ops and the time the profiler does not see) in grey; and the ops that carry the MACs
    against every other op. A bar is the measured time, or the profiler's total where that is larger."""
    arts = profile["artifacts"][::-1]
    fig = _figure((8.4, 1.4 + 1.0 * len(arts)))
    labels = [a["label"] for a in arts]
    basis = [max(a["measured_ms"], a["profiled_ms"]) for a in arts]
    kinds = [k for k in PART_COLOURS if any(k in a["by_part_kind"] for a in arts)]
    kinds += sorted({k for a in arts for k in a["by_part_kind"]} - set(kinds) - {"other"})
    parts_ax, mac_ax = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    left = [0.0] * len(arts)
    for k in kinds:
        widths = [a["by_part_kind"].get(k, 0.0) for a in arts]
        parts_ax.barh(labels, widths, left=left, color=PART_COLOURS.get(k, "#7f7f7f"), label=k)
        left = [x + w for x, w in zip(left, widths)]
    parts_ax.barh(labels, [max(b - x, 0.0) for b, x in zip(basis, left)], left=left, color=UNATTRIBUTED_COLOUR,
                  label="unattributed")
    parts_ax.set_title("by FocalNet part kind", fontsize=9)
    macs = [a["mac_ops"]["ms"] for a in arts]
    mac_ax.barh(labels, macs, color=MAC_COLOUR, label="MAC ops\n(conv, matmul)")
    mac_ax.barh(labels, [b - m for b, m in zip(basis, macs)], left=macs, color=REST_COLOUR, label="everything\nelse")
    for i, a in enumerate(arts):
        rate = a["mac_ops"].get("gmac_per_s")
        mac_ax.text(macs[i] / 2, i, f"{a['mac_ops']['share']:.0%}" + (f", {rate:.0f} GMAC/s" if rate else ""),
                    va="center", ha="center", fontsize=7, color="white")
    mac_ax.set_title("MAC ops against the rest", fontsize=9)
    mac_ax.set_xlabel("ms per inference at batch 1 (measured with the profiler off)")
    for ax, ncol in ((parts_ax, 2), (mac_ax, 1)):
        ax.legend(fontsize=6, ncol=ncol, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlim(0, max(basis) * 1.02)
    fig.tight_layout()
    return _svg(fig)


def _profile(report: dict) -> str:
    """The Profile section's lines (report.profile_lines); nothing for a build not profiled."""
    lines = profile_lines(report)
    if not lines:
        return ""
    return '<section id="profile"><h2>Profile</h2><ul>' + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + \
        "</ul></section>"


def stage_seconds(stages: list[dict]) -> str:
    """Each stage's wall seconds as a bar, in build order from the top, its peak RSS beside it: where the
    build's time (and memory) went."""
    stages = stages[::-1]
    fig = _figure((6.4, 0.3 * len(stages) + 1.0))
    ax = fig.add_subplot()
    seconds = [s.get("seconds") or 0 for s in stages]
    ax.barh([stage_label(s) for s in stages], seconds, color="#55a868")
    for i, s in enumerate(stages):
        if s.get("peak_rss_mb") is not None:
            ax.text(seconds[i], i, f"  {s['peak_rss_mb']:.0f} MB", va="center", fontsize=7)
    ax.margins(x=0.2)
    ax.set_xlabel("wall seconds (peak RSS of the process tree beside each bar)")
    ax.tick_params(axis="y", labelsize=8)
    return _svg(fig)


def _stages(report: dict) -> str:
    """The Stages section; nothing for a report without stages (older ones)."""
    header, rows = stages_table(report)
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<section id="stages"><h2>Stages</h2><p>{html.escape(STAGES_HEADLINE)}.</p>'
            f'<table class="stages"><tr>{head}</tr>{body}</table><p>{html.escape(build_totals(report))}</p></section>')


def to_html(report: dict, gates: list[GateResult | dict] | None = None) -> str:
    gates = [g if isinstance(g, GateResult) else from_dict(g) for g in (report.get("gates", []) if gates is None else gates)]
    charts = [("agreement-vs-latency", "Agreement with FP32 against latency", agreement_vs_latency(report)),
              ("latency-distributions", "Latency per batch size (interleaved rounds)", latency_distributions(report))]
    if (ba := before_after(report)) is not None:
        charts.append(("before-after", "Against the baseline", ba))
    if (plan := report.get("precision_plan") or {}).get("sensitivity"):
        charts.append(("sensitivity", "INT8 sensitivity by FocalNet part", sensitivity_chart(plan["sensitivity"])))
    if report.get("stages"):
        charts.append(("stage-seconds", "Wall time per stage", stage_seconds(report["stages"])))
    if (report.get("profile") or {}).get("artifacts"):
        charts.append(("profile", "Where the time goes at batch 1 (per-op profile)", profile_chart(report["profile"])))
    base = report.get("baseline") or {}
    notes = [f"{k}: {v}" for k, v in (("reference", report["reference"]["device"]),
                                      ("eval", f"{report['eval']['name']} ({report['eval']['count']} images)"))]
    notes += [f"baseline {base.get('path')}: {n}" for n in base.get("notes", [])]
    body = [f"<h1>edgefocal build report: {html.escape(report['model']['name'])}</h1>", _table(report),
            "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"]
    if serving := serving_html(report):
        body.append(serving)
    if layers := layers_html(report):
        body.append(layers)
    if stages := _stages(report):
        body.append(stages)
    if profiled := _profile(report):
        body.append(profiled)
    if gates:
        body += ["<h2>Gates</h2>", _gates(gates)]
    body += ["<h2>Charts</h2>"] + [f'<figure class="chart" id="{cid}"><figcaption>{html.escape(cap)}</figcaption>{svg}'
                                   "</figure>" for cid, cap, svg in charts]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>edgefocal: {html.escape(report['model']['name'])}</title><style>{CSS}</style></head>"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_html(report: dict, gates: list[GateResult | dict] | None, out_dir: Path) -> Path:
    """report.html next to report.md."""
    path = Path(out_dir) / "report.html"
    path.write_text(to_html(report, gates), encoding="utf-8")
    return path
