"""`edgefocal sensitivity`: per-part INT8 cost on held-out images, in FocalNet terms, with a table, JSON and
an SVG chart."""
from __future__ import annotations

import json

from edgefocal.cli import main


def test_sensitivity_command_names_parts_as_torch_modules(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("calibration: {source: fashion-mnist, split: train, size: 64}\n"
                      "eval: {source: fashion-mnist, split: test, size: 16}\n")
    out = tmp_path / "sens"
    assert main(["sensitivity", "--recipe", str(recipe), "--target", "onnxruntime", "--images", "200",
                 "--output", str(out)]) == 0
    result = json.loads((out / "sensitivity.json").read_text())
    rows = result["sensitivity"]
    assert result["measured_on"] == ["onnxruntime"] and result["images"] == 200
    # the default's INT8 parts: stem, 3 downsample convs, 5 blocks × (f, h, proj, fc1, fc2)
    assert len(rows) == 29 and {r["role"] for r in rows} == {"stem", "downsample", "f", "h", "proj", "fc1", "fc2"}
    assert all(r["module"].startswith(("stem.", "layers.")) for r in rows)
    assert rows == sorted(rows, key=lambda r: -r["kl_cost"])
    assert 0 < sum(r["latency_share"] for r in rows) < 1
    assert "<svg" in (out / "sensitivity.svg").read_text()
    printed = capsys.readouterr().out
    assert "stage 1 block 1 mlp fc1" in printed and "layers.0.blocks.0.mlp.fc1" in printed
