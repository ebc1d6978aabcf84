"""`edgefocal inspect`: what a build output holds, read back from its manifest.json and report.json — the
artifacts with precision, size and how they scored, the gates, the preprocessing an application must
reproduce, the class names, and the command that builds the TensorRT engine on the device."""
from __future__ import annotations

import json
from pathlib import Path

from edgefocal.errors import BadInput


def read(output: Path) -> tuple[dict, dict | None]:
    """(manifest, report) of a build output directory; the report may be absent (copied artifacts only)."""
    output = Path(output)
    if output.is_file():
        output = output.parent
    path = output / "manifest.json"
    if not path.is_file():
        raise BadInput(f"{output} holds no manifest.json", hint="pass the output directory of an edgefocal build")
    try:
        manifest = json.loads(path.read_text())
        report = json.loads((output / "report.json").read_text()) if (output / "report.json").is_file() else None
    except json.JSONDecodeError as e:
        raise BadInput(f"{output}: manifest.json or report.json is not JSON ({e})", hint="rebuild the output") from e
    return manifest, report


def summary(manifest: dict, report: dict | None) -> dict:
    """The facts `inspect` prints, as one dict (`inspect --json`)."""
    rows = {r.get("path"): r for r in (report or {}).get("rows", []) if r.get("path")}
    artifacts = []
    for a in manifest.get("artifacts", []):
        row = rows.get(a["path"], {})
        latency = (row.get("latency_ms") or {})
        first = latency[min(latency, key=int)] if latency else None
        artifacts.append({**a, "top1": row.get("top1"), "agreement": row.get("agreement"),
                          "p50_ms": first and first.get("p50"), "skipped": row.get("skipped")})
    for r in (report or {}).get("rows", []):  # artifacts the build could not write here (a skipped engine)
        if r.get("path") and r["path"] not in {a["path"] for a in artifacts} and r.get("skipped"):
            artifacts.append({"path": r["path"], "target": r["target"], "precision": r["precision"],
                              "label": r["label"], "size_bytes": None, "sha256": None, "skipped": r["skipped"]})
    engine = sorted({r["engine_command"] for r in (report or {}).get("rows", []) if r.get("engine_command")})
    return {"model": manifest.get("model", {}), "preprocessing": manifest.get("preprocessing"),
            "class_names": manifest.get("class_names"), "artifacts": artifacts,
            "gates": (report or {}).get("gates", []), "engine_commands": engine,
            "created": manifest.get("created"), "packages": manifest.get("packages", {})}


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _artifact_lines(artifacts: list[dict]) -> list[str]:
    lines = ["artifacts:", f"  {'path':<40} {'target':<12} {'precision':<9} {'MB':>7} {'top-1':>7} {'agree':>7} "
             f"{'p50 ms':>7}"]
    for a in artifacts:
        size = a["size_bytes"] / 1e6 if a.get("size_bytes") else None
        line = (f"  {a['path']:<40} {a['target']:<12} {a['precision']:<9} {_fmt(size, '.2f'):>7} "
                f"{_fmt(a.get('top1'), '.2%'):>7} {_fmt(a.get('agreement'), '.2%'):>7} {_fmt(a.get('p50_ms'), '.2f'):>7}")
        lines.append(line + (f"  (not built here: {a['skipped']})" if a.get("skipped") else ""))
    return lines


def _gate_lines(gates: list[dict]) -> list[str]:
    if not gates:
        return ["gates: none set"]
    return ["gates:"] + [f"  {g.get('status') or ('passed' if g['passed'] else 'failed')}: {g['gate']} for "
                         f"{g['artifact']} = {_fmt(g.get('value'), '.4g')} (bound {g['bound']})" for g in gates]


def _preprocessing_lines(p: dict | None) -> list[str]:
    if not p:
        return ["preprocessing: not recorded (a build by an older edgefocal)"]
    return [f"preprocessing ({p['layout']} {p['dtype']}, {p['channel_order']}):",
            f"  input_size {p['input_size']}  mean {p['mean']}  std {p['std']}",
            f"  interpolation {p['interpolation']}  crop_pct {p['crop_pct']}  crop_mode {p['crop_mode']}  "
            f"resize to {p['resize_to']}",
            f"  {p['formula']}"] + [f"  step: {s}" for s in p["steps"]]


def to_text(info: dict) -> str:
    """The summary as `edgefocal inspect` prints it."""
    m = info["model"]
    checkpoint = m.get("checkpoint") or "(none)"
    sha = f"  sha256 {m['checkpoint_sha256'][:12]}…" if m.get("checkpoint_sha256") else ""
    names = info.get("class_names") or []
    lines = [f"model: {m.get('name')}  checkpoint: {checkpoint}{sha}",
             f"built: {info.get('created')} with " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()), ""]
    lines += _artifact_lines(info["artifacts"]) + [""] + _gate_lines(info["gates"]) + [""]
    lines += _preprocessing_lines(info["preprocessing"]) + [""]
    lines.append(f"classes ({len(names)}): " + ", ".join(f"{i} {n}" for i, n in enumerate(names)))
    for command in info["engine_commands"]:
        lines += ["", "build the TensorRT engine on the device with:", f"  {command}"]
    return "\n".join(lines)
