"""JUnit XML for CI: one testcase per gate per artifact, so a CI system lists, counts and tracks each
bound like a unit test. A failure carries the figure, the bound and the baseline value; an inconclusive
latency gate is `skipped` when the recipe says warn and a failure when it says fail.

Written with the standard library's xml.etree: the format is small, and a dependency for it (junit-xml
had its last release in 2023) would be one more thing to keep."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from edgefocal.gate import FAILED, INCONCLUSIVE, GateResult, from_dict


def _num(v) -> str:
    return "missing" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


def _message(g: GateResult) -> str:
    base = "" if g.baseline is None else f", baseline {_num(g.baseline)}"
    head = f"{g.gate} for {g.artifact}: {_num(g.value)} (bound {_num(g.bound)}{base})"
    return head + (f": {g.detail}" if g.detail else "")


def _testcase(suite: ET.Element, g: GateResult, classname: str) -> str:
    """Add one testcase; return its outcome for the suite's counters."""
    case = ET.SubElement(suite, "testcase", classname=classname, name=f"{g.artifact}: {g.gate}", time="0")
    props = ET.SubElement(case, "properties")
    for key in ("value", "bound", "baseline", "status"):
        ET.SubElement(props, "property", name=key, value=_num(getattr(g, key)))
    if g.status == FAILED or (g.status == INCONCLUSIVE and not g.passed):
        failure = ET.SubElement(case, "failure", message=_message(g), type=g.status)
        failure.text = (f"artifact: {g.artifact}\ngate: {g.gate}\nfigure: {_num(g.value)}\nbound: {_num(g.bound)}\n"
                        f"baseline: {_num(g.baseline)}\n{g.detail}\n")
        return "failure"
    if g.status == INCONCLUSIVE:
        ET.SubElement(case, "skipped", message="inconclusive: " + _message(g))
        return "skipped"
    return "passed"


def testsuite(name: str, gates: list[GateResult | dict], classname: str = "edgefocal") -> ET.Element:
    """One <testsuite> (a build, or one matrix entry) from GateResults or report.json's gate dicts."""
    suite = ET.Element("testsuite", name=name)
    outcomes = [_testcase(suite, g if isinstance(g, GateResult) else from_dict(g), classname) for g in gates]
    suite.set("tests", str(len(outcomes)))
    suite.set("failures", str(outcomes.count("failure")))
    suite.set("skipped", str(outcomes.count("skipped")))
    suite.set("errors", "0")
    return suite


def to_xml(suites: dict[str, list[GateResult | dict]], errors: dict[str, str] | None = None) -> str:
    """<testsuites> over named suites; `errors` maps a suite name to why it produced no gates at all
    (a matrix entry whose build raised), written as an <error> testcase."""
    root = ET.Element("testsuites", name="edgefocal")
    totals = {"tests": 0, "failures": 0, "skipped": 0, "errors": 0}
    for name, gates in suites.items():
        suite = testsuite(name, gates, classname=name)
        if errors and name in errors:
            case = ET.SubElement(suite, "testcase", classname=name, name="build", time="0")
            ET.SubElement(case, "error", message=errors[name]).text = errors[name]
            suite.set("tests", str(int(suite.get("tests")) + 1))
            suite.set("errors", "1")
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key))
    for key, v in totals.items():
        root.set(key, str(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, suites: dict[str, list[GateResult | dict]], errors: dict[str, str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_xml(suites, errors))
    return path
