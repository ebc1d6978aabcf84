"""Every command in README's "Use in CI" runs here as README writes it, in order, in one working directory,
after the earlier builds it compares with, and exits as README says it does (a CI job's checkout: none of the
"Common commands" ran there; they run in tests/test_readme_commands.py). What stands in, and why:
tests/readme_commands.py."""
from __future__ import annotations

import pytest

from readme_commands import CI, fast_recipes, readme_commands, readme_env, run_in_order

pytestmark = pytest.mark.slow


def test_every_ci_command_runs_and_exits_as_readme_says(tmp_path):
    commands = readme_commands(CI)
    assert len(commands) >= 4 and any(c.startswith("edgefocal matrix") for c in commands)
    workdir, summary = tmp_path / "ci", tmp_path / "step_summary.md"
    workdir.mkdir()
    fast_recipes(workdir)
    run_in_order(commands, workdir, readme_env(summary))
    assert (workdir / "build" / "edgefocal" / "report.md").exists()
    assert "openvino int8" in (workdir / "junit.xml").read_text()
    assert summary.read_text().strip()
    assert (workdir / "gate-out" / "matrix.md").exists() and (workdir / "history-out" / "history.html").exists()
