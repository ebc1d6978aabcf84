"""README's Python API example runs as written (README.md's "## Python API" section)."""
from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTPUT = 'output="build/api-example"'


def api_example() -> tuple[str, str]:
    """(file, the one python block of its "## Python API" section)."""
    text = (REPO / "README.md").read_text()
    assert "\n## Python API\n" in text, "README.md has no '## Python API' section"
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"README.md: expected one python block under '## Python API', found {len(blocks)}"
    return "README.md", blocks[0]


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    name, code = api_example()
    assert OUTPUT in code, f"{name}'s example no longer writes to build/api-example"
    out = tmp_path / "api-example"
    monkeypatch.chdir(REPO)  # it reads the embedded default's weights by their path in a checkout
    exec(compile(code.replace(OUTPUT, f"output={str(out)!r}"), f"{name} (Python API)", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert re.search(r"openvino int8\s+top-1 \d+\.\d+%  agreement \d+\.\d+%  p50 \d+\.\d+ ms", printed), printed
    assert f"{out} passed" in printed
    rows = {r["label"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert rows["openvino int8"]["agreement"] >= 0.98 and rows["torch fp32 (reference)"]["top1"] > 0.85
