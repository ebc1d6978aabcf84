"""report.md's Stages section (each stage's seconds and peak RSS, the build's peak RSS), and reports from
before it, without stages, still rendering (baselines are old reports)."""
from __future__ import annotations

import json

from edgefocal.baseline import load_report
from edgefocal.report import stage_fields, to_markdown
from edgefocal.report_html import to_html
from sample_reports import STAGES, loaded, make_report, schema1_report, with_serving, with_stages


def test_report_md_has_the_stages_table_and_the_build_peak():
    md = to_markdown(loaded(with_stages(with_serving(make_report()))), [])
    section = md.split("## Stages\n")[1]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert table[0] == "| stage | seconds | peak RSS MB |"
    assert table[2:] == ["| load | 2.1 | 850 |", "| data | 3.4 | 910 |", "| prune | 0.0 | 910 |",
                         "| export | 4.2 | 1020 |", "| search | 61.0 | 1830 |", "| quantize+package | 35.5 | 1650 |",
                         "| verify | 48.2 | 1400 |", "| serving | 22.9 | 2140 |", "| write (so far) | 0.4 | 1390 |"]
    assert "- whole build: 178 s, peak RSS 2140 MB (process tree)" in section
    assert md.index("## Serving") < md.index("## Stages")


def test_stage_fields_land_in_report_json_as_stages_and_peak_rss():
    fields = stage_fields(STAGES)
    assert fields == {"stages": STAGES["stages"], "peak_rss_mb": 2140.0}
    assert stage_fields(None) == {}  # a build without a meter writes the old layout


def test_an_old_report_without_stages_still_renders(tmp_path):
    for old in (make_report(), schema1_report(), with_serving(make_report())):
        (tmp_path / "report.json").write_text(json.dumps(old))
        report = load_report(tmp_path)
        md, page = to_markdown(report, []), to_html(report)
        assert "## Stages" not in md and "peak RSS" not in md and "# edgefocal build report" in md
        assert 'id="stages"' not in page and 'id="stage-seconds"' not in page and "agreement-vs-latency" in page


def test_report_md_says_how_long_each_evaluation_took():
    report = with_stages(with_serving(make_report()))
    for row, seconds in zip(report["rows"], (41.2, 9.04)):
        row["eval_seconds"] = seconds
    md = to_markdown(loaded(report), [])
    line = next(x for x in md.split("## Stages\n")[1].splitlines() if x.startswith("- evaluation"))
    first, second = report["rows"][0]["label"], report["rows"][1]["label"]
    assert line.startswith(f"- evaluation ({report['eval']['count']} images): {first} 41 s, {second} 9 s")
