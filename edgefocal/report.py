"""report.json, report.md and the terminal table: one row per runner, the FP32 reference first."""
from __future__ import annotations

import json
import time
from pathlib import Path

from edgefocal import layer_report, serving_report
from edgefocal.core import Row, jsonable
from edgefocal.gate import GateResult
from edgefocal.summary import speedup_text, stability_text

#: report.json's layout version. 3: rows carry the serving figures (cold_start_ms, first_inference_ms,
#: serving_memory_mb, consistency, serving_note; verify/serving.py); 2: rows are written from core.Row (same
#: keys as before); 1 (no "schema" key): the reports before it. baseline.load_report reads all three (a
#: missing figure is not compared). Within 3, a report may also carry "stages" (each stage's wall seconds and
#: peak process-tree RSS, edgefocal/stages.py) and "peak_rss_mb" (the whole build's); older reports have neither,
#: and every reader treats them as optional.
SCHEMA = 3

#: what the Stages section's figures are (edgefocal/stages.py has the detail and the limits)
STAGES_HEADLINE = ("wall time of each stage, and the peak resident memory (RSS) of the build's process tree while "
                   "it ran: the build process and the processes it starts (serving children, engine builders), "
                   "summed, sampled about every 0.2 s, with the kernel's high-water marks as a floor; "
                   "GPU memory is not in it")


def identity(loaded, data) -> dict:
    """What a build was made from: the model and the exact eval and calibration sets (a baseline of other
    inputs cannot be compared with)."""
    return {
        "model": {"name": loaded.name, "checkpoint": str(loaded.checkpoint) if loaded.checkpoint else None,
                  "checkpoint_sha256": loaded.checkpoint_sha256, "num_classes": loaded.model.num_classes,
                  "input_size": list(loaded.data_config["input_size"])},
        "eval": {"name": data.eval.name, "count": len(data.eval), "fingerprint": data.eval.fingerprint},
        "calibration": {"name": data.calibration.name, "count": len(data.calibration),
                        "fingerprint": data.calibration.fingerprint},
    }


def assemble(*, inputs: dict, recipe, exported, prune_stats: dict | None, plan, rows: list[Row],
             reference_device: str, threads: int, started: float, stages: dict | None = None,
             gmacs_per_image: float | None = None) -> dict:
    """The report of one build (report.json): what was built from what, where, and every row's figures.
    The rows stay Row objects in memory; `write` serializes them (Row.to_dict, through core.jsonable).
    `stages`: StageMeter.to_dict() (edgefocal/stages.py), kept as "stages" and "peak_rss_mb" (`stage_fields`).
    The bench section says how many warmup and timed runs each batch size got (bounded by MACs)."""
    import torch

    from edgefocal.machine import machine, machine_class

    here = machine()
    return {
        "schema": SCHEMA,
        **inputs,
        "reference": {"device": reference_device, "gpu": torch.cuda.is_available()},
        "machine": {**here, "class": machine_class(here)},
        "export": {"onnx_opset": exported.opset, "onnx_max_abs_diff_vs_torch": exported.max_abs_diff},
        "prune": prune_stats,
        "precision_plan": plan.summary() if plan is not None else None,
        "bench": {**recipe.bench.model_dump(), "threads_used": threads, "gmacs_per_image": gmacs_per_image,
                  "runs": bench_runs(recipe.bench, gmacs_per_image)},
        "rows": rows,
        "seconds": round(time.time() - started, 1),
        **stage_fields(stages),
    }


def bench_runs(bench, gmacs_per_image: float | None) -> dict[int, dict]:
    """{batch: {"warmup", "iterations"}} per runner, as verify ran them."""
    from edgefocal.verify.bench import bounded_counts

    counts = {b: bounded_counts(bench.warmup, bench.iterations, bench.rounds, b, gmacs_per_image, bench.max_gmacs)
              for b in bench.batch_sizes}
    return {b: {"warmup": w, "iterations": it} for b, (w, it) in counts.items()}


def stage_fields(stages: dict | None) -> dict:
    """report.json's "stages" (per stage: name, seconds, peak_rss_mb, and "running" for the stage the report is
    written in) and "peak_rss_mb" (the whole build's) from StageMeter.to_dict(); nothing without it. A build
    refreshes them just before writing with `report.update(stage_fields(meter.to_dict()))`."""
    if stages is None:
        return {}
    return {"stages": stages["stages"], "peak_rss_mb": stages["peak_rss_mb"]}


def stages_table(report: dict) -> tuple[list[str], list[list[str]]]:
    """The Stages section's table (report.md, report.html); no rows for a report without stages (older ones)."""
    rows = [[stage_label(s), _fmt(s.get("seconds"), ".1f"), _fmt(s.get("peak_rss_mb"), ".0f")]
            for s in report.get("stages") or []]
    return ["stage", "seconds", "peak RSS MB"], rows


def stage_label(stage: dict) -> str:
    """The stage's name; 'write (so far)' for the one still running when the report was written."""
    return stage["name"] + (" (so far)" if stage.get("running") else "")


def build_totals(report: dict) -> str:
    """'whole build: 312 s, peak RSS 2140 MB (process tree)'; the seconds alone for a report without stages."""
    text, peak = f"whole build: {_fmt(report.get('seconds'), '.0f')} s", report.get("peak_rss_mb")
    return text + ("" if peak is None else f", peak RSS {peak:.0f} MB (process tree)")


def stages_markdown(report: dict) -> list[str]:
    """report.md's Stages section; nothing for a report without stages."""
    header, rows = stages_table(report)
    if not rows:
        return []
    return (["", "## Stages", "", STAGES_HEADLINE + ".", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)] + ["| " + " | ".join(row) + " |" for row in rows]
            + ["", f"- {build_totals(report)}"]
            + [f"- {line}" for line in (evaluation_times(report), benchmark_runs(report)) if line])


def evaluation_times(report: dict) -> str:
    """'evaluation (N images): torch fp32 (reference) 41 s, openvino fp32 9 s on 500, ...'; empty before rows
    had it."""
    timed = [f"{r.label} {r.eval_seconds:.0f} s" + (f" on {r.eval_images}" if r.eval_images else "")
             for r in report["rows"] if r.eval_seconds is not None]
    return f"evaluation ({report['eval']['count']} images): " + ", ".join(timed) if timed else ""


def benchmark_runs(report: dict) -> str:
    """'benchmark runs per runner: batch 1: 10 warmup + 50 timed, batch 8: 1 + 10 (bounded by 4.4 GMACs an
    image)'; empty for a report without them."""
    bench = report.get("bench") or {}
    runs = bench.get("runs")
    if not runs:
        return ""
    parts = [f"batch {b}: {r['warmup']} warmup + {r['iterations']} timed" for b, r in runs.items()]
    gmacs = bench.get("gmacs_per_image")
    return ("benchmark runs per runner: " + ", ".join(parts)
            + (f" (bench.max_gmacs {bench['max_gmacs']:g} at {gmacs:g} GMACs an image)" if gmacs and bench.get("max_gmacs") else ""))


def _fmt(v, spec: str, missing: str = "–") -> str:
    return missing if v is None else format(v, spec)


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    batches = report["bench"]["batch_sizes"]
    header = ["artifact", "top-1", "drop pt", "agree", "cosine"]
    for b in batches:
        header += [f"b{b} p50 ms", f"b{b} p99 ms", f"b{b} ×ref", f"b{b} stability"]
    header.append("MB")
    rows = []
    for r in report["rows"]:
        cells = [
            r.label + (" *" if r.requested else ""),
            _fmt(r.top1, ".2%"),
            _fmt(r.top1_drop, "+.2f"),
            _fmt(r.agreement, ".2%"),
            _fmt(r.cosine, ".4f"),
        ]
        for b in batches:
            lat = (r.latency_ms or {}).get(b)
            timed = bool(r.latency_ms)
            cells += [_fmt(lat and lat["p50"], ".2f"), _fmt(lat and lat["p99"], ".2f"),
                      speedup_text(r, b) if timed else "–", stability_text(r, b) if timed else "–"]
        cells.append(_fmt(r.size_bytes / 1e6 if r.size_bytes else None, ".2f"))
        rows.append(cells)
    return header, rows


def notes(report: dict) -> list[str]:
    out = [f"reference: {report['reference']['device']}; eval: {report['eval']['name']} "
           f"({report['eval']['count']} images); * = requested artifact"]
    p = report.get("prune")
    if p:
        out.append(f"pruning {p.get('method')}: MACs {p.get('macs_before', 0) / 1e6:.2f}M → {p.get('macs_after', 0) / 1e6:.2f}M, "
                   f"params {p.get('params_before', 0) / 1e6:.3f}M → {p.get('params_after', 0) / 1e6:.3f}M; "
                   "'torch fp32 (pruned)' shows what pruning cost, the artifacts' rows what pruning and INT8 cost "
                   "together (## Pruning splits them)")
    for r in report["rows"]:
        if r.skipped:
            out.append(f"{r.label}: not run here — {r.skipped}")
            if r.facts.get("engine_command"):
                out.append(f"build the engine on the device with: {r.facts['engine_command']}")
        if r.no_latency:
            out.append(f"{r.label}: latency not measured — {r.no_latency}")
        if r.proxy_for:
            out.append(f"{r.label}: accuracy measured by {r.device or 'a proxy runtime'}, standing in for the "
                       f"{r.proxy_for} (not built here)" if any(x.skipped for x in report["rows"])
                       else f"{r.label}: measured by {r.device}, for comparison with the {r.proxy_for}")
        for line in r.notes:
            out.append(f"{r.label}: {line}")
    return out


def to_markdown(report: dict, gates: list[GateResult]) -> str:
    header, rows = table_rows(report)
    lines = [f"# edgefocal build report: {report['model']['name']}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    lines += [""] + [f"- {n}" for n in notes(report)]
    if report.get("prune"):
        p = report["prune"]
        lines += ["", "## Pruning", "", f"- method {p.get('method')}, MACs {p.get('macs_before')} → {p.get('macs_after')}, "
                  f"params {p.get('params_before')} → {p.get('params_after')}"]
        if p.get("stage_weights"):
            lines.append(f"- stage weights {p['stage_weights']} (channel fraction per stage; set `prune.stage_weights` "
                         "to these to prune the same channels in a rebuild)")
        lines += recovery_line(p.get("recover"))
        lines += pruning_shares(report)
    lines += serving_report.markdown(report)
    lines += layer_report.markdown(report)
    lines += stages_markdown(report)
    if profiled := profile_lines(report):
        lines += ["", "## Profile", ""] + [f"- {line}" for line in profiled]
    lines += precision_section(report.get("precision_plan"))
    if gates:
        lines += ["", "## Gates", ""] + [f"- {g.describe()}" for g in gates]
    return "\n".join(lines) + "\n"


def profile_lines(report: dict) -> list[str]:
    """`bench.profile`'s summary, a line per requested artifact: how much of its measured batch-1 time the profile
    puts on named FocalNet parts, and the MAC ops' share and rate (report.md, report.html)."""
    prof = report.get("profile") or {}
    out = []
    for a in prof.get("artifacts", []):
        macs = a["mac_ops"]
        rate = "" if macs.get("gmac_per_s") is None else f" at {macs['gmac_per_s']:.1f} GMAC/s"
        load = "" if a.get("foreign_load") is None else f"; other processes took {a['foreign_load']:.0%} of the CPUs"
        out.append(f"{a['label']}: {a['measured_ms']:.3f} ms at batch {a['batch']} (profiler total "
                   f"{a['profiled_ms']:.3f} ms), {a['attributed_share']:.1%} of it on named FocalNet parts; MAC ops "
                   f"{macs['share']:.1%}{rate}, other ops {a['other_ops']['share']:.1%}{load}")
    out += [f"{s['label']}: not profiled — {s['reason']}" for s in prof.get("not_profiled", [])]
    if prof.get("artifacts"):
        out.append(f"every executed op, its kernel and precision: {prof['file']}")
    return out


def recovery_line(recover: dict | None) -> list[str]:
    """report.md's account of the distillation after pruning (prune/recover.py), or why it was skipped."""
    if not recover:
        return []
    if not recover.get("steps"):
        return [f"- recovery skipped: {recover.get('skipped')}"]
    outcome = "kept" if recover["kept"] else "worse, so the un-distilled weights were kept"
    images = f"{recover['images']} held-out images" if recover.get("held_out") else "the calibration images"
    return [f"- recovery: {recover['steps']} distillation steps on {images}, logit MSE to the unpruned model on "
            f"{recover['check_images']} {'others' if recover.get('held_out') else 'of them'} {recover['mse_before']:.4f} → "
            f"{recover['mse_after']:.4f} ({outcome})"]


def pruning_shares(report: dict) -> list[str]:
    """report.md's three costs of a pruned build: pruning's (pruned FP32 vs the reference), then per requested
    artifact INT8's on top (vs the pruned FP32 model) and the total (vs the reference)."""
    def cost(drop, agree) -> str:
        return f"top-1 {_fmt(drop, '+.2f')} pt, agreement {_fmt(agree, '.2%')}"

    from edgefocal.verify.compare import PRUNED

    pruned = next((r for r in report["rows"] if r.label == PRUNED), None)
    if pruned is None:
        return []
    lines = [f"- what pruning cost (pruned FP32 vs the reference): {cost(pruned.top1_drop, pruned.agreement)}"]
    for r in report["rows"]:
        if r.requested and r.agreement_vs_pruned is not None:
            lines.append(f"- {r.label}: INT8 on top (vs the pruned FP32 model) {cost(r.top1_drop_vs_pruned, r.agreement_vs_pruned)}; "
                         f"total (vs the reference) {cost(r.top1_drop, r.agreement)}")
    return lines


def precision_section(plan: dict | None, top: int = 10) -> list[str]:
    """report.md's precision plan: the policy, the parts kept float and why, the mixed-precision search's
    selection and validation agreement, and the costliest parts."""
    if not plan:
        return []
    lines = ["", "## Precision plan", "", f"- policy `{plan['policy']}`; float weighted modules: "
             + (", ".join(f"`{m}`" for m in plan["float_modules"]) or "none")]
    search = plan.get("mixed_precision")
    if search:
        lines.append(f"- mixed precision on {', '.join(search['measured_on'])}: target {search['target_agreement']:.4f}; "
                     f"kept float {', '.join(f'`{m}`' for m in search['chosen']) or 'nothing'}; selection agreement "
                     f"{search['selection'].get('agreement', 0):.4f} ({search['selection']['images']} images), validation "
                     f"{search['validation']['agreement']:.4f} ({search['validation']['images']} other images); "
                     f"{_ranking_text(search['selection'])}; {search['seconds']:.0f} s")
        lines += [f"- **search warning:** {w}" for w in search.get("warnings", [])]
    if plan.get("sensitivity"):
        lines += ["", "| part | module | agreement cost (pt) | KL cost | latency share |", "|---|---|---|---|---|"]
        for r in plan["sensitivity"][:top]:
            share = "–" if r.get("latency_share") is None else f"{r['latency_share']:.2%}"
            lines.append(f"| {r['label']} | `{r['module']}` | {r['agreement_cost'] * 100:+.2f} | {r['kl_cost']:.2e} | {share} |")
    return lines


def _ranking_text(selection: dict) -> str:
    scanned = selection.get("scan_images", selection["images"])
    by = f" by {', '.join(selection['ranked_on'])}" if selection.get("ranked_on") else ""
    return f"parts ranked{by} on {scanned} images" if scanned else "no ranking needed (all INT8 reached the target)"


def render(report: dict, gates: list[GateResult], console) -> None:
    from rich.table import Table

    header, rows = table_rows(report)
    table = Table(title=f"edgefocal: {report['model']['name']}", show_lines=False)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for n in notes(report):
        console.print(f"[dim]{n}[/dim]")
    for g in gates:
        console.print(("[green]" if g.passed else "[bold red]") + g.describe() + "[/]")


def write(report: dict, gates: list[GateResult], out: Path) -> None:
    data = dict(report, gates=[g.__dict__ for g in gates])
    (out / "report.json").write_text(json.dumps(jsonable(data), indent=2) + "\n")
    (out / "report.md").write_text(to_markdown(report, gates))
