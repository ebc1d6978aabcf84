"""`edgefocal matrix`: combined outputs, resume without rebuilding, per-entry baselines, bad recipes and
failing entries. The fast tests script the build; the slow one kills a real matrix and restarts it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgefocal.core import jsonable
from edgefocal.errors import BadInput
from edgefocal.gate import check_gates
from edgefocal.matrix import run_matrix
from sample_reports import edited, loaded, make_report

REPO = Path(__file__).resolve().parent.parent


def write_recipes(folder: Path, names=("ov-int8", "ort-int8", "trt-int8")) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / f"{n}.yaml").write_text("gates: {min_agreement: 0.99}\n")
    return sorted(folder.glob("*.yaml"))


class FakeBuild:
    """Stands in for pipeline.build: returns the sample report, records which outputs it built, and can
    be told to be interrupted at a given entry or to fail it."""

    def __init__(self, interrupt_at: str | None = None, fail_at: str | None = None):
        self.built: list[str] = []
        self.interrupt_at, self.fail_at = interrupt_at, fail_at

    def __call__(self, recipe, console=None):
        name = Path(recipe.output).name
        if name == self.interrupt_at:
            raise KeyboardInterrupt
        if name == self.fail_at:
            raise BadInput("target tensorrt cannot be built on this machine")
        self.built.append(name)
        report = loaded(make_report())  # rows as core.Row, as pipeline.build returns them
        gates = check_gates(recipe.gates, [r for r in report["rows"] if r.requested])
        Path(recipe.output).mkdir(parents=True, exist_ok=True)
        (Path(recipe.output) / "report.json").write_text(json.dumps(jsonable(report)))
        return SimpleNamespace(report=report, gates=gates, output=Path(recipe.output), passed=all(g.passed for g in gates))


def test_three_recipes_one_table_one_junit_one_json(tmp_path):
    recipes = write_recipes(tmp_path / "recipes")
    result = run_matrix([tmp_path / "recipes"], tmp_path / "m", build=FakeBuild())  # a directory of recipes
    assert result.exit_code == 0 and [e.name for e in result.entries] == ["ort-int8", "ov-int8", "trt-int8"]
    table = (tmp_path / "m" / "matrix.md").read_text()
    for e in result.entries:
        assert f"| {e.name} | openvino int8 |" in table and f"| {e.name} | onnxruntime int8 (U8S8 Q/DQ) |" in table
    junit = ET.parse(tmp_path / "m" / "junit.xml").getroot()
    assert [s.get("name") for s in junit.iter("testsuite")] == ["ort-int8", "ov-int8", "trt-int8"]
    assert junit.get("tests") == "6" and junit.get("failures") == "0"  # min_agreement × 2 artifacts × 3
    data = json.loads((tmp_path / "m" / "matrix.json").read_text())
    assert data["exit_code"] == 0 and len(data["entries"]) == len(recipes)
    assert "latency_samples_ms" not in data["entries"][0]["rows"][0]  # the bulk stays in each report.json
    assert "<table>" in (tmp_path / "m" / "matrix.html").read_text()


def test_an_interrupted_matrix_resumes_without_rebuilding(tmp_path):
    write_recipes(tmp_path / "r")
    first = FakeBuild(interrupt_at="ov-int8")
    with pytest.raises(KeyboardInterrupt):
        run_matrix([tmp_path / "r"], tmp_path / "m", build=first)
    assert first.built == ["ort-int8"]
    again = FakeBuild()
    result = run_matrix([tmp_path / "r"], tmp_path / "m", build=again)
    assert again.built == ["ov-int8", "trt-int8"] and [e.resumed for e in result.entries] == [True, False, False]
    resumed = result.entries[0].record["report"]  # read back from its done marker: rows as core.Row again
    assert all(type(r).__name__ == "Row" for r in resumed["rows"]) and resumed["schema"] == 2
    assert "ort-int8 (resumed)" in (tmp_path / "m" / "matrix.md").read_text()
    (tmp_path / "r" / "ov-int8.yaml").write_text("gates: {min_agreement: 0.98}\n")  # a changed recipe is rebuilt
    third = FakeBuild()
    run_matrix([tmp_path / "r"], tmp_path / "m", build=third)
    assert third.built == ["ov-int8"] and len(list((tmp_path / "m" / ".done").glob("ov-int8-*.json"))) == 1
    fresh = FakeBuild()
    run_matrix([tmp_path / "r"], tmp_path / "m", build=fresh, resume=False)
    assert fresh.built == ["ort-int8", "ov-int8", "trt-int8"]
    flagged = FakeBuild()  # a CLI flag for every entry changes every key: all are rebuilt
    result = run_matrix([tmp_path / "r"], tmp_path / "m", build=flagged, overrides={"tensorrt.require_engine": True})
    assert flagged.built == ["ort-int8", "ov-int8", "trt-int8"] and result.entries[0].recipe.tensorrt.require_engine


def test_each_entry_is_compared_with_its_own_baseline(tmp_path):
    write_recipes(tmp_path / "r")
    run_matrix([tmp_path / "r"], tmp_path / "main", build=FakeBuild())  # what main built: the baselines
    better = edited(make_report(), "openvino int8", agreement=0.9961)
    (tmp_path / "main" / "ov-int8" / "report.json").write_text(json.dumps(better))
    result = run_matrix([tmp_path / "r"], tmp_path / "pr", tmp_path / "main", build=FakeBuild())
    assert result.exit_code == 1
    failed = {(e.name, g["artifact"], g["gate"]) for e in result.entries for g in e.record["gates"] if not g["passed"]}
    assert failed == {("ov-int8", "openvino int8", "max_agreement_regression")}
    table = (tmp_path / "pr" / "matrix.md").read_text()
    assert "| ov-int8 | openvino int8 |" in table and "regression: max_agreement_regression" in table
    assert table.count("no regression") == 5
    (case,) = [c for c in ET.parse(tmp_path / "pr" / "junit.xml").getroot().iter("testcase") if c.find("failure") is not None]
    assert "baseline: 0.9961" in case.find("failure").text


def test_a_bad_recipe_fails_before_anything_is_built(tmp_path):
    write_recipes(tmp_path / "r")
    (tmp_path / "r" / "zz-typo.yaml").write_text("gatez: {}\n")
    build = FakeBuild()
    with pytest.raises(BadInput, match="zz-typo.yaml is invalid"):
        run_matrix([tmp_path / "r"], tmp_path / "m", build=build)
    assert build.built == []


def test_an_entry_that_cannot_be_built_is_an_error_and_the_rest_still_run(tmp_path):
    write_recipes(tmp_path / "r")
    result = run_matrix([tmp_path / "r"], tmp_path / "m", build=FakeBuild(fail_at="trt-int8"))
    assert result.exit_code == 2 and [bool(e.record.get("error")) for e in result.entries] == [False, False, True]
    junit = ET.parse(tmp_path / "m" / "junit.xml").getroot()
    assert junit.get("errors") == "1" and "cannot be built" in next(junit.iter("error")).get("message")
    assert not list((tmp_path / "m" / ".done").glob("trt-int8-*"))  # retried by the next run


TINY = """targets: [onnxruntime]
calibration: {source: fashion-mnist, split: train, size: 32}
eval: {source: fashion-mnist, split: test, size: %d}
bench: {batch_sizes: [1], warmup: 1, iterations: 3, rounds: 1}
quantize: {target_agreement: null}
"""
RUN = "import sys; from edgefocal.matrix import run_matrix; run_matrix([sys.argv[1]], sys.argv[2], log=print)"


@pytest.mark.slow
def test_a_real_matrix_killed_after_its_first_entry_does_not_rebuild_it(tmp_path):
    """Three real builds of the embedded default; the first run is SIGKILLed while building the second."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for i, size in enumerate((100, 120, 140)):
        (recipes / f"e{i}.yaml").write_text(TINY % size)
    out = tmp_path / "m"
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(recipes), str(out)], cwd=REPO, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list((out / ".done").glob("e0-*.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "the first entry never finished"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((out / ".done").glob("e1-*.json"))
    from edgefocal.pipeline import build

    built = []

    def counting(recipe, console=None):
        built.append(Path(recipe.output).name)
        return build(recipe, console)

    result = run_matrix([recipes], out, build=counting)
    assert built == ["e1", "e2"] and result.entries[0].resumed
    assert result.exit_code == 0 and (out / "junit.xml").exists()
    assert [r[0] for r in __import__("edgefocal.matrix_report", fromlist=["x"]).table_rows(result)] == [
        "e0 (resumed)", "e1", "e2"]
    assert not [p for p in out.iterdir() if ".staging-" in p.name]  # the killed build's staging was cleaned
