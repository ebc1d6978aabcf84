"""The engine-layers section of report.md and report.html: the fusion spots and the layer counts predicted on
paper, from facts computed on a real (hand-made) Q/DQ ONNX, and the built engine's count replacing them."""
from __future__ import annotations

import sys
from pathlib import Path

from edgefocal import layer_report
from edgefocal.backends.tensorrt.on_paper import report_facts
from edgefocal.core import Row
from edgefocal.report import to_markdown
from edgefocal.report_html import to_html
from sample_reports import loaded, make_report

sys.path.insert(0, str(Path(__file__).parent / "backends" / "tensorrt"))
from hand_graphs import HandGraph  # noqa: E402


def _facts(tmp_path) -> dict:
    h = HandGraph()
    f = h.conv("input", 32, 67, "layers.0.blocks.0.modulation.f")
    y = h.conv(h.node("Add", ["input", h.conv("input", 32, 32, "layers.0.blocks.0.modulation.proj")],
                      "layers.0.blocks.0/Add"), 32, 64, "layers.1.downsample.proj")
    y = h.node("Concat", [f, y], "model/Concat", axis=1)
    out = tmp_path / "tensorrt"
    out.mkdir(parents=True)
    return report_facts(h.model(y), out)


def _report(tmp_path, engine_layers: list | None = None) -> dict:
    report = loaded(make_report())
    row = Row("tensorrt int8 (Q/DQ ONNX via ONNX Runtime)", "tensorrt", "int8", requested=True, path="tensorrt/m.onnx")
    row.facts.update(_facts(tmp_path))
    report["rows"].append(row)
    if engine_layers is not None:
        engine = Row("tensorrt int8 (engine)", "tensorrt", "int8", requested=True, path="tensorrt/m.engine")
        engine.facts.update(layers=engine_layers, residency={"GPU": len(engine_layers)})
        report["rows"].append(engine)
    return report


def test_report_md_lists_the_spots_by_rule_and_the_prediction(tmp_path):
    facts = _facts(tmp_path)
    assert (tmp_path / "tensorrt" / "engine_on_paper.json").exists()
    assert facts["engine_on_paper"]["layers_file"] == "tensorrt/engine_on_paper.json"
    assert {s["rule"] for s in facts["fusion_spots"]} == {"int8-channels", "q-after-float-add"}
    md = to_markdown(_report(tmp_path / "a"), [])
    assert "## Engine layers on paper" in md
    paper = facts["engine_on_paper"]
    assert f"predicted on paper, {paper['layers']} layers: {paper['int8']} INT8" in md and "not an engine" in md
    assert "| int8-channels | 1 | stage 1 block 1 modulation f |" in md
    assert "| q-after-float-add | 1 | stage 1 block 1 residual |" in md
    assert "every predicted layer in `tensorrt/engine_on_paper.json`" in md


def test_a_built_engine_replaces_the_prediction(tmp_path):
    layers = [{"name": "stem.proj/Conv", "type": "Convolution", "device": "GPU"}] * 3
    md = to_markdown(_report(tmp_path, layers), [])
    assert "Replaced by the engine built here (tensorrt int8 (engine))" in md
    assert "- tensorrt int8 (engine): the engine's own layer list: 3 layers (3 GPU)" in md


def test_report_html_has_the_section_and_a_report_without_facts_has_none(tmp_path):
    page = to_html(_report(tmp_path), [])
    assert '<section id="engine-layers"><h2>Engine layers on paper</h2>' in page
    assert "<td>int8-channels</td><td>1</td>" in page
    plain = loaded(make_report())
    assert not layer_report.has_layers(plain) and layer_report.markdown(plain) == []
    assert "engine-layers" not in to_html(plain, [])
