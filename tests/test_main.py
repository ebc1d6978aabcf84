"""`python -m edgefocal` (edgefocal/__main__.py): the default build, with no arguments, as README says, meets the
default model's bars. Its own file, apart from tests/test_cli.py's builds: the two run on two workers."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_module_entry_point_default_build_meets_the_bars(tmp_path):
    """`python -m edgefocal build` with no arguments, as the README says: the full 10k test split."""
    proc = subprocess.run([sys.executable, "-m", "edgefocal", "build", "--output", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=1800)  # the serving stage (cold start in child processes, batch-1 pass) adds minutes on a loaded machine
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "edgefocal: edgefocal-fmnist" in proc.stdout
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["eval"]["count"] == 10000
    for row in (r for r in report["rows"] if r.get("requested")):
        assert row["top1_drop"] <= 0.2 and row["agreement"] >= 0.995, row["label"]  # the default build's bar
    search = report["precision_plan"]["mixed_precision"]
    assert search["validation"]["images"] == 1000 and search["seconds"] < 300  # confirmed on ≥ 500 held-out images
    assert search["target_agreement"] < 0.999 and search["selection"]["images"] >= 842 and not search["warnings"]
