"""Serving figures (verify/serving.py): a real build measures cold start, first inference and serving memory
for every artifact row and the FP32 reference, and batch consistency for every requested artifact, each in fresh
processes; the memory
figure agrees with an independent process loading the same artifact directly; a baseline with 30 % less
memory fails `edgefocal compare`; and the gate logic on hand-made rows."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from edgefocal.baseline import compare_reports
from edgefocal.cli import main
from edgefocal.core import Row
from edgefocal.gate import check_gates
from edgefocal.recipe import Gates
from sample_reports import edited, loaded, make_report, with_serving

INT8 = "openvino int8"
REF = "torch fp32 (reference)"
FAST = """
calibration: {source: fashion-mnist, split: train, size: 64}
eval: {source: fashion-mnist, split: test, size: 100}
bench: {batch_sizes: [1, 4], warmup: 1, iterations: 3, rounds: 1}
quantize: {target_agreement: null}
gates: {max_latency_rounds: 1}  # the serving figures are what is asserted here: one latency round
"""
# the report's figure and an independent process's ru_maxrss differ by what the serving process imports besides
# the runtime (edgefocal's small modules, json): measured 1.3-1.5 MB on the default's artifacts; allowed up to
MEMORY_TOLERANCE_MB, MEMORY_TOLERANCE = 10.0, 0.05


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    out = tmp_path_factory.mktemp("serving") / "out"
    recipe = tmp_path_factory.mktemp("r") / "fast.yaml"
    recipe.write_text(FAST)
    code = main(["build", "--recipe", str(recipe), "--target", "openvino,onnxruntime", "--output", str(out), "--quiet"])
    return code, out, json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_every_artifact_row_and_the_reference_has_serving_figures(served):
    code, out, report = served
    assert code == 0 and report["schema"] == 3
    rows = {r["label"]: r for r in report["rows"]}
    measured = [r for r in report["rows"] if r.get("path")] + [rows[REF]]
    assert {r["label"] for r in measured} >= {REF, "openvino fp32", INT8, "onnxruntime int8 (U8S8 Q/DQ)"}
    for r in measured:
        assert 0 < r["cold_start_ms"] < 60_000 and len(r["cold_start_runs_ms"]) == 3, r["label"]
        assert r["first_inference_ms"] > 0, r["label"]
        assert set(r["serving_memory_mb"]) == {"1", "4"}, r["label"]
        assert 10 < r["serving_memory_mb"]["1"] <= r["serving_memory_mb"]["4"], r["label"]  # a peak only grows
        if not r.get("requested"):  # neither the torch reference nor the FP32 artifacts ship or are gated
            assert "consistency" not in r, r["label"]
            continue
        c = r["consistency"]
        assert c["images"] == 100 and c["batch"] == 4 and isinstance(c["consistent"], bool), r["label"]
        assert c["consistent"] == (c["mismatches"] == 0) and c["max_logit_gap"] >= 0 and "repeatable" in c
    assert rows[INT8].get("consistency") and "consistency" not in rows["openvino fp32"]
    assert rows[REF]["serving_memory_mb"]["1"] > rows[INT8]["serving_memory_mb"]["1"]  # torch is not loaded for OV
    gates = {(g["gate"], g["artifact"]) for g in report["gates"]}
    assert ("require_consistent_batches", INT8) in gates  # on by default
    assert "## Serving" in (out / "report.md").read_text() and 'id="serving"' in (out / "report.html").read_text()


INDEPENDENT = {
    "onnxruntime": """
        import onnxruntime as ort
        opts = ort.SessionOptions(); opts.intra_op_num_threads = __THREADS__; opts.inter_op_num_threads = 1
        s = ort.InferenceSession(__PATH__, opts, providers=["CPUExecutionProvider"])
        run = lambda x: s.run(None, {s.get_inputs()[0].name: x})
    """,
    "openvino": """
        import openvino as ov
        core = ov.Core(); m = core.read_model(__PATH__); compiled = {}
        def run(x):
            if x.shape[0] not in compiled:
                mb = m.clone(); mb.reshape({mb.inputs[0]: list(x.shape)})
                compiled[x.shape[0]] = core.compile_model(mb, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                                      "INFERENCE_NUM_THREADS": __THREADS__})
            return compiled[x.shape[0]]({0: x})
    """,
}


def independent_peak_mb(target: str, path: str, threads: int, shape: list[int]) -> dict[str, float]:
    """A separate python process loads the artifact with the runtime itself (no edgefocal), serves batch 1
    and batch 4, and prints its own ru_maxrss after each."""
    code = textwrap.dedent(INDEPENDENT[target]).replace("__PATH__", repr(path)).replace("__THREADS__", str(threads))
    code = "import json, resource, numpy as np\n" + code + textwrap.dedent(f"""
        peak = {{}}
        for b in (1, 4):
            x = np.zeros([b, *{shape}], np.float32)
            for _ in range(5):
                run(x)
            peak[b] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(peak))
    """)
    # forked by a shell, not exec'd from pytest: Linux carries ru_maxrss across execve (verify/serving.py)
    proc = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("label, target", [(INT8, "openvino"), ("onnxruntime int8 (U8S8 Q/DQ)", "onnxruntime")])
def test_memory_agrees_with_an_independent_process(served, label, target):
    _, out, report = served
    row = next(r for r in report["rows"] if r["label"] == label)
    theirs = independent_peak_mb(target, str(out / row["path"]), report["bench"]["threads_used"],
                                 report["model"]["input_size"])
    for b in ("1", "4"):
        ours = row["serving_memory_mb"][b]
        assert abs(ours - theirs[b]) <= max(MEMORY_TOLERANCE_MB, MEMORY_TOLERANCE * theirs[b]), (b, ours, theirs[b])


@pytest.mark.slow
def test_a_baseline_with_30_percent_less_memory_fails_compare(served, tmp_path, capsys):
    _, out, report = served
    assert main(["compare", str(out), str(out)]) == 0  # the same report: memory ratios equal, cold start not worse
    leaner = json.loads(json.dumps(report))
    row = next(r for r in leaner["rows"] if r["label"] == INT8)
    row["serving_memory_mb"] = {b: mb * 0.7 for b, mb in row["serving_memory_mb"].items()}
    (tmp_path / "leaner.json").write_text(json.dumps(leaner))
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "leaner.json"), str(out), "--junit", str(tmp_path / "j.xml"),
                 "--summary", str(tmp_path / "summary.md")]) == 1
    printed = capsys.readouterr().out
    assert f"max_memory_growth b1 for {INT8}: 0.4286 (bound 0.1" in printed and "FAILED" in printed
    assert "peak memory MB serving batch 1" in printed
    assert f"{INT8}: cold start" in printed  # the serving figures, baseline → new
    failures = {f.get("message").split(":")[0] for f in ET.parse(tmp_path / "j.xml").getroot().iter("failure")}
    assert failures == {f"max_memory_growth b1 for {INT8}", f"max_memory_growth b4 for {INT8}"}
    summary = (tmp_path / "summary.md").read_text()
    assert "max_memory_growth b4" in summary.split("### Needs a look")[1] and "### Serving" in summary


# --- the gate logic on hand-made rows -------------------------------------------------------------------

ROW = Row(INT8, requested=True, cold_start_ms=200.0, first_inference_ms=3.0, serving_memory_mb={1: 150.0, 8: 170.0},
          consistency={"consistent": True, "images": 100, "mismatches": 0, "max_logit_gap": 1e-5, "repeatable": True,
                       "batch": 8},
          facts={"cold_start_runs_ms": [190.0, 200.0, 215.0], "serving_memory_runs_mb": {1: [149.0, 150.0, 151.0],
                                                                                          8: [169.0, 170.0, 171.0]}})


def _gates(**bounds) -> Gates:
    return Gates(**bounds)


def test_absolute_bounds_decide_on_the_whole_spread_of_the_runs():
    (g,) = [g for g in check_gates(_gates(max_cold_start_ms=250), [ROW]) if g.gate == "max_cold_start_ms"]
    assert g.status == "passed" and "median of 3 runs (190-215)" in g.detail
    (g,) = [g for g in check_gates(_gates(max_cold_start_ms=150), [ROW]) if g.gate == "max_cold_start_ms"]
    assert g.status == "failed" and not g.passed
    (g,) = [g for g in check_gates(_gates(max_cold_start_ms=205), [ROW]) if g.gate == "max_cold_start_ms"]
    assert g.status == "inconclusive" and g.passed and "straddle the bound" in g.detail  # on_unstable warn
    (g,) = [g for g in check_gates(_gates(max_cold_start_ms=205, on_unstable="fail"), [ROW])
            if g.gate == "max_cold_start_ms"]
    assert g.status == "inconclusive" and not g.passed
    (g,) = [g for g in check_gates(_gates(max_serving_memory_mb=160), [ROW]) if g.gate == "max_serving_memory_mb"]
    assert g.status == "failed" and g.value == 170.0 and "serving batch 8" in g.detail  # the largest batch


def test_consistency_gate_is_on_by_default_and_names_the_mismatches():
    assert [g.gate for g in check_gates(Gates(), [ROW])] == ["require_consistent_batches"]
    bad = replace(ROW, consistency={**ROW.consistency, "consistent": False, "mismatches": 3})
    (g,) = check_gates(Gates(), [bad])
    assert not g.passed and g.value == 3 and "3 of 100 images differ" in g.describe()
    flaky = replace(ROW, consistency={**ROW.consistency, "repeatable": False})
    assert not check_gates(Gates(), [flaky])[0].passed
    assert check_gates(Gates(require_consistent_batches=False), [bad]) == []
    assert check_gates(Gates(), [Row("old report row")]) == []  # no figures: nothing to gate


def test_a_bound_on_a_figure_not_measured_fails_with_the_reason():
    coreml = Row("coreml int8", requested=True, serving_note="not measured here — Core ML runs only on macOS")
    (g,) = check_gates(Gates(max_cold_start_ms=500), [coreml])
    assert not g.passed and g.value is None and "Core ML runs only on macOS" in g.describe()


def test_memory_growth_against_the_baseline_is_a_ratio_to_the_same_run_reference():
    new = with_serving(make_report())
    comp = compare_reports(with_serving(make_report(), {INT8: 0.7}), new, Gates())
    failed = [g for g in comp.results if not g.passed]
    assert {(g.gate, g.artifact) for g in failed} == {("max_memory_growth b1", INT8), ("max_memory_growth b8", INT8)}
    assert failed[0].value == pytest.approx(1 / 0.7 - 1) and "0.375x the reference now" in failed[0].detail
    # the whole machine uses 30 % more memory (reference included): the ratios hold, nothing fails
    heavier = with_serving(make_report(), {r["label"]: 1.3 for r in make_report()["rows"]})
    assert compare_reports(with_serving(make_report()), heavier, Gates()).exit_code == 0
    assert {d["label"]: d["serving_memory_mb"]["1"] for d in comp.deltas}[INT8] == [105.0, 150.0]


def test_cold_start_regression_is_inconclusive_when_the_runs_straddle_the_ceiling():
    base = with_serving(make_report())
    slower = edited(base, INT8, cold_start_ms=290.0, cold_start_runs_ms=[250.0, 290.0, 340.0])
    (g,) = [g for g in compare_reports(base, slower, Gates()).results if g.gate == "max_cold_start_regression"
            and g.artifact == INT8]
    assert g.status == "inconclusive" and g.value == pytest.approx(0.45) and "straddles the ceiling" in g.detail
    much = edited(base, INT8, cold_start_ms=400.0, cold_start_runs_ms=[380.0, 400.0, 420.0])
    (g,) = [g for g in compare_reports(base, much, Gates()).results if g.gate == "max_cold_start_regression"
            and g.artifact == INT8]
    assert g.status == "failed" and g.baseline == pytest.approx(0.1)


def test_cold_start_regression_from_one_run_decides_nothing():
    """One cold start each is one moment of a shared machine: far past the ceiling, still inconclusive."""
    base = with_serving(make_report())
    one = edited(base, INT8, cold_start_ms=400.0, cold_start_runs_ms=[400.0])
    (g,) = [g for g in compare_reports(base, one, Gates()).results if g.gate == "max_cold_start_regression"
            and g.artifact == INT8]
    assert g.status == "inconclusive" and g.passed and "from 1 run(s), fewer than the 3 it needs" in g.detail
    (g,) = [g for g in compare_reports(base, one, Gates(on_unstable="fail")).results
            if g.gate == "max_cold_start_regression" and g.artifact == INT8]
    assert g.status == "inconclusive" and not g.passed


def test_a_baseline_without_serving_figures_is_not_compared_on_them():
    old = make_report()  # schema 2: no serving figures
    comp = compare_reports(old, with_serving(make_report(), {INT8: 2.0}), Gates())
    assert comp.exit_code == 0 and not [g for g in comp.results if "memory" in g.gate or "cold" in g.gate]
    assert any("no serving figures" in n for n in comp.notes)


def test_another_machine_class_compares_memory_but_not_cold_start():
    old = with_serving(make_report())
    old["machine"]["class"] = "Linux | aarch64 | ARMv8 | 6 cpus | gpu Orin"
    gates = {g.gate for g in compare_reports(old, with_serving(make_report()), Gates()).results}
    assert "max_memory_growth b1" in gates and "max_cold_start_regression" not in gates


def test_report_tables_show_the_serving_figures():
    from edgefocal.report import to_markdown
    from edgefocal.summary import summary_markdown

    report = loaded(with_serving(make_report()))
    report["rows"][1].serving_note = "not measured here — why"
    md = to_markdown(report, [])
    assert "## Serving" in md and f"| {INT8} * | 200 ms (190–210 over 3) | 3.00 | 150 | 170 | same top-1 on 10000" in md
    assert "not measured here — why" in md
    assert "### Serving" in summary_markdown(report, [])


def test_the_serving_process_counts_its_own_peak_memory_not_the_builds():
    """Linux carries ru_maxrss across execve: a process exec'd from a big build reports the build's peak.
    verify/serving.py has a shell fork it instead, so the figure is the serving process's own."""
    from edgefocal.verify.serving import run_fresh

    ballast = bytearray(400 * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # touched: resident
    code = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    exec_d = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
    fresh = float(run_fresh([sys.executable, "-c", code], timeout=60).stdout)
    assert exec_d > 400 and fresh < 60, (exec_d, fresh)
    del ballast


def test_the_matrix_table_shows_the_serving_figures():
    from types import SimpleNamespace

    from edgefocal.matrix_report import to_markdown

    entry = SimpleNamespace(name="ov-int8", resumed=False, record={"report": loaded(with_serving(make_report())),
                                                                    "gates": []})
    md = to_markdown(SimpleNamespace(entries=[entry], exit_code=0))
    assert "| MB | cold start | memory MB | batch-consistent | gates |" in md
    assert f"| ov-int8 | {INT8} |" in md and "| 1.70 | 200 ms | 170 (b8) | yes | no gates set |" in md


def test_the_serving_bounds_have_flags():
    from edgefocal.cli import build_parser
    from edgefocal.cli.build import overrides_from_args

    args = build_parser().parse_args(["build", "--max-cold-start-ms", "800", "--max-serving-memory-mb", "300",
                                      "--max-memory-growth", "0.2", "--max-cold-start-regression", "1.0"])
    assert overrides_from_args(args) == {"gates.max_cold_start_ms": 800.0, "gates.max_serving_memory_mb": 300.0,
                                         "gates.max_memory_growth": 0.2, "gates.max_cold_start_regression": 1.0}
