"""`edgefocal matrix`: combined outputs, resume without rebuilding, per-entry baselines, bad recipes and
failing entries. The fast tests script the build; the slow one kills a real matrix and restarts it."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest

from edgefocal.core import jsonable
from edgefocal.errors import BadInput
from edgefocal.gate import check_gates
from edgefocal.matrix import run_matrix
from sample_reports import edited, loaded, make_report, with_serving

REPO = Path(__file__).resolve().parent.parent


def write_recipes(folder: Path, names=("ov-int8", "ort-int8", "trt-int8")) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / f"{n}.yaml").write_text("gates: {min_agreement: 0.99}\n")
    return sorted(folder.glob("*.yaml"))


class FakeBuild:
    """Stands in for pipeline.build: returns the sample report, records which outputs it built, and can
    be told to be interrupted at a given entry or to fail it."""

    def __init__(self, interrupt_at: str | None = None, fail_at: str | None = None, serving: bool = False):
        self.built: list[str] = []
        self.interrupt_at, self.fail_at, self.serving = interrupt_at, fail_at, serving

    def __call__(self, recipe, console=None):
        name = Path(recipe.output).name
        if name == self.interrupt_at:
            raise KeyboardInterrupt
        if name == self.fail_at:
            raise BadInput("target tensorrt cannot be built on this machine")
        self.built.append(name)
        report = loaded(with_serving(make_report()) if self.serving else make_report())  # rows as core.Row
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


def test_the_table_shows_every_serving_figure(tmp_path):
    write_recipes(tmp_path / "r", names=("ov-int8",))
    run_matrix([tmp_path / "r"], tmp_path / "m", build=FakeBuild(serving=True))
    md = (tmp_path / "m" / "matrix.md").read_text()
    head = md.splitlines()[4]
    for column in ("first inference", "cold start", "memory MB", "batch-consistent"):
        assert f"| {column} |" in head
    row = next(line for line in md.splitlines() if line.startswith("| ov-int8 | openvino int8 |"))
    assert "| 3.00 ms |" in row and "| 200 ms | 170 (b8) | yes |" in row  # first inference, cold start, memory


# --- matrix.html linked to the entries' trend charts (--history) ------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LINKED = {"top-1": "top1", "agreement": "agreement", "×ref (smallest batch)": "speedup", "MB": "size",
          "cold start": "cold_start", "memory MB": "serving_memory"}  # the columns history.html charts


class Page(HTMLParser):
    """The table's rows as [(cell text, href or None)], every element's id and data-* attributes."""

    def __init__(self, text: str):
        super().__init__()
        self.rows: list[list[tuple[str, str | None]]] = []
        self.ids: dict[str, dict] = {}  # the first element of each id, as getElementById finds it
        self.count: dict[str, int] = {}
        self.hrefs: list[str] = []
        self._href = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.setdefault(a["id"], a)
            self.count[a["id"]] = self.count.get(a["id"], 0) + 1
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell, self._href = "", None
        elif tag == "a":
            self._href = a.get("href")
            self.hrefs.append(self._href)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append((self._cell, self._href))
            self._cell = None


def accepted_builds(root: Path, report: Path) -> Path:
    """An older accepted build (agreement 0.1 pt lower) and this one, as history.sh lays them out."""
    for i, commit in enumerate(("1a2b3c4", "e3b0c44")):
        data = json.loads(report.read_text())
        if i == 0:
            data = edited(data, "openvino int8", agreement=0.9901)
        (root / commit).mkdir(parents=True)
        (root / commit / "report.json").write_text(json.dumps(data))
        created = dt.datetime(2026, 11, 2 + 7 * i, tzinfo=dt.timezone.utc).isoformat()
        (root / commit / "manifest.json").write_text(json.dumps({"created": created}))
    return root


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    """What CI does on main: the matrix; each entry's history from its report (but trt-int8's); then the same
    matrix through the CLI with --history: every entry resumes (a build would fail), matrix.html is linked."""
    from edgefocal.cli import main

    tmp = tmp_path_factory.mktemp("linked")
    write_recipes(tmp / "recipes")
    run_matrix([tmp / "recipes"], tmp / "gate-out", build=FakeBuild(serving=True))
    for entry in ("ov-int8", "ort-int8"):
        builds = accepted_builds(tmp / "history" / entry, tmp / "gate-out" / entry / "report.json")
        assert main(["history", str(builds), "--output", str(tmp / "history-out" / entry)]) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("edgefocal.pipeline.build", lambda *a, **k: pytest.fail("the linking rerun rebuilt an entry"))
        assert main(["matrix", str(tmp / "recipes"), "--output", str(tmp / "gate-out"),
                     "--history", str(tmp / "history-out")]) == 0
    return tmp


def resolve(matrix: Path, href: str) -> tuple[Path, str]:
    """A relative link as a browser resolves it from matrix.html: the file and the fragment."""
    parts = urlsplit(href)
    assert not parts.scheme and not parts.netloc and not parts.path.startswith("/"), f"not relative: {href}"
    return (matrix.parent / unquote(parts.path)).resolve(), unquote(parts.fragment)


def test_linked_matrix_html_links_each_artifact_and_figure_to_its_chart(linked):
    matrix = linked / "gate-out" / "matrix.html"
    page = Page(matrix.read_text())
    head = [text for text, _ in page.rows[0]]
    rows = {(cells[0][0].split(" (")[0], cells[1][0]): dict(zip(head, cells)) for cells in page.rows[1:]}
    assert len(rows) == 6 and all(link is None for text, link in page.rows[0])
    targets: dict[Path, Page] = {}
    for (entry, artifact), cells in rows.items():
        links = {col: href for col, (_, href) in cells.items() if href}
        if entry == "trt-int8":  # no history made for it: no link, rather than a dead one
            assert links == {}
            continue
        assert set(links) == {"entry", "artifact", *LINKED}
        for column, href in links.items():
            file, fragment = resolve(matrix, href)
            assert file == (linked / "history-out" / entry / "history.html").resolve()
            target = targets.setdefault(file, Page(file.read_text()))
            if column == "entry":
                assert fragment == ""
                continue
            assert target.count.get(fragment) == 1, f"{href}: not exactly one such id in {file}"
            element = target.ids[fragment]
            assert element["data-artifact"] == artifact and element.get("data-figure") == LINKED.get(column)
    assert "Trends: 2 of 3 entries" in matrix.read_text()


def test_without_a_history_matrix_html_has_no_links(tmp_path):
    write_recipes(tmp_path / "r")
    run_matrix([tmp_path / "r"], tmp_path / "m", build=FakeBuild(serving=True))
    text = (tmp_path / "m" / "matrix.html").read_text()
    assert Page(text).hrefs == [] and "Trends:" not in text
    (tmp_path / "empty").mkdir()  # a history without a page for any entry: no links either
    run_matrix([tmp_path / "r"], tmp_path / "m", build=FakeBuild(), history=tmp_path / "empty")
    assert Page((tmp_path / "m" / "matrix.html").read_text()).hrefs == []
    with pytest.raises(BadInput, match="is not a directory"):
        run_matrix([tmp_path / "r"], tmp_path / "m", build=FakeBuild(), history=tmp_path / "nowhere")


CHECK = """<!DOCTYPE html><html><body><pre id="out">pending</pre><iframe id="m" src="gate-out/matrix.html"></iframe>
<script>
function get(url) { const x = new XMLHttpRequest(); x.open("GET", url, false); x.send(); return x.responseText; }
window.onload = () => {
  const out = [];
  for (const a of document.getElementById("m").contentDocument.querySelectorAll("a")) {
    const url = new URL(a.href), doc = new DOMParser().parseFromString(get(url.href.split("#")[0]), "text/html");
    const el = url.hash ? doc.getElementById(decodeURIComponent(url.hash.slice(1))) : doc.body;
    out.push([a.getAttribute("href"), url.protocol, doc.title, el ? el.tagName : null]);
  }
  document.getElementById("out").textContent = JSON.stringify(out);
};
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_chromium_follows_every_link_to_an_existing_chart(linked, tmp_path):
    """matrix.html rendered in headless Chromium (offline): the browser resolves each link, loads its page
    from disk and finds the anchor in the DOM it parses."""
    check = linked / "check.html"
    check.write_text(CHECK)
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
                          "--allow-file-access-from-files", "--dump-dom", check.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = json.loads(dom.split('<pre id="out">')[1].split("</pre>")[0])
    assert len(found) == 4 * (2 + len(LINKED))  # ov-int8 and ort-int8: two artifacts each
    for href, protocol, title, tag in found:
        assert protocol == "file:" and title.startswith("edgefocal history") and tag in ("BODY", "H2", "FIGURE"), href


TINY = """targets: [onnxruntime]
calibration: {source: fashion-mnist, split: train, size: 32}
eval: {source: fashion-mnist, split: test, size: %d}
bench: {batch_sizes: [1], warmup: 1, iterations: 3, rounds: 1, cold_start_runs: 1}
quantize: {target_agreement: null}
gates: {max_latency_rounds: 1}
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
