"""`edgefocal profile` and `build --profile` on a real build of the embedded default (OpenVINO and ONNX Runtime):
profile.json beside the artifacts, report.md's section and report.html's chart, and one-line errors."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from edgefocal.cli import main

FAST = {"calibration": {"source": "fashion-mnist", "split": "train", "size": 32},
        "eval": {"source": "fashion-mnist", "split": "test", "size": 100},
        "bench": {"batch_sizes": [1], "warmup": 1, "iterations": 3, "rounds": 1, "cold_start_runs": 0},
        "quantize": {"target_agreement": None}, "gates": {"min_agreement": 0.9}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("profiled")
    (root / "fast.yaml").write_text(yaml.safe_dump(FAST))
    code = main(["build", "--recipe", str(root / "fast.yaml"), "--target", "openvino,onnxruntime", "--profile",
                 "--output", str(root / "out"), "--quiet"])
    assert code == 0
    return root / "out"


def test_build_profile_writes_profile_json_with_the_outputs(built):
    doc = json.loads((built / "profile.json").read_text())
    profiles = {p["label"]: p for p in doc["profiles"]}
    assert set(profiles) == {"openvino int8", "onnxruntime int8 (U8S8 Q/DQ)"}  # the requested artifacts only
    for p in profiles.values():
        assert (built / p["artifact"]).is_file() and p["batch"] == 1
        assert p["measured_ms"] > 0 and p["attributed_share"] == pytest.approx(p["attributed_ms"] / p["basis_ms"], abs=1e-3)
        assert p["mac_ops"]["macs"] == 4_521_728 and p["mac_ops"]["gmac_per_s"] > 0
        assert sum(o["ms"] for o in p["ops"]) == pytest.approx(p["profiled_ms"], abs=1e-3)
        assert p["int8_share"] > 0 and any(o["int8"] for o in p["ops"])
    report = json.loads((built / "report.json").read_text())
    assert [a["label"] for a in report["profile"]["artifacts"]] == [p["label"] for p in doc["profiles"]]
    assert "profile" in [s["name"] for s in report["stages"]]
    md = (built / "report.md").read_text()
    assert re.search(r"- openvino int8: [\d.]+ ms at batch 1 \(profiler total [\d.]+ ms\), [\d.]+% of it on named "
                     r"FocalNet parts; MAC ops [\d.]+% at [\d.]+ GMAC/s", md), md.split("## Profile")[-1][:400]


def test_report_html_has_the_profile_chart(built):
    page = (built / "report.html").read_text()
    chart = page.split('<figure class="chart" id="profile">')[1].split("</figure>")[0]
    assert "<svg" in chart and chart.count("<path") > 50
    assert '<section id="profile">' in page and "of it on named FocalNet parts" in page


@pytest.mark.parametrize("artifact, int8", [("openvino/model_int8.xml", True), ("openvino/model_fp32.xml", False),
                                            ("onnxruntime/model_int8_u8s8.onnx", True),
                                            ("onnxruntime/model_fp32.onnx", False)])
def test_profile_writes_profile_json(built, artifact, int8, tmp_path, capsys):
    out = tmp_path / "p" / "profile.json"
    assert main(["profile", str(built / artifact), "--threads", "1", "--runs", "5", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "attributed to named FocalNet parts" in printed and "op kind" in printed and f"wrote {out}" in printed
    (p,) = json.loads(out.read_text())["profiles"]
    assert p["artifact"] == str(built / artifact) and p["runs"] == 5 and p["threads"] == 1
    assert (p["int8_share"] > 0) == int8
    assert not list(out.parent.glob(".profile.json.*"))  # written atomically: no temporary left


def test_profile_at_another_batch(built, tmp_path):
    out = tmp_path / "profile.json"
    assert main(["profile", str(built / "openvino/model_int8.xml"), "--batch", "3", "--runs", "3", "--output", str(out)]) == 0
    (p,) = json.loads(out.read_text())["profiles"]
    assert p["batch"] == 3 and p["mac_ops"]["macs"] == 3 * 4_521_728


def _error(capsys, *argv) -> tuple[str, str]:
    assert main(["profile", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("error: ") and err[1].startswith("hint: "), err
    return err[0], err[1]


def test_a_missing_artifact_is_one_line(tmp_path, capsys):
    error, _ = _error(capsys, tmp_path / "nope.xml", "--output", tmp_path / "p.json")
    assert error == f"error: artifact {tmp_path / 'nope.xml'} does not exist"
    assert not (tmp_path / "p.json").exists()


def test_an_artifact_of_a_runtime_edgefocal_does_not_profile_is_one_line(built, tmp_path, capsys):
    """A Core ML package (its manifest entry says coreml) gets the line that profiling needs Core ML's profiler."""
    manifest = json.loads((built / "manifest.json").read_text())
    out = tmp_path / "coreml-build"
    (out / "coreml" / "model_w8a8.mlpackage").mkdir(parents=True)
    manifest["artifacts"] = [{"path": "coreml/model_w8a8.mlpackage", "target": "coreml", "precision": "int8",
                              "label": "coreml int8", "sha256": "0" * 64, "size_bytes": 1}]
    (out / "manifest.json").write_text(json.dumps(manifest))
    error, hint = _error(capsys, out / "coreml" / "model_w8a8.mlpackage", "--output", tmp_path / "p.json")
    assert error == (f"error: {out / 'coreml' / 'model_w8a8.mlpackage'}: profiling a coreml artifact needs coreml's "
                     "own profiler, which edgefocal does not drive")
    assert "onnxruntime or openvino artifacts" in hint
    assert not (tmp_path / "p.json").exists()


def test_a_bad_count_is_one_line(built, capsys):
    error, hint = _error(capsys, built / "openvino/model_int8.xml", "--batch", "0")
    assert error == "error: edgefocal profile: --batch 0 is not a positive count" and hint == "hint: pass --batch 1 or more"
