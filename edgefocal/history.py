"""`edgefocal history DIR`: every accepted build's figures as a trend, and drift that no single gate sees.

The regression gates compare a build with the last accepted one only, so a figure may lose 0.15 pt in every
build and pass each time. This module reads the last accepted reports (report.json files: DIR/report.json,
DIR/*.json, DIR/*/report.json), orders them by build date, charts each requested artifact's figures over
them (history.md, history.html: matplotlib inline SVG through report_html's helpers, offline), and flags
drift: over the last `window` builds, a figure whose move from the oldest to the newest exceeds the bound
its regression gate uses, while every step between consecutive builds stayed within it. Each figure is
measured for drift as its gate measures it: agreement and top-1 in points, speedup as the same-run ratio to
the reference, size in bytes, cold start and serving memory as the ratio to the same run's FP32 reference
(gate_serving.py); the charts show the figures themselves (ms, MB).

report.json records no build date and no commit: the date is manifest.json's `created` where a manifest
lies beside the report, else the file's modification time (said in the notes); a build is named by its
folder (CI names each folder after its commit). Each artifact's section and chart in history.html has an id
(anchors()) with data-artifact and data-figure beside it: `edgefocal matrix --history` links to them."""
from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgefocal.baseline import check_same_inputs, latency_comparable, load_report
from edgefocal.core import Row
from edgefocal.errors import BadInput
from edgefocal.recipe import Gates
from edgefocal.report_html import CSS, _figure, _svg
from edgefocal.summary import by_batch

DEFAULT_WINDOW = 5


@dataclass(frozen=True)
class Figure:
    """One charted figure. `change` says which way is worse: "points" (a % figure that may lose `bound`
    points), "loss" (may lose `bound` of its value), "growth" (may grow by `bound` of its value). `timed`:
    a time, compared only between builds whose latency is comparable (baseline.py); `ratio`: checked for
    drift as the ratio to the same run's FP32 reference, as its gate compares it (gate_serving.py)."""

    key: str
    title: str
    unit: str
    gate: str  # the Gates field whose bound applies
    change: str
    timed: bool = False
    ratio: bool = False


FIGURES = (
    Figure("agreement", "agreement with FP32", "%", "max_agreement_regression", "points"),
    Figure("top1", "top-1", "%", "max_top1_regression", "points"),
    Figure("speedup", "speedup vs reference, smallest batch", "×", "max_speedup_regression", "loss", True),
    Figure("cold_start", "cold start", "ms", "max_cold_start_regression", "growth", True, True),
    Figure("serving_memory", "serving memory at batch 1", "MB", "max_memory_growth", "growth", False, True),
    Figure("size", "size", "MB", "max_size_growth", "growth"),
)


@dataclass
class Build:
    """One accepted build: its report (rows as Row), when it was built and how that is known."""

    path: Path  # the report.json
    name: str  # its folder (or file stem)
    report: dict
    date: dt.datetime
    dated_by: str  # "manifest.json created" or "file mtime"

    @property
    def label(self) -> str:
        return f"{self.name} {self.date:%Y-%m-%d %H:%M}"

    def row(self, label: str) -> Row | None:
        return next((r for r in self.report["rows"] if r.label == label and not r.skipped), None)

    def reference(self, row: Row) -> Row | None:
        """The same-run FP32 row the serving ratios are taken against (as baseline._reference)."""
        from edgefocal.verify.compare import REFERENCE

        return self.row(row.speedup_against or REFERENCE)


@dataclass
class Drift:
    artifact: str
    figure: Figure
    first: Build
    last: Build
    old: float  # the measure drift is checked on: the figure, or its ratio to the FP32 reference
    new: float
    moved: float  # in the figure's worse direction: points, or a fraction of the old value
    bound: float
    largest_step: float
    builds: int

    def describe(self) -> str:
        f = self.figure
        amount = _amount(f, self.moved)
        return (f"drift: {self.artifact} {f.key}: {_measure(self.old, f)} -> {_measure(self.new, f)} "
                f"({amount} worse over {self.builds} builds, {self.first.name} -> {self.last.name}); "
                f"every step within the bound {_amount(f, self.bound)} (largest {_amount(f, self.largest_step)}), "
                f"the whole move beyond it ({f.gate})")


@dataclass
class History:
    directory: Path
    builds: list[Build]
    window: int
    gates: Gates
    artifacts: list[str] = field(default_factory=list)
    drifts: list[Drift] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 no drift, 1 drift (bad input raises BadInput: 2)."""
        return 1 if self.drifts else 0

    @property
    def in_window(self) -> list[Build]:
        return self.builds[-self.window:]


def _amount(fig: Figure, v: float) -> str:
    return f"{v:.2f} pt" if fig.change == "points" else f"{v:.1%}"


def _fmt(v: float | None, fig: Figure) -> str:
    if v is None:
        return "–"
    return {"%": f"{v:.2f}%", "×": f"{v:.3g}x", "ms": f"{v:.1f} ms", "MB": f"{v:.3f} MB"}[fig.unit]


def _measure(v: float, fig: Figure) -> str:
    return f"{v:.3g}x the FP32 reference's" if fig.ratio else _fmt(v, fig)


def find_reports(directory: Path) -> list[Path]:
    """DIR/report.json, the other DIR/*.json (not a manifest) and DIR/*/report.json."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput(f"{directory} is not a directory",
                       hint="pass the directory holding the accepted report.json files")
    files = [p for p in sorted(directory.glob("*.json")) if p.name != "manifest.json"]
    files += sorted(directory.glob("*/report.json"))
    if not files:
        raise BadInput(f"{directory} holds no report.json (looked for DIR/*.json and DIR/*/report.json)",
                       hint="pass the directory the accepted builds' report.json files were kept in")
    return files


def _build_date(file: Path) -> tuple[dt.datetime, str]:
    """manifest.json's `created` beside a report.json, else the file's mtime."""
    manifest = file.parent / "manifest.json"
    if file.name == "report.json" and manifest.is_file():
        try:
            created = json.loads(manifest.read_text()).get("created")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise BadInput(f"{manifest} is not valid JSON ({e})", hint="use the manifest.json a build wrote") from None
        try:
            date = dt.datetime.fromisoformat(str(created))
            return (date if date.tzinfo else date.replace(tzinfo=dt.timezone.utc)), "manifest.json created"
        except ValueError:
            pass
    return dt.datetime.fromtimestamp(file.stat().st_mtime, dt.timezone.utc), "file mtime"


def read_build(file: Path) -> Build:
    report = load_report(file)
    date, dated_by = _build_date(file)
    name = file.parent.name if file.name == "report.json" else file.stem  # DIR/report.json: DIR's name
    return Build(file, name, report, date, dated_by)


def load_builds(directory: Path) -> tuple[list[Build], list[str]]:
    """The builds in date order (then by name), each checked to be of the newest one's model, eval set and
    calibration set; and notes on how they were dated and matched."""
    directory = Path(directory)
    builds = sorted((read_build(f) for f in find_reports(directory)), key=lambda b: (b.date, b.name))
    newest, notes = builds[-1], []
    for b in builds[:-1]:
        for note in check_same_inputs(b.report, newest.report, where=str(b.path)):
            if note not in notes:
                notes.append(note)
    undated = [b.name for b in builds if b.dated_by == "file mtime"]
    if undated:
        notes.append(f"{len(undated)} of {len(builds)} reports record no build date (no manifest.json with "
                     f"`created` beside them): ordered by the file's modification time ({', '.join(undated)})")
    return builds, notes


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _extra(row: Row, name: str):
    """A figure that may be a Row field (newer edgefocal) or a fact (read from a newer report by an older
    Row), or missing."""
    v = getattr(row, name, None)
    return row.facts.get(name) if v is None else v


def _smallest(d) -> object:
    if not isinstance(d, dict) or not d:
        return d
    return d[min(d, key=lambda k: int(k))]


def value(row: Row | None, fig: Figure, batch=None) -> float | None:
    """The figure of one row in the unit charted (agreement and top-1 in %, size in MB)."""
    if row is None:
        return None
    if fig.key in ("agreement", "top1"):
        v = _number(getattr(row, fig.key))
        return None if v is None else v * 100.0
    if fig.key == "speedup":
        return None if batch is None else _number(by_batch(row.speedup_vs_reference, batch))
    if fig.key == "cold_start":
        return _number(_smallest(_extra(row, "cold_start_ms")))
    if fig.key == "serving_memory":
        memory = _extra(row, "serving_memory_mb")
        return _number(by_batch(memory, 1)) if isinstance(memory, dict) else None
    size = _number(row.size_bytes)
    return None if size is None else size / 1e6


def measure(build: Build, label: str, fig: Figure, batch=None) -> float | None:
    """What drift is checked on: the figure, or for a ratio figure its ratio to the same run's reference."""
    row = build.row(label)
    v = value(row, fig, batch)
    if v is None or not fig.ratio:
        return v
    ref = value(build.reference(row), fig, batch) if row is not None else None
    return v / ref if ref else None


def speedup_batch(builds: list[Build], label: str):
    """The smallest batch of the newest build that has the artifact's speedup: charted for every build."""
    for b in reversed(builds):
        row = b.row(label)
        if row is not None and row.speedup_vs_reference:
            return min((int(k) for k in row.speedup_vs_reference))
    return None


def series(builds: list[Build], label: str, fig: Figure) -> list[float | None]:
    batch = speedup_batch(builds, label) if fig.key == "speedup" else None
    return [value(b.row(label), fig, batch) for b in builds]


def worse(fig: Figure, old: float, new: float) -> float | None:
    """How much worse `new` is than `old`: points lost, or the fraction lost or grown; None if undefined."""
    if fig.change == "points":
        return old - new
    if old <= 0:
        return None
    return 1.0 - new / old if fig.change == "loss" else new / old - 1.0


def threshold(fig: Figure, first: float, bound: float) -> float:
    """The value at which the move from `first` crosses the bound (the dashed line on the charts)."""
    if fig.change == "points":
        return first - bound
    return first * (1.0 - bound) if fig.change == "loss" else first * (1.0 + bound)


def requested_artifacts(builds: list[Build]) -> list[str]:
    """Labels of requested artifacts, the newest build's first, then ones only older builds had."""
    out: list[str] = []
    for b in reversed(builds):
        out += [r.label for r in b.report["rows"] if r.requested and r.label not in out]
    return out


def _check_one(label: str, fig: Figure, window: list[Build], bound: float) -> Drift | str | None:
    """Drift of one figure over the window, a note when one step alone broke the bound, else None.
    Builds without the figure are passed over; the newest build must have it."""
    batch = speedup_batch(window, label)
    points = [(b, v) for b in window if (v := measure(b, label, fig, batch)) is not None]
    if len(points) < 2 or points[-1][0] is not window[-1]:
        return None
    (first, old), (last, new) = points[0], points[-1]
    moved = worse(fig, old, new)
    if moved is None or moved <= bound:
        return None
    steps = [worse(fig, a, b) for (_, a), (_, b) in zip(points, points[1:])]
    if any(s is None or s > bound for s in steps):
        big = max((s for s in steps if s is not None), default=moved)
        return (f"{label} {fig.key}: {_measure(old, fig)} -> {_measure(new, fig)} over the last {len(points)} builds, "
                f"with one step of {_amount(fig, big)} beyond the bound {_amount(fig, bound)}: a regression of "
                "one build, not drift")
    return Drift(label, fig, first, last, old, new, moved, bound, max(s for s in steps if s is not None), len(points))


def check_drift(history: History) -> None:
    """Fill history.drifts and notes: every requested artifact's figures over the window."""
    window = history.in_window
    if len(window) < 2:
        history.notes.append(f"{len(history.builds)} build: no trend yet, nothing to check for drift")
        return
    comparable = [b for b in window if latency_comparable(b.report, window[-1].report)[0]]
    why = next((w for b in window if (w := latency_comparable(b.report, window[-1].report)[1])), "")
    for fig in FIGURES:
        bound = getattr(history.gates, fig.gate, None)
        has_data = any(v is not None for label in history.artifacts for v in series(window, label, fig))
        if not has_data:
            continue
        if bound is None:
            history.notes.append(f"{fig.key}: no bound ({fig.gate} is off or not a gate of this edgefocal): "
                                 "charted, not checked for drift")
            continue
        builds = comparable if fig.timed else window
        if fig.timed and len(comparable) < len(window):
            history.notes.append(f"{fig.key}: checked over the {len(comparable)} builds of the window whose "
                                 f"latency compares with the newest ({why or 'another machine class'})")
        if len(builds) < 2:
            continue
        for label in history.artifacts:
            found = _check_one(label, fig, builds, bound)
            if isinstance(found, Drift):
                history.drifts.append(found)
            elif found:
                history.notes.append(found)


def make_history(directory: Path, window: int = DEFAULT_WINDOW, gates: Gates | None = None) -> History:
    """Read, order, check: what `edgefocal history` writes and prints."""
    if window < 2:
        raise BadInput(f"--window {window}: drift needs at least 2 builds", hint="use --window 2 or more")
    builds, notes = load_builds(directory)
    history = History(Path(directory), builds, window, gates or Gates(), notes=notes)
    history.artifacts = requested_artifacts(builds)
    if not history.artifacts:
        raise BadInput(f"the reports in {directory} have no requested artifact", hint="use the reports a build wrote")
    check_drift(history)
    return history


def _heading(history: History) -> list[str]:
    builds, window = history.builds, history.in_window
    model = builds[-1].report.get("model", {}).get("name", "?")
    return [f"edgefocal history: {model}",
            f"{len(builds)} accepted builds in {history.directory}, from {builds[0].label} to {builds[-1].label}; "
            f"drift checked over the last {len(window)} (--window {history.window}) against the regression "
            "gates' bounds"]


def figure_title(history: History, label: str, fig: Figure) -> str:
    if fig.key == "speedup" and (batch := speedup_batch(history.builds, label)) is not None:
        return f"speedup vs reference at batch {batch}"
    return fig.title


def _table(history: History, label: str) -> tuple[list[str], list[list[str]]]:
    """One line per build, one column per figure with data, in the unit of the column's header."""
    figs = [f for f in FIGURES if any(v is not None for v in series(history.builds, label, f))]
    head = ["build", "date"] + [f"{figure_title(history, label, f)} ({f.unit})" for f in figs]
    cols = [series(history.builds, label, f) for f in figs]
    digits = {"%": 2, "×": 3, "ms": 1, "MB": 3}
    rows = [[b.name, f"{b.date:%Y-%m-%d %H:%M}"] + ["–" if c[i] is None else f"{c[i]:.{digits[f.unit]}f}"
                                                    for c, f in zip(cols, figs)]
            for i, b in enumerate(history.builds)]
    return head, rows


def to_markdown(history: History) -> str:
    title, line = _heading(history)
    lines = [f"# {title}", "", line, "", "## Drift", ""]
    lines += [f"- {d.describe()}" for d in history.drifts] or ["- none"]
    if history.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in history.notes]
    for label in history.artifacts:
        head, rows = _table(history, label)
        lines += ["", f"## {label}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def chart(history: History, label: str, fig: Figure) -> str | None:
    """One figure of one artifact over the builds: the window shaded, the drift bound from the window's
    first value dashed, red when it drifted; x ticks name each build and its date."""
    values = series(history.builds, label, fig)
    if all(v is None for v in values):
        return None
    n, k = len(values), len(history.in_window)
    drifted = any(d.artifact == label and d.figure == fig for d in history.drifts)
    f = _figure((4.8, 2.8))
    ax = f.add_subplot()
    ax.axvspan(n - k - 0.5, n - 0.5, color="#eef2f7", zorder=0, label=f"last {k} (window)")
    ax.plot(range(n), [math.nan if v is None else v for v in values], marker="o", color="C0")
    first = next((v for v in values[n - k:] if v is not None), None)
    bound = getattr(history.gates, fig.gate, None)
    if first is not None and bound is not None and not fig.ratio:  # a ratio's bound is not a line in ms/MB
        ax.axhline(threshold(fig, first, bound), color="#d62728", ls="--", lw=1, label="drift bound")
        ax.legend(fontsize=6, loc="best")
    ax.set_xticks(range(n), [f"{b.name}\n{b.date:%m-%d %H:%M}" for b in history.builds], fontsize=6,
                  rotation=30, ha="right")
    ax.set_ylabel(fig.unit)
    ax.margins(y=0.25)
    ax.grid(alpha=0.3)
    if drifted:  # the caption names the figure; the chart itself says drift where someone copies it alone
        ax.set_title(f"{figure_title(history, label, fig)}: drift", fontsize=9, color="#d62728")
    f.tight_layout()
    return _svg(f)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "artifact"


def anchors(history: History) -> dict[tuple[str, str | None], str]:
    """The page's ids: (artifact, None) for an artifact's section, (artifact, figure key) for a chart, e.g.
    "openvino-int8" and "openvino-int8-agreement"; unique where two labels make the same slug. The page
    also carries data-artifact and data-figure beside each id, so the matrix links by reading the page."""
    ids: dict[tuple[str, str | None], str] = {}
    taken: set[str] = set()

    def unique(base: str) -> str:
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        return name

    for label in history.artifacts:
        slug = unique(_slug(label))
        ids[(label, None)] = slug
        ids.update({(label, fig.key): unique(f"{slug}-{fig.key}") for fig in FIGURES})
    return ids


def _html_table(history: History, label: str) -> str:
    head, rows = _table(history, label)
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join(out) + "</table>"


def to_html(history: History) -> str:
    title, line = _heading(history)
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(line)}</p>", "<h2>Drift</h2>"]
    drift = [d.describe() for d in history.drifts] or ["none"]
    body.append('<ul class="drift">' + "".join(f"<li>{html.escape(d)}</li>" for d in drift) + "</ul>")
    if history.notes:
        body += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in history.notes) + "</ul>"]
    ids = anchors(history)
    for label in history.artifacts:
        art = html.escape(label, quote=True)
        body += [f'<h2 id="{ids[(label, None)]}" data-artifact="{art}">{html.escape(label)}</h2>',
                 _html_table(history, label)]
        drifted = {d.figure.key for d in history.drifts if d.artifact == label}
        for fig in FIGURES:
            if (svg := chart(history, label, fig)) is not None:
                caption = f"{label}: {figure_title(history, label, fig)}" + (" — drift" if fig.key in drifted else "")
                caption += " (drift checked on the ratio to the FP32 reference)" if fig.ratio else ""
                body.append(f'<figure class="chart" id="{ids[(label, fig.key)]}" data-artifact="{art}" '
                            f'data-figure="{fig.key}"><figcaption>{html.escape(caption)}</figcaption>{svg}</figure>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")


def write(history: History, out: Path) -> tuple[Path, Path]:
    """OUT/history.md and OUT/history.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md, page = out / "history.md", out / "history.html"
    md.write_text(to_markdown(history), encoding="utf-8")
    page.write_text(to_html(history), encoding="utf-8")
    return md, page
