"""`edgefocal matrix RECIPE...`: many builds (models × targets × precisions) in one command, with one
combined table (markdown + HTML), one matrix.json and one JUnit file — MMDeploy's regression sheet,
but each entry gated against its own FP32 reference and, with a baseline directory, its own baseline.

A matrix runs for an hour on a CI runner and gets cancelled, so it resumes: each finished entry leaves
a done marker (`.done/NAME-KEY.json`, holding its report and gates) whose KEY hashes the validated
recipe and the edgefocal version; a rerun skips entries whose marker matches and rebuilds the rest. A
changed recipe changes its key, so it is rebuilt, never served stale. A rerun with every entry finished
rebuilds nothing and only rewrites the outputs: that is how CI links matrix.html to the trend charts that
`edgefocal history` made from this run's reports (`--history DIR`, matrix_report.py)."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgefocal.errors import BadInput, EdgefocalError
from edgefocal.recipe import Recipe, load_recipe

DONE = ".done"


@dataclass
class Entry:
    name: str  # unique within the matrix: the recipe's file stem (its folder's name too, where stems repeat)
    recipe_path: Path
    recipe: Recipe
    key: str
    record: dict = field(default_factory=dict)  # what the done marker holds, once finished
    resumed: bool = False


@dataclass
class MatrixResult:
    out_dir: Path
    entries: list[Entry]
    history: Path | None = None  # DIR/<entry>/history.html: matrix.html links to their trend charts

    @property
    def exit_code(self) -> int:
        """2 if an entry could not be built (bad input), else 1 if any gate failed, else 0."""
        if any(e.record.get("error") for e in self.entries):
            return 2
        return 0 if all(e.record.get("passed") for e in self.entries) else 1


def recipe_files(paths: list[Path]) -> list[Path]:
    """Recipe files, directories expanded to their *.yaml/*.yml in name order."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise BadInput(f"{p} holds no *.yaml recipes", hint="pass recipe files or a directory of them")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise BadInput(f"recipe {p} does not exist", hint="pass recipe files or a directory of them")
    if not files:
        raise BadInput("the matrix has no recipes", hint="edgefocal matrix recipes/*.yaml")
    return list(dict.fromkeys(f.resolve() for f in files))


def entry_key(recipe: Recipe) -> str:
    """What decides whether a finished entry can be reused: the validated recipe (output and baseline
    excluded: the matrix sets them) and the edgefocal version."""
    from edgefocal._version import __version__

    data = recipe.model_dump(mode="json", exclude={"output": True, "gates": {"baseline"}})
    blob = json.dumps({"recipe": data, "edgefocal": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan(paths: list[Path], out_dir: Path, baseline_dir: Path | None, overrides: dict | None = None) -> list[Entry]:
    """Every recipe loaded and validated before anything is built (a typo in the tenth recipe fails now,
    not after nine builds); `overrides` (dotted recipe fields, as the CLI's build flags make them, e.g.
    {"tensorrt.require_engine": True}) apply to every entry; outputs go to OUT/NAME, baselines come from
    BASELINE/NAME."""
    files = recipe_files(paths)
    stems = [f.stem for f in files]
    entries = []
    for f in files:
        name = f.stem if stems.count(f.stem) == 1 else f"{f.parent.name}-{f.stem}"
        recipe = load_recipe(f, overrides)
        update = {"output": out_dir / name}
        gates = recipe.gates
        if baseline_dir is not None:
            base = Path(baseline_dir) / name
            gates = gates.model_copy(update={"baseline": base if base.exists() else None})
        recipe = recipe.model_copy(update={**update, "gates": gates})
        entries.append(Entry(name, f, recipe, entry_key(recipe)))
    return entries


def _marker(out_dir: Path, entry: Entry) -> Path:
    return out_dir / DONE / f"{entry.name}-{entry.key}.json"


def _plain(obj):
    """json.dumps' fallback for what a report holds in memory: rows (core.Row), paths and numpy scalars."""
    if callable(getattr(obj, "to_dict", None)):
        return obj.to_dict()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def as_json(obj):
    """The report as report.json holds it (string batch keys, plain numbers, rows as dicts): markers and
    baselines compare like with like."""
    return json.loads(json.dumps(obj, default=_plain))


def _write_marker(out_dir: Path, entry: Entry, record: dict) -> None:
    """Atomically (a kill while writing leaves no marker, so the entry is rebuilt, never half-read); a
    marker of the same entry under an older key is removed."""
    path = _marker(out_dir, entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=_plain) + "\n")
    os.replace(tmp, path)
    for old in path.parent.glob(f"{entry.name}-*.json"):
        if old != path and len(old.stem) == len(path.stem):
            old.unlink()


def _typed(record: dict) -> dict:
    """A record with its report's rows as core.Row (a marker holds them as report.json does)."""
    from edgefocal.baseline import with_rows

    if isinstance((record.get("report") or {}).get("rows"), list):
        record["report"] = with_rows(record["report"])
    return record


def _read_marker(out_dir: Path, entry: Entry) -> dict | None:
    try:
        return _typed(json.loads(_marker(out_dir, entry).read_text()))
    except (OSError, json.JSONDecodeError):
        return None


def run_entry(entry: Entry, build: Callable) -> dict:
    """One build, and its comparison with the entry's baseline where the pipeline did not make one. A
    build that raises a user error becomes the entry's error (the other entries still run)."""
    from edgefocal.baseline import compare_reports, load_report, with_rows

    started = time.time()
    try:
        result = build(entry.recipe, console=None)
        report = with_rows(as_json(result.report))  # what a resumed entry reads back from its marker
        gates = as_json([g.__dict__ for g in result.gates])
        base = entry.recipe.gates.baseline
        if base is not None and not report.get("baseline"):
            comp = compare_reports(load_report(base), report, entry.recipe.gates, f"baseline {base}")
            gates += as_json([g.__dict__ for g in comp.results])
            report["baseline"] = comp.to_dict()
    except EdgefocalError as e:
        return {"name": entry.name, "recipe": str(entry.recipe_path), "key": entry.key, "passed": False,
                "error": str(e) + (f" (hint: {e.hint})" if e.hint else ""), "exit_code": e.exit_code}
    return {"name": entry.name, "recipe": str(entry.recipe_path), "key": entry.key, "output": str(result.output),
            "passed": all(g["passed"] for g in gates), "gates": gates, "report": report,
            "seconds": round(time.time() - started, 1)}


def run_matrix(paths: list[Path], out_dir: Path, baseline_dir: Path | None = None, *, resume: bool = True,
               overrides: dict | None = None, build: Callable | None = None,
               log: Callable[[str], None] | None = None, history: Path | None = None) -> MatrixResult:
    """Build every recipe not finished before, then write matrix.json, matrix.md, matrix.html and
    junit.xml into `out_dir`. `build` defaults to edgefocal.pipeline.build (tests pass their own).
    `history`: a directory of the entries' trend pages (DIR/<entry>/history.html) that matrix.html links to."""
    if build is None:
        from edgefocal.pipeline import build
    if history is not None and not Path(history).is_dir():
        raise BadInput(f"--history {history} is not a directory",
                       hint="pass the directory `edgefocal history` wrote DIR/<entry>/history.html into")
    log = log or (lambda message: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = MatrixResult(out_dir, plan(paths, out_dir, baseline_dir, overrides),
                          Path(history) if history is not None else None)
    for i, entry in enumerate(result.entries, 1):
        done = _read_marker(out_dir, entry) if resume else None
        if done is not None:
            entry.record, entry.resumed = done, True
            log(f"[{i}/{len(result.entries)}] {entry.name}: finished earlier, not rebuilt")
            continue
        log(f"[{i}/{len(result.entries)}] {entry.name}: building ({entry.recipe_path})")
        entry.record = run_entry(entry, build)
        if not entry.record.get("error"):
            _write_marker(out_dir, entry, entry.record)
    from edgefocal.matrix_report import write_outputs

    write_outputs(result)
    return result
