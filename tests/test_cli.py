"""The CLI end to end on the embedded default, every bad input, and gate exit codes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import xml.etree.ElementTree as ET

import pytest

from edgefocal.cli import main

REPO = Path(__file__).resolve().parent.parent
FAST = """
calibration: {source: fashion-mnist, split: train, size: 64}
eval: {source: fashion-mnist, split: test, size: 300}
bench: {batch_sizes: [1, 4], warmup: 1, iterations: 3, rounds: 1, cold_start_runs: 1}  # serving's figures: test_serving.py
quantize: {target_agreement: null}  # the mixed-precision search has tests of its own
gates: {max_latency_rounds: 1}  # no re-measuring on this busy machine: latency stability has tests of its own
"""


@pytest.fixture
def fast_recipe(tmp_path):
    p = tmp_path / "fast.yaml"
    p.write_text(FAST)
    return p


def run(*args) -> int:
    return main([*map(str, args), "--quiet"] if args and args[0] == "build" else list(map(str, args)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real build through both CPU targets, shared by the assertions below."""
    out = tmp_path_factory.mktemp("build") / "out"
    recipe = tmp_path_factory.mktemp("r") / "fast.yaml"
    recipe.write_text(FAST)
    code = run("build", "--recipe", recipe, "--target", "openvino,onnxruntime", "--output", out)
    return code, out


def test_build_writes_verified_artifacts(built):
    code, out = built
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    rows = {r["label"]: r for r in report["rows"]}
    assert set(rows) >= {"torch fp32 (reference)", "openvino fp32", "openvino int8", "onnxruntime fp32",
                         "onnxruntime int8 (U8S8 Q/DQ)"}
    for label, row in rows.items():
        for key in ("top1", "top1_drop", "agreement", "latency_ms", "speedup_vs_reference"):
            assert key in row, (label, key)
        assert set(row["latency_ms"]) == {"1", "4"}
        assert row["latency_ms"]["1"]["p50"] <= row["latency_ms"]["1"]["p99"]
    assert rows["openvino fp32"]["agreement"] == 1.0  # f32 hint: the FP32 IR really is FP32
    assert rows["onnxruntime fp32"]["max_abs_diff"] < 1e-3
    assert rows["openvino int8"]["agreement"] > 0.95 and rows["openvino int8"]["requested"]
    assert report["export"]["onnx_max_abs_diff_vs_torch"] < 1e-3
    assert (out / rows["openvino int8"]["path"]).exists() and (out / "report.md").exists()


def test_manifest_makes_the_build_reproducible(built):
    _, out = built
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["model"]["checkpoint_sha256"]) == 64 and len(m["calibration"]["fingerprint"]) == 64
    assert m["calibration"]["count"] == 64 and m["recipe"]["calibration"]["size"] == 64
    assert {"torch", "onnxruntime", "openvino", "nncf"} <= set(m["packages"])
    assert m["machine"]["cpu_count"] >= 1
    import hashlib

    art = next(a for a in m["artifacts"] if a["path"].endswith("model_int8_u8s8.onnx"))
    assert hashlib.sha256((out / art["path"]).read_bytes()).hexdigest() == art["sha256"]


def test_failed_gate_exits_1_and_names_the_gate(fast_recipe, tmp_path, capsys):
    # --on-unstable fail: on a busy machine the latency gate may be inconclusive, which must fail too
    code = run("build", "--recipe", fast_recipe, "--target", "onnxruntime", "--min-speedup", "1000",
               "--on-unstable", "fail", "--batch-sizes", "1", "--output", tmp_path / "o")
    assert code == 1
    err = capsys.readouterr().err
    assert "min_speedup" in err and "bound 1000" in err
    assert (tmp_path / "o" / "report.json").exists()  # the report is kept: CI needs it to see why


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[0].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[0]


@pytest.mark.parametrize("args, expected", [
    (["--target", "tensorrtt"], "did you mean 'tensorrt'"),
    (["--target", "onnxruntime", "--precision", "fp16"], "does not support precision fp16"),
    (["--precision", "int4"], "precision"),
    (["--checkpoint", "/nonexistent/w.safetensors"], "/nonexistent/w.safetensors does not exist"),
    (["--model", "focalnet_tiny_srf", "--checkpoint", "{default_weights}"], "does not fit the architecture"),
])
def test_bad_input_is_one_line_exit_2(args, expected, fast_recipe, tmp_path, capsys):
    weights = REPO / "edgefocal" / "default_model" / "focalnet_fmnist.safetensors"
    args = [a.replace("{default_weights}", str(weights)) for a in args]
    assert run("build", "--recipe", fast_recipe, *args, "--output", tmp_path / "o") == 2
    assert expected in _error(capsys)
    assert not (tmp_path / "o").exists()


def test_corrupt_checkpoint(fast_recipe, tmp_path, capsys):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"\x80\x02garbage")
    assert run("build", "--recipe", fast_recipe, "--checkpoint", bad, "--output", tmp_path / "o") == 2
    assert str(bad) in _error(capsys)


def test_empty_calibration_set_and_corrupt_image(fast_recipe, tmp_path, capsys):
    from PIL import Image

    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    assert run("build", "--recipe", fast_recipe, "--calib-dir", empty, "--output", tmp_path / "o") == 2
    assert "holds no images" in _error(capsys)
    folder = tmp_path / "imgs"
    (folder / "shirt").mkdir(parents=True)
    Image.fromarray(__import__("numpy").zeros((28, 28), "uint8")).save(folder / "shirt" / "ok.png")
    (folder / "shirt" / "bad.png").write_bytes(b"\x89PNG broken")
    assert run("build", "--recipe", fast_recipe, "--calib-dir", folder, "--output", tmp_path / "o") == 2
    assert "bad.png is corrupt" in _error(capsys)
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.staging-*"))


def test_unwritable_output(fast_recipe, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permission bits; a file in the way is unwritable for all
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "out"
    else:
        target = locked / "out"
    assert run("build", "--recipe", fast_recipe, "--output", target) == 2
    assert "not writable" in _error(capsys)


def test_interrupted_build_leaves_nothing(fast_recipe, tmp_path, monkeypatch, capsys):
    import edgefocal.export

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgefocal.export, "onnx_from_torch", interrupt)
    assert run("build", "--recipe", fast_recipe, "--target", "onnxruntime", "--output", tmp_path / "o") == 130
    assert "interrupted" in _error(capsys)
    assert list(tmp_path.iterdir()) == [fast_recipe]


def test_previous_output_survives_a_failed_rebuild(built, fast_recipe, capsys):
    _, out = built
    before = (out / "manifest.json").read_text()
    assert run("build", "--recipe", fast_recipe, "--model", "focalnet_nope", "--output", out) == 2
    assert (out / "manifest.json").read_text() == before


def test_doctor_lists_every_target(capsys):
    assert run("doctor") == 0
    out = capsys.readouterr().out
    for name in ("onnxruntime", "openvino", "tensorrt", "coreml"):
        assert name in out


def test_debug_shows_the_traceback(fast_recipe, tmp_path):
    with pytest.raises(Exception, match="unknown target"):
        main(["--debug", "build", "--recipe", str(fast_recipe), "--target", "nope", "--output", str(tmp_path / "o")])


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is present")
def test_tensorrt_without_tensorrt_builds_the_qdq_onnx_and_prints_the_engine_command(fast_recipe, tmp_path, capsys):
    out = tmp_path / "trt"
    assert main(["build", "--recipe", str(fast_recipe), "--target", "tensorrt", "--precision", "int8",
                 "--batch-sizes", "1", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "python -m edgefocal engine --onnx" in printed.replace("\n", "")
    report = json.loads((out / "report.json").read_text())
    proxy, engine = [r for r in report["rows"] if r["target"] == "tensorrt"]
    assert proxy["proxy_for"] == "TensorRT engine" and proxy["agreement"] > 0.95
    assert engine["skipped"] and (out / "tensorrt" / "model_int8_qdq.onnx").exists()
    # the engine on paper, for lack of one: 29 INT8 convs predicted, the fusion spots listed, in all three reports
    paper = proxy["engine_on_paper"]
    assert paper["int8"] == 29 and (out / paper["layers_file"]).exists() and "not an engine" in paper["note"]
    assert {s["rule"] for s in proxy["fusion_spots"]} == {"int8-channels", "int8-shuffle", "q-after-float-add"}
    assert "## Engine layers on paper" in (out / "report.md").read_text()
    assert 'id="engine-layers"' in (out / "report.html").read_text()
    from edgefocal.backends.tensorrt.conformance import check_tensorrt_qdq

    assert not [v for v in check_tensorrt_qdq(out / "tensorrt" / "model_int8_qdq.onnx") if v.severity == "error"]
    # on a Jetson CI runner the same build must not pass silently without an engine
    assert main(["build", "--recipe", str(fast_recipe), "--target", "tensorrt", "--precision", "int8",
                 "--batch-sizes", "1", "--require-engine", "--output", str(tmp_path / "req"), "--quiet"]) == 1
    assert "required artifact built" in capsys.readouterr().err


def test_pruned_build_reports_what_pruning_cost(tmp_path, capsys):
    """Pruning's share and INT8's share are reported and bounded apart: a pruning bound no pruning can meet fails
    the build, naming pruning's share, while INT8's share (vs the pruned FP32 model) passes its own gate."""
    out, recipe = tmp_path / "pruned", tmp_path / "pruned.yaml"
    recipe.write_text(FAST.replace("gates: {", "gates: {prune_max_top1_drop: 1.0, prune_min_agreement: 0.9999, "
                                   "min_agreement: 0.98, ") + "prune: {recover_steps: 50, recover_images: 800}\n")
    assert run("build", "--recipe", recipe, "--target", "openvino", "--prune", "channels:0.3", "--calib-size", 300,
               "--batch-sizes", "1", "--output", out) == 1
    assert "prune_min_agreement for torch fp32 (pruned)" in (err := capsys.readouterr().err)
    assert "min_agreement for openvino int8" not in err  # INT8's share passed
    report = json.loads((out / "report.json").read_text())
    gates = {g["gate"]: g for g in report["gates"]}
    assert not gates["prune_min_agreement"]["passed"] and gates["prune_max_top1_drop"]["passed"]
    int8_row = next(r for r in report["rows"] if r["label"] == "openvino int8")
    assert gates["min_agreement"]["value"] == int8_row["agreement_vs_pruned"] >= 0.98
    assert "what pruning cost (pruned FP32 vs the reference)" in (out / "report.md").read_text()
    p = report["prune"]
    assert p["method"] == "channels" and 0.29 <= 1 - p["macs_after"] / p["macs_before"] <= 0.30
    assert p["params_after"] < p["params_before"]
    assert p["allocation"] == "macs" and p["stage_weights"] == [1.0] * 4  # the default: by MACs, no clock
    rows = {r["label"]: r for r in report["rows"]}
    assert rows["torch fp32 (pruned)"]["top1_drop"] <= 1.0  # what pruning cost, before INT8
    assert rows["openvino int8"]["top1_drop"] <= 1.5
    assert "## Pruning" in (md := (out / "report.md").read_text()) and f"stage weights {p['stage_weights']}" in md
    # recovery distilled on held-out train images, 7/8 of them, and was judged on the rest
    assert p["recover"]["steps"] == 50 and (p["recover"]["images"], p["recover"]["check_images"]) == (700, 100)
    assert "- recovery: 50 distillation steps on 700 held-out images" in md


def test_removed_accuracy_control_in_a_recipe_is_exit_2(tmp_path, capsys):
    """quantize.max_agreement_drop (NNCF accuracy control) is gone: the mixed-precision search replaces it."""
    recipe = tmp_path / "ac.yaml"
    recipe.write_text("quantize: {max_agreement_drop: 0.01}\n")
    assert run("build", "--recipe", recipe, "--target", "openvino", "--output", tmp_path / "o") == 2
    assert "quantize.max_agreement_drop: Extra inputs are not permitted" in _error(capsys)
    assert not (tmp_path / "o").exists()


def test_engine_subcommand_without_tensorrt(tmp_path, tiny_focalnet, monkeypatch, capsys):
    """`edgefocal engine` refuses an FP32 graph for int8 (TensorRT's Q/DQ rules) and says TensorRT is missing."""
    from edgefocal.export import onnx_from_torch
    from edgefocal.backends.tensorrt import engine as engine_mod

    monkeypatch.setattr(engine_mod, "import_tensorrt", lambda: None)
    monkeypatch.setattr(engine_mod, "find_trtexec", lambda explicit=None: None)
    onnx_path = onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path / "tiny.onnx")
    assert run("engine", "--onnx", onnx_path, "--precision", "fp16") == 2
    assert "TensorRT is not installed" in _error(capsys)
    assert run("engine", "--onnx", onnx_path, "--precision", "int8") == 2
    assert "no QuantizeLinear" in _error(capsys)
    assert run("engine", "--onnx", tmp_path / "missing.onnx", "--precision", "fp16") == 2
    assert "missing.onnx does not exist" in _error(capsys)


def test_baseline_identical_build_passes_and_an_edited_baseline_fails(built, fast_recipe, tmp_path, capsys):
    """Baseline gating through the CLI: a build gated against an identical earlier build passes; `compare`
    against a copy whose INT8 agreement was 0.5 pt higher exits 1 naming artifact, figure, baseline, bound."""
    _, out = built
    assert run("build", "--recipe", fast_recipe, "--target", "openvino,onnxruntime", "--baseline", out,
               "--output", tmp_path / "again") == 0  # latency gates may be inconclusive: on_unstable warn
    report = json.loads((tmp_path / "again" / "report.json").read_text())
    assert report["baseline"]["passed"] and (tmp_path / "again" / "report.html").is_file()
    edited = json.loads((out / "report.json").read_text())
    next(r for r in edited["rows"] if r["label"] == "openvino int8")["agreement"] += 0.005
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "edited.json"), str(tmp_path / "again"),
                 "--junit", str(tmp_path / "j.xml")]) == 1
    printed = capsys.readouterr().out
    assert "max_agreement_regression for openvino int8: 0.5 (bound 0.2, baseline" in printed
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert root.get("failures") == "1" and "figure: 0.5" in next(root.iter("failure")).text


def test_a_baseline_of_another_eval_set_is_exit_2(built, tmp_path, capsys):
    _, out = built
    other = json.loads((out / "report.json").read_text())
    other["eval"]["fingerprint"] = "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["compare", str(tmp_path / "other.json"), str(out)]) == 2
    assert "was built from another eval set" in _error(capsys)
