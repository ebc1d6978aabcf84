"""Regression gates against a baseline report: identical reports pass, a 0.5 pt agreement regression
fails naming figure, baseline and bound, foreign baselines are refused, other machines compare accuracy."""
import json

import pytest

from edgefocal.baseline import compare_paths, compare_reports, load_report
from edgefocal.machine import machine_class
from edgefocal.errors import BadInput
from edgefocal.recipe import Gates, load_recipe
from edgefocal.recipe import REPO_ROOT
from sample_reports import edited, make_report

INT8 = "openvino int8"
DEFAULTS = load_recipe(REPO_ROOT / "recipes" / "default.yaml").gates


def test_identical_reports_pass_with_the_default_bounds(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.json").write_text(json.dumps(make_report()))
    (tmp_path / "new.json").write_text(json.dumps(make_report()))
    comp = compare_paths(tmp_path / "old", tmp_path / "new.json", DEFAULTS)  # a directory or a file
    assert comp.exit_code == 0 and comp.results and all(g.status == "passed" for g in comp.results)
    gates = {g.gate for g in comp.results}
    assert {"max_top1_regression", "max_agreement_regression", "max_speedup_regression b1",
            "max_speedup_regression b8", "max_size_growth"} <= gates
    assert {d["label"] for d in comp.deltas} == {INT8, "onnxruntime int8 (U8S8 Q/DQ)"}  # requested only


def test_a_baseline_with_half_a_point_more_agreement_is_a_regression():
    base = make_report()
    better = edited(base, INT8, agreement=base["rows"][2]["agreement"] + 0.005)
    comp = compare_reports(better, base, DEFAULTS)
    (failed,) = [g for g in comp.results if not g.passed]
    assert comp.exit_code == 1 and failed.gate == "max_agreement_regression" and failed.artifact == INT8
    assert failed.value == pytest.approx(0.5) and failed.bound == 0.2 and failed.baseline == pytest.approx(0.9961)
    assert "agreement 99.11% now, 99.61% in the baseline (-0.50 pt)" in failed.describe()
    # the other way round it is a gain: no failure, a note to take the new baseline
    comp = compare_reports(base, better, DEFAULTS)
    assert comp.exit_code == 0 and any("improved 0.50 pt" in n for n in comp.notes)


def test_speedup_and_size_regressions():
    base = make_report()
    slower = edited(base, INT8, speedup_vs_reference={"1": 1.7, "8": 2.2}, size_bytes=1_900_000,
                    latency_stability={"1": {**base["rows"][2]["latency_stability"]["1"], "speedup_low": 1.65,
                                             "speedup_high": 1.75},
                                       "8": {**base["rows"][2]["latency_stability"]["8"], "speedup_low": 1.95,
                                             "speedup_high": 2.3}})
    comp = compare_reports(base, slower, DEFAULTS)
    failed = {g.gate: g for g in comp.results if g.status == "failed"}
    assert set(failed) == {"max_speedup_regression b1", "max_size_growth"}  # b8's interval straddles its floor
    assert failed["max_speedup_regression b1"].value == pytest.approx(1 - 1.7 / (2.0 / 0.9))
    assert failed["max_size_growth"].value == pytest.approx(1.9 / 1.7 - 1)
    (straddle,) = [g for g in comp.results if g.gate == "max_speedup_regression b8" and g.artifact == INT8]
    assert straddle.status == "inconclusive" and "straddles the floor" in straddle.detail


def test_unstable_latency_never_decides_a_speedup_regression():
    comp = compare_reports(make_report(), make_report(stable=False), Gates(on_unstable="fail"))
    speed = [g for g in comp.results if g.gate.startswith("max_speedup")]
    assert speed and all(g.status == "inconclusive" and not g.passed for g in speed)
    assert comp.exit_code == 1  # on_unstable: fail
    assert compare_reports(make_report(), make_report(stable=False), Gates()).exit_code == 0  # warn


@pytest.mark.parametrize("section, key, what, field", [
    ("model", "checkpoint_sha256", "model", "checkpoint"), ("eval", "fingerprint", "eval set", "fingerprint"),
    ("calibration", "fingerprint", "calibration set", "fingerprint")])
def test_a_baseline_of_other_inputs_is_refused_naming_what_differs(section, key, what, field):
    other = make_report()
    other[section][key] = "f" * 64
    with pytest.raises(BadInput) as e:
        compare_reports(other, make_report(), DEFAULTS)
    message = str(e.value)
    assert f"was built from another {what} ({field} ffffffffffff… vs " in message and "\n" not in message


def test_another_machine_class_compares_accuracy_only_and_says_so():
    other = make_report()
    other["machine"]["class"] = machine_class({"system": "Linux", "machine": "aarch64", "cpu": "ARMv8",
                                               "cpu_count": 6, "gpu": "Orin", "l4t": "R36.4"})
    comp = compare_reports(other, make_report(), DEFAULTS)
    assert comp.accuracy_only and any("another machine class" in n and "aarch64" in n for n in comp.notes)
    assert not [g for g in comp.results if "speedup" in g.gate] and comp.exit_code == 0


def test_a_dropped_or_skipped_artifact_fails():
    base = make_report()
    gone = make_report()
    gone["rows"] = [r for r in gone["rows"] if r["label"] != INT8]
    (g,) = [g for g in compare_reports(base, gone, DEFAULTS).results if not g.passed]
    assert g.artifact == INT8 and "this build does not" in g.describe()
    skipped = edited(base, INT8, skipped="OpenVINO is not installed")
    (g,) = [g for g in compare_reports(base, skipped, DEFAULTS).results if not g.passed]
    assert "skipped now: OpenVINO is not installed" in g.describe()
    both = compare_reports(skipped, skipped, DEFAULTS)  # skipped then and now: nothing to compare, no failure
    assert both.exit_code == 0 and INT8 not in {g.artifact for g in both.results}


def test_bad_baseline_paths_are_bad_input(tmp_path):
    with pytest.raises(BadInput, match="has no report.json"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(BadInput, match="is not valid JSON"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(BadInput, match="not an edgefocal report"):
        load_report(tmp_path / "report.json")


def test_a_baseline_of_the_previous_schema_loads_and_compares(tmp_path):
    """report.json before the "schema" key (schema 1) is a baseline like any other: its rows are read with
    Row.from_dict (a backend fact unknown to Row stays in its facts), and it compares with a schema 2
    report as the pipeline writes it now (rows through Row.to_dict)."""
    from edgefocal.core import Row, jsonable
    from edgefocal.report import SCHEMA
    from sample_reports import loaded, schema1_report

    old = schema1_report()
    assert "schema" not in old and SCHEMA == 3
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.json").write_text(json.dumps(old))
    new = jsonable(loaded(edited(make_report(), INT8, agreement=0.9861)))
    assert new["schema"] == 2 and new["rows"] == make_report()["rows"][:2] + new["rows"][2:]
    (tmp_path / "new.json").write_text(json.dumps(new))
    base = load_report(tmp_path / "old")
    assert all(isinstance(r, Row) for r in base["rows"]) and base["rows"][2].facts == {"ov_version": "2024.6.0"}
    assert base["rows"][2].to_dict() == old["rows"][2]  # read and written back, key for key
    comp = compare_paths(tmp_path / "old", tmp_path / "new.json", DEFAULTS)
    (failed,) = [g for g in comp.results if not g.passed]
    assert failed.gate == "max_agreement_regression" and failed.artifact == INT8 and failed.value == pytest.approx(0.5)
    assert {d["label"] for d in comp.deltas} == {INT8, "onnxruntime int8 (U8S8 Q/DQ)"}
    assert compare_paths(tmp_path / "new.json", tmp_path / "old", DEFAULTS).exit_code == 0  # and the other way round
    # a schema 3 report (serving figures) against the schema 1 baseline: the serving figures are not compared
    from sample_reports import with_serving

    (tmp_path / "new3.json").write_text(json.dumps(with_serving(json.loads((tmp_path / "new.json").read_text()))))
    comp = compare_paths(tmp_path / "old", tmp_path / "new3.json", DEFAULTS)
    assert [g.gate for g in comp.results if not g.passed] == ["max_agreement_regression"]
    assert not [g for g in comp.results if "memory" in g.gate or "cold_start" in g.gate]
