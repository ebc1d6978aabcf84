"""benchmarks/scale.py: its tables and plot from made-up builds (with and without report.json's "stages"), its
options, and one run end to end on tiny settings (the default model, 50 and 100 eval images, OpenVINO only,
no search, a short bench, no serving stage: two real builds, about 100 s of CPU)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from benchmark_scripts import benchmark_script

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def scale():
    with benchmark_script("scale") as module:
        yield module


def _builds(scale):
    stages = [{"name": "load", "seconds": 1.5, "peak_rss_mb": 400.0},
              {"name": "verify", "seconds": 20.0, "peak_rss_mb": 900.0}]
    return [scale.Build("default", 200, ["python"], 0, 30.0, 1000.0, 800.0, stages, 900.0, report_seconds=29.0),
            scale.Build("default", 2000, ["python"], 1, 60.0, 2500.0, 1500.0, None, None, error="error: gate"),
            scale.Build("default", 10000, ["python"], -9, 90.0, 8000.0, 7000.0, error="Killed")]


def test_tables_give_time_memory_ratio_and_exit_per_size(scale):
    table = scale.build_table(_builds(scale))
    assert table[0].startswith("| eval images | exit | wall time (s) | peak RSS, process tree (MB) | × the 200-image")
    assert "| 200 | 0 | 30 | 1,000 | 1.00× | 800 |" in table
    assert "| 2,000 | 1 (gates) | 60 | 2,500 | 2.50× | 1,500 |" in table
    assert "| 10,000 | -9 (killed) | 90 | 8,000 | 8.00× | 7,000 |" in table
    assert "- 10,000 images, exit -9 (killed): Killed" in table


def test_stage_table_reads_report_stages_and_says_when_there_are_none(scale):
    builds = _builds(scale)
    table = scale.stage_table(builds)
    assert "| stage | 200: s | 200: peak RSS MB |" in table
    assert "| load | 1.5 | 400 |" in table and "| verify | 20.0 | 900 |" in table
    assert "| whole build (report) | 29.0 | 900 |" in table
    assert "No per-stage figures for: 2,000 images, 10,000 images." in table
    assert "has a \"stages\" key" in scale.stage_table(builds[1:])[0]
    assert scale.stages_of({}) == (None, None)
    assert scale.stages_of({"stages": [{"name": "x"}], "peak_rss_mb": 5.0}) == ([{"name": "x"}], 5.0)
    assert scale.stages_of({"stages": {"stages": [{"name": "x"}], "peak_rss_mb": 5.0}}) == ([{"name": "x"}], 5.0)
    assert scale.stage_name({"name": "write", "running": True}) == "write (so far)"


def test_plot_is_written(scale, tmp_path):
    scale.plot({"default": _builds(scale)}, tmp_path / "scale.svg")
    assert (tmp_path / "scale.svg").read_text().lstrip().startswith("<?xml")


def test_options(scale):
    args = scale.parse_args([])
    assert (args.models, args.sizes, args.targets) == (list(scale.MODELS), [200, 2000, 10000], list(scale.TARGETS))
    args = scale.parse_args(["--sizes", "100,50", "--models", "default", "--no-search",
                             "--set", "bench.batch_sizes=[1]"])
    assert args.sizes == [50, 100] and args.set == {"bench.batch_sizes": [1], "quantize.target_agreement": None}
    with pytest.raises(SystemExit):
        scale.parse_args(["--models", "defualt"])
    with pytest.raises(SystemExit):
        scale.parse_args(["--sizes", "20000"])


@pytest.mark.slow
def test_a_tiny_run_writes_the_tables_and_the_plot(tmp_path):
    out = tmp_path / "scale.md"
    cmd = [sys.executable, "benchmarks/scale.py", "--models", "default", "--sizes", "50,100", "--targets", "openvino",
           "--calib-size", "32", "--no-search", "--set", "bench.batch_sizes=[1]", "--set", "bench.iterations=3",
           "--set", "bench.rounds=1", "--set", "bench.warmup=1", "--set", "bench.cold_start_runs=0",
           "--set", "gates.min_agreement=0.9", "--set", "gates.max_top1_drop=null", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Build time and memory against the eval set's size\n\nWritten by `python benchmarks/")
    assert "That is NOT the full default matrix" in text and "mixed-precision search off;" in text
    assert "## edgefocal-fmnist (the embedded default, 32², trained)" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith(("| 50 |", "| 100 |"))]
    assert [(r[0], r[1]) for r in rows[:2]] == [("| 50", "0"), ("| 100", "0")], text  # both builds passed
    assert "Per stage" in text and "![peak RSS and wall time" in text and "(scale.svg)" in text
    assert "python -m edgefocal build --recipe $SCALE/default.yaml --target openvino" in text
    assert (tmp_path / "scale.svg").is_file()
