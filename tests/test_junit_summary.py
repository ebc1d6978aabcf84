"""JUnit XML and the markdown summary: the XML parses, holds exactly the failing gate with figure, bound
and baseline, counts inconclusive gates as skipped (warn) or failed (fail); the summary leads with the
verdict and shows each speedup with its interval."""
import xml.etree.ElementTree as ET

from edgefocal.baseline import compare_reports
from edgefocal.core import Row
from edgefocal.gate import GateResult, check_gates
from edgefocal.junit import to_xml, write_junit
from edgefocal.recipe import Gates
from edgefocal.summary import speedup_text, stability_text, summary_markdown
from sample_reports import edited, loaded, make_report

INT8 = "openvino int8"


def agreement_regression():
    base = make_report()
    return compare_reports(edited(base, INT8, agreement=0.9961), base, Gates())


def test_junit_holds_exactly_the_regression_with_figure_bound_and_baseline(tmp_path):
    comp = agreement_regression()
    path = write_junit(tmp_path / "ci" / "junit.xml", {"edgefocal-fmnist vs baseline": comp.results})
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "1" and int(root.get("tests")) == len(comp.results)
    (failure,) = root.iter("failure")
    case = next(c for c in root.iter("testcase") if c.find("failure") is not None)
    assert case.get("name") == f"{INT8}: max_agreement_regression"
    assert "figure: 0.5" in failure.text and "bound: 0.2" in failure.text and "baseline: 0.9961" in failure.text
    assert "agreement 99.11% now, 99.61% in the baseline" in failure.get("message")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props == {"value": "0.5", "bound": "0.2", "baseline": "0.9961", "status": "failed"}


def test_inconclusive_is_skipped_under_warn_and_a_failure_under_fail():
    unstable = loaded(make_report(stable=False))
    rows = [r for r in unstable["rows"] if r.requested]
    warn = check_gates(Gates(min_speedup=1.5), rows)
    fail = check_gates(Gates(min_speedup=1.5, on_unstable="fail"), rows)
    w, f = ET.fromstring(to_xml({"b": warn})), ET.fromstring(to_xml({"b": fail}))
    assert (w.get("skipped"), w.get("failures")) == ("2", "0") and (f.get("skipped"), f.get("failures")) == ("0", "2")
    assert next(f.iter("failure")).get("type") == "inconclusive"


def test_a_build_that_raised_is_an_error_case():
    root = ET.fromstring(to_xml({"tensorrt-int8": []}, errors={"tensorrt-int8": "TensorRT missing"}))
    assert root.get("errors") == "1" and next(root.iter("error")).get("message") == "TensorRT missing"


def test_summary_leads_with_the_verdict_and_lists_what_needs_a_look():
    report = loaded(make_report())
    comp = agreement_regression()
    text = summary_markdown(report, comp.results, comp)
    first = text.splitlines()[0]
    assert first.startswith("## edgefocal: edgefocal-fmnist — ❌ failed")
    look = text.split("### Needs a look")[1].split("###")[0]
    assert "max_agreement_regression" in look and "0.9961" in look and look.count("❌") == 1
    assert "2.22× [2.16–2.29]" in text  # each speedup shows its interval over the rounds
    assert "### Baseline: the baseline" in text
    ok = summary_markdown(report, [GateResult("min_agreement", INT8, 0.99, 0.98, True)])
    assert ok.splitlines()[0].endswith("✅ passed") and "Needs a look" not in ok


def test_latency_text_says_how_far_to_trust_it():
    from dataclasses import replace

    row = loaded(make_report(stable=False))["rows"][2]
    assert speedup_text(row, 1) == "2.22× (unstable)" and stability_text(row, "1").startswith("unstable: 4 of 5 rounds")
    flagged = replace(row, latency_stability={"1": {**row.latency_stability["1"], "flags": ["load 90%", "drift 40%"]}})
    assert stability_text(flagged, 1) == "unstable: load 90%, drift 40%"
    stable = loaded(make_report())["rows"][2]
    assert stability_text(stable, 8) == "±3.0% over 5 rounds, load 2%"
    assert speedup_text(Row("x", speedup_vs_reference={1: 3.0}), 1) == "3.00×"  # an old report: no interval to show


def test_summary_is_appended_like_github_expects(tmp_path):
    from edgefocal.summary import append_summary

    path = tmp_path / "step_summary.md"
    append_summary(path, "## earlier step")
    append_summary(path, summary_markdown(loaded(make_report()), []))
    text = path.read_text()
    assert text.startswith("## earlier step\n## edgefocal: edgefocal-fmnist — ✅ passed")


def test_report_md_reads_flags_and_backend_facts_from_the_rows():
    from edgefocal.report import notes, to_markdown

    report = loaded(make_report())
    report["rows"] += [Row("tensorrt int8 (engine)", "tensorrt", "int8", requested=True, path="m.engine",
                           skipped="TensorRT is not installed", required=True, variant="engine",
                           facts={"engine_command": "python -m edgefocal engine --onnx m.onnx"}),
                       Row("tensorrt int8 (Q/DQ ONNX via ONNX Runtime)", "tensorrt", "int8", device="ORT CPU",
                           proxy_for="TensorRT engine")]
    lines = notes(report)
    assert "tensorrt int8 (engine): not run here — TensorRT is not installed" in lines
    assert "build the engine on the device with: python -m edgefocal engine --onnx m.onnx" in lines
    assert any(n.startswith("tensorrt int8 (Q/DQ ONNX via ONNX Runtime): accuracy measured by ORT CPU") for n in lines)
    assert "| openvino int8 * | 89.89% |" in to_markdown(report, [])
