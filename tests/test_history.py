"""`edgefocal history`: accepted reports on disk (sample_reports), ordered by build date, charted offline, and
drift (a figure that moved beyond its regression bound in steps that each passed) exits 1."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgefocal.cli import main
from edgefocal.recipe import Gates
from sample_reports import edited, make_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACT = "openvino int8"
#: folder names as CI writes them (a commit each); not in date order, so sorting by name would be wrong
COMMITS = ["e3b0c44", "1a2b3c4", "9f8e7d6", "0c1d2e3", "7a6b5c4"]
START = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.timezone.utc)
WORKFLOW_DIR = Path(__file__).resolve().parent.parent / ".github" / "workflows"


def serving(report: dict, cold: float = 140.0, memory: float = 48.0) -> dict:
    """The serving figures (schema 3 rows: cold start, memory per batch size) on every requested row, and
    the FP32 reference's (400 ms, 200 MB) that the serving gates take ratios to."""
    for row in report["rows"]:
        c, m = (400.0, 200.0) if row["label"] == "torch fp32 (reference)" else (cold, memory)
        if row["requested"] or row["label"] == "torch fp32 (reference)":
            row.update(cold_start_ms=c, first_inference_ms=c / 10, serving_memory_mb={"1": m, "8": 2 * m})
    return report


def write_builds(root: Path, reports: list[dict], manifests: bool = True) -> Path:
    """One folder per accepted build, a week apart: report.json and (the date) manifest.json's `created`."""
    root.mkdir(parents=True, exist_ok=True)
    for i, (commit, report) in enumerate(zip(COMMITS, reports)):
        folder = root / commit
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps(report))
        date = START + dt.timedelta(days=7 * i)
        if manifests:
            (folder / "manifest.json").write_text(json.dumps({"schema": 2, "created": date.isoformat()}))
        else:
            os.utime(folder / "report.json", (date.timestamp(), date.timestamp()))
    return root


def sliding(step_pt: float = 0.15) -> list[dict]:
    """Five builds whose requested artifact loses `step_pt` points of agreement in each."""
    base = serving(make_report())
    return [edited(base, ARTIFACT, agreement=round(0.9911 - i * step_pt / 100, 6)) for i in range(5)]


def history(*args) -> int:
    return main(["history", *map(str, args)])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[0].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[0]


def test_agreement_sliding_0_15_pt_a_build_is_drift(tmp_path, capsys):
    builds = write_builds(tmp_path / "accepted", sliding())
    assert history(builds, "--output", tmp_path / "out", "--window", 5) == 1
    out = capsys.readouterr().out
    drift = [line for line in out.splitlines() if line.startswith("drift:")]
    assert len(drift) == 1  # one artifact, one figure: nothing else moved
    assert ARTIFACT in drift[0] and "agreement" in drift[0] and "0.60 pt" in drift[0]
    assert "e3b0c44 -> 7a6b5c4" in drift[0]  # oldest to newest by date, not by folder name
    md = (tmp_path / "out" / "history.md").read_text()
    assert "## Drift" in md and drift[0] in md and "- none" not in md
    assert ARTIFACT in (tmp_path / "out" / "history.html").read_text()


def test_each_step_is_within_the_gate_so_a_short_window_sees_no_drift(tmp_path, capsys):
    builds = write_builds(tmp_path / "accepted", sliding())
    assert history(builds, "--output", tmp_path / "out", "--window", 2) == 0  # 0.15 pt: within 0.2
    assert "drift:" not in capsys.readouterr().out
    assert Gates().max_agreement_regression == 0.2


def test_identical_builds_have_no_drift(tmp_path, capsys):
    base = serving(make_report())
    builds = write_builds(tmp_path / "accepted", [base] * 5)
    assert history(builds, "--output", tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "drift:" not in out and "5 builds" in out
    assert "## Drift\n\n- none" in (tmp_path / "out" / "history.md").read_text()


def test_one_large_step_is_a_regression_not_drift(tmp_path, capsys):
    reports = [serving(make_report())] * 4 + [edited(serving(make_report()), ARTIFACT, agreement=0.9861)]
    builds = write_builds(tmp_path / "accepted", reports)
    assert history(builds, "--output", tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "drift:" not in out and "not drift" in out and "0.50 pt" in out


def test_size_creeping_4_percent_a_build_is_drift(tmp_path, capsys):
    base = serving(make_report())
    reports = [edited(base, ARTIFACT, size_bytes=int(1_700_000 * 1.04 ** i)) for i in range(5)]
    builds = write_builds(tmp_path / "accepted", reports)
    assert history(builds, "--output", tmp_path / "out") == 1
    drift = [line for line in capsys.readouterr().out.splitlines() if line.startswith("drift:")]
    assert len(drift) == 1 and ARTIFACT in drift[0] and "size" in drift[0]


def test_serving_memory_growing_7_percent_against_the_reference_a_build_is_drift(tmp_path, capsys):
    if getattr(Gates(), "max_memory_growth", None) is None:
        pytest.skip("this edgefocal has no max_memory_growth gate yet: serving memory is charted, not checked")
    reports = [serving(make_report(), memory=48.0 * 1.07 ** i) for i in range(5)]
    builds = write_builds(tmp_path / "accepted", reports)
    assert history(builds, "--output", tmp_path / "out") == 1
    drift = [line for line in capsys.readouterr().out.splitlines() if line.startswith("drift:")]
    assert len(drift) == 2 and all("serving_memory" in line for line in drift)  # both requested artifacts
    assert "0.24x the FP32 reference's -> 0.315x" in drift[0]  # measured as its gate measures it: a ratio


def test_memory_growing_with_the_reference_is_not_drift(tmp_path, capsys):
    """The gate compares memory as the ratio to the same run's FP32 reference: a runtime that grew for every
    row (the reference too) did not drift."""
    reports = []
    for i in range(5):
        report = serving(make_report(), memory=48.0 * 1.07 ** i)
        edited_ref = next(r for r in report["rows"] if r["label"] == "torch fp32 (reference)")
        edited_ref["serving_memory_mb"] = {"1": 200.0 * 1.07 ** i, "8": 400.0 * 1.07 ** i}
        reports.append(report)
    builds = write_builds(tmp_path / "accepted", reports)
    assert history(builds, "--output", tmp_path / "out") == 0
    assert "drift:" not in capsys.readouterr().out


def test_the_bound_file_takes_the_bounds_from_a_recipe(tmp_path, capsys):
    recipe = tmp_path / "loose.yaml"
    recipe.write_text(yaml.safe_dump({"gates": {"max_agreement_regression": 1.0}}))
    builds = write_builds(tmp_path / "accepted", sliding())
    assert history(builds, "--output", tmp_path / "out", "--bound-file", recipe) == 0


def test_without_manifests_the_file_mtime_orders_and_the_notes_say_so(tmp_path, capsys):
    builds = write_builds(tmp_path / "accepted", sliding(), manifests=False)
    assert history(builds, "--output", tmp_path / "out") == 1
    out = capsys.readouterr().out
    assert "e3b0c44 -> 7a6b5c4" in out and "modification time" in out
    assert "modification time" in (tmp_path / "out" / "history.md").read_text()


def test_reports_without_serving_figures_chart_the_rest(tmp_path, capsys):
    builds = write_builds(tmp_path / "accepted", [make_report()] * 3)  # an older report: no cold start, no memory
    assert history(builds, "--output", tmp_path / "out") == 0
    page = (tmp_path / "out" / "history.html").read_text()
    assert 'data-figure="agreement"' in page and 'data-figure="size"' in page
    assert 'data-figure="cold_start"' not in page and 'data-figure="serving_memory"' not in page


def test_empty_directory_is_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert history(tmp_path / "empty", "--output", tmp_path / "out") == 2
    assert "holds no report.json" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_missing_directory_is_bad_input(tmp_path, capsys):
    assert history(tmp_path / "nowhere", "--output", tmp_path / "out") == 2
    assert "is not a directory" in one_line_error(capsys)


def test_unreadable_json_is_bad_input(tmp_path, capsys):
    builds = write_builds(tmp_path / "accepted", sliding()[:3])
    (builds / COMMITS[1] / "report.json").write_text('{"rows": [')
    assert history(builds, "--output", tmp_path / "out") == 2
    assert "not valid JSON" in one_line_error(capsys)


def test_a_report_of_another_model_is_bad_input(tmp_path, capsys):
    reports = [make_report(model="other-model")] + sliding()[1:]
    builds = write_builds(tmp_path / "accepted", reports)
    assert history(builds, "--output", tmp_path / "out") == 2
    err = one_line_error(capsys)
    assert COMMITS[0] in err and "another model" in err


def test_a_report_of_another_eval_set_is_bad_input(tmp_path, capsys):
    other = make_report()
    other["eval"]["fingerprint"] = "f" * 64
    builds = write_builds(tmp_path / "accepted", sliding()[:4] + [other])
    assert history(builds, "--output", tmp_path / "out") == 2
    assert "eval set" in one_line_error(capsys)


def test_a_window_of_one_is_bad_input(tmp_path, capsys):
    builds = write_builds(tmp_path / "accepted", sliding())
    assert history(builds, "--output", tmp_path / "out", "--window", 1) == 2
    assert "--window 1" in one_line_error(capsys)


def test_the_workflow_publishes_the_history_on_main():
    wf = yaml.safe_load((WORKFLOW_DIR / "edgefocal-gate.yml").read_text())
    for job in (wf["jobs"]["cpu"], wf["jobs"]["jetson"]):
        names = [s.get("name", "") for s in job["steps"]]
        run = next(s for s in job["steps"] if "history.sh" in str(s.get("run", "")))
        keep = next(s for s in job["steps"] if "baseline-" in str(s.get("with", {}).get("name", "")))
        assert run["if"] == "success() && github.ref == 'refs/heads/main'"
        assert names.index(run["name"]) < names.index(keep["name"])  # a drifted build is not accepted
        upload = next(s for s in job["steps"] if "history" in str(s.get("with", {}).get("name", "")))
        assert "history.html" in upload["with"]["path"] and "history.md" in upload["with"]["path"]
    script = WORKFLOW_DIR / "history.sh"
    assert script.stat().st_mode & 0o111 and "edgefocal history" in script.read_text()
    assert "GITHUB_STEP_SUMMARY" in script.read_text()


# --- history.html in headless Chromium, offline ----------------------------------------------------------

C0 = (31, 119, 180)  # matplotlib's first colour: the trend lines


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("history")
    builds = write_builds(tmp / "accepted", sliding())
    assert main(["history", str(builds), "--output", str(tmp / "out")]) == 1
    return tmp / "out" / "history.html"


def chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    """As tests/test_report_html.py: headless, sandboxless, every host name unresolvable."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
                           *args], capture_output=True, text=True, timeout=120)


def external_references(page: str) -> list[str]:
    """src/href/url() that would reach outside the file (as tests/test_report_html.py)."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']((?!#|data:)[^"']+)|url\(\s*["']?((?!#|data:)[^)"']+)""", page)
    return [a or b for a, b in found]


def test_the_page_references_nothing_outside_itself(page):
    text = page.read_text()
    assert external_references(text) == [] and "<script" not in text and "@import" not in text


def test_each_artifact_and_chart_has_a_unique_id_that_the_matrix_links_to(page):
    """`edgefocal matrix --history` links to these: an id per artifact section and per chart, named by
    data-artifact and data-figure, each once in the page (the inline SVGs bring ids of their own)."""
    text = page.read_text()
    ours = re.findall(r'<(h2|figure)[^>]*? id="([^"]+)" data-artifact="([^"]+)"(?: data-figure="([^"]+)")?', text)
    all_ids = re.findall(r'\sid="([^"]+)"', text)
    sections = {art: i for tag, i, art, fig in ours if tag == "h2"}
    assert sections == {ARTIFACT: "openvino-int8", "onnxruntime int8 (U8S8 Q/DQ)": "onnxruntime-int8-u8s8-q-dq"}
    assert len([1 for tag, *_ in ours if tag == "figure"]) == 2 * 6
    assert all(i == f"{sections[art]}-{fig}" for tag, i, art, fig in ours if tag == "figure")
    assert all(all_ids.count(i) == 1 for _, i, _, _ in ours)


def test_labels_with_the_same_slug_get_distinct_ids():
    from types import SimpleNamespace

    from edgefocal.history import anchors

    ids = anchors(SimpleNamespace(artifacts=["int8 (a)", "int8-a", "int8 a agreement"]))
    assert len(set(ids.values())) == len(ids) == 3 * 7
    assert ids[("int8 (a)", None)] == "int8-a" and ids[("int8-a", None)] == "int8-a-2"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_chromium_shows_a_chart_per_figure_with_data(page, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    charts = dom.split('<figure class="chart"')[1:]
    figures = {c.split('data-figure="')[1].split('"')[0] for c in charts}
    assert figures == {"agreement", "top1", "speedup", "cold_start", "serving_memory", "size"}
    assert len(charts) == 2 * 6  # two requested artifacts, six figures each
    for chart in charts:
        assert "<svg" in chart and chart.count("<path") > 20  # axes, glyphs and the line, parsed into elements
    caption = dom.split('id="openvino-int8-agreement"')[1].split("</figcaption>")[0]
    assert caption.endswith("agreement with FP32 — drift")  # the drifted chart says so (its title is paths)
    assert "drift" not in dom.split('id="openvino-int8-top1"')[1].split("</figcaption>")[0]


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_the_screenshot_shows_the_trend_lines(page, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert (pixels.min(axis=1) < 200).mean() > 0.02  # not blank
    assert (np.abs(pixels - C0).sum(axis=1) < 30).sum() > 300  # the trend lines and markers were painted
