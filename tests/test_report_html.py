"""report.html opened in headless Chromium, offline: the charts are in the DOM and on the screenshot."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from edgefocal.baseline import compare_reports
from edgefocal.recipe import Gates
from edgefocal.report_html import write_html
from sample_reports import edited, loaded, make_report, with_profile, with_serving, with_stages

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                "(apt-get install chromium; .ci/run installs it)")
C0, C1 = (31, 119, 180), (255, 127, 14)  # matplotlib's first two colours: the bars of the before/after chart
STAGE_GREEN = (85, 168, 104)  # the stage-seconds chart's bars
MAC_BLUE, REST_ORANGE = (76, 114, 176), (221, 132, 82)  # the profile chart's MAC ops and everything else


def external_references(page: str) -> list[str]:
    """src/href/url() that would reach outside the file: what must be empty for the page to open offline."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']((?!#|data:)[^"']+)|url\(\s*["']?((?!#|data:)[^)"']+)""", page)
    return [a or b for a, b in found]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    base = with_serving(make_report())  # schema 3: serving figures; the baseline served with 30 % less memory
    comp = compare_reports(with_serving(edited(make_report(), "openvino int8", agreement=0.9961),
                                        {"openvino int8": 0.7}), base, Gates())
    report = dict(with_stages(loaded(base)), baseline=comp.to_dict())  # with the stages of issue 19
    return write_html(report, comp.results, out)


def chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    """Headless, sandboxless (root in CI), and with every host name unresolvable: nothing can load from
    the network, so what renders came from the file."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
                           *args], capture_output=True, text=True, timeout=120)


def test_the_page_references_nothing_outside_itself(page):
    text = page.read_text()
    assert external_references(text) == [] and "<script" not in text and "@import" not in text


def test_chromium_builds_the_charts_into_the_dom(page, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    charts = dom.split('<figure class="chart"')[1:]
    ids = [c.split('id="')[1].split('"')[0] for c in charts]
    assert ids == ["agreement-vs-latency", "latency-distributions", "before-after", "stage-seconds"]
    for chart in charts:
        assert "<svg" in chart and chart.count("<path") > 20  # axes, glyphs and marks, parsed into elements
    assert "max_agreement_regression" in dom and "2.22× [2.16–2.29]" in dom


def test_chromium_shows_the_serving_section(page, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    section = dom.split('<section id="serving">')[1].split("</section>")[0]
    head = [h for h in re.findall(r"<th>([^<]*)</th>", section)]
    assert head == ["artifact", "cold start", "first inference ms", "memory b1 MB", "memory b8 MB",
                    "batch consistency", "note"]
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", section)
    assert len(rows) == 4 and rows[2].split("</td><td>") == [
        "openvino int8 *", "200 ms (190–210 over 3)", "3.00", "150", "170", "same top-1 on 10000 (b1 vs b8, gap 0)", ""]
    assert "max_memory_growth b1" in dom and "max_memory_growth b8" in dom  # its gates, in the gate table


def test_chromium_shows_the_stages_section(page, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    section = dom.split('<section id="stages">')[1].split("</section>")[0]
    assert re.findall(r"<th>([^<]*)</th>", section) == ["stage", "seconds", "peak RSS MB"]
    rows = [r.split("</td><td>") for r in re.findall(r"<tr><td>(.*?)</td></tr>", section)]
    assert [r[0] for r in rows] == ["load", "data", "prune", "export", "search", "quantize+package", "verify",
                                    "serving", "write (so far)"]
    assert rows[4] == ["search", "61.0", "1830"] and rows[7] == ["serving", "22.9", "2140"]
    assert "whole build: 178 s, peak RSS 2140 MB (process tree)" in section
    chart = dom.split('<figure class="chart" id="stage-seconds">')[1].split("</figure>")[0]
    assert "Wall time per stage" in chart and chart.count("<path") > 20


def test_the_screenshot_shows_the_charts(page, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1280,3400", f"--screenshot={shot}", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert (pixels.min(axis=1) < 200).mean() > 0.02  # not blank
    for colour in (C0, C1, STAGE_GREEN):  # the baseline's, this build's and the stages' bars were painted
        assert (np.abs(pixels - colour).sum(axis=1) < 30).sum() > 500, colour


@pytest.fixture(scope="module")
def profiled_page(tmp_path_factory):
    """A build run with --profile: its Profile section and chart."""
    return write_html(with_profile(loaded(make_report())), [], tmp_path_factory.mktemp("profiled"))


def test_chromium_shows_the_profile_section_and_chart(profiled_page, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", profiled_page.as_uri()).stdout
    section = dom.split('<section id="profile">')[1].split("</section>")[0]
    items = re.findall(r"<li>(.*?)</li>", section)
    assert items[0] == ("openvino int8: 0.900 ms at batch 1 (profiler total 0.850 ms), 93.0% of it on named FocalNet "
                        "parts; MAC ops 44.4% at 11.3 GMAC/s, other ops 50.0%")
    assert "tensorrt int8: not profiled — edgefocal does not drive tensorrt's profiler" in items
    chart = dom.split('<figure class="chart" id="profile">')[1].split("</figure>")[0]
    assert "Where the time goes at batch 1" in chart and chart.count("<path") > 50
    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", profiled_page.as_uri())
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    for colour in (MAC_BLUE, REST_ORANGE):  # the MAC ops' and the rest's bars were painted
        assert (np.abs(pixels - colour).sum(axis=1) < 30).sum() > 500, colour
