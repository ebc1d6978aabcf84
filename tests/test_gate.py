"""Gates over report rows: each bound, missing figures, and required artifacts that were skipped."""
from edgefocal.gate import check_gates
from edgefocal.recipe import Gates

ROW = {"label": "openvino int8", "top1_drop": 0.2, "agreement": 0.995, "speedup_vs_reference": {1: 3.2, 8: 2.0}}


def test_all_pass():
    results = check_gates(Gates(max_top1_drop=0.3, min_agreement=0.99, min_speedup=3.0), [ROW])
    assert [g.gate for g in results] == ["max_top1_drop", "min_agreement", "min_speedup"]
    assert all(g.passed for g in results)


def test_each_failure_names_gate_figure_and_bound():
    results = check_gates(Gates(max_top1_drop=0.1, min_agreement=0.999, min_speedup=4.0), [ROW])
    assert not any(g.passed for g in results)
    text = [g.describe() for g in results]
    assert text[0] == "max_top1_drop for openvino int8: 0.2 (bound 0.1) FAILED"
    assert "min_speedup for openvino int8: 3.2 (bound 4.0)" in text[2]  # the smallest batch counts


def test_no_gates_no_results_and_missing_figures_fail():
    assert check_gates(Gates(), [ROW]) == []
    (g,) = check_gates(Gates(min_speedup=1.0), [{"label": "coreml int8", "no_latency": "macOS only"}])
    assert not g.passed and "missing" in g.describe()


def test_required_skipped_artifact_fails_and_optional_one_does_not():
    skipped = {"label": "tensorrt int8 (engine)", "skipped": "TensorRT is not installed here"}
    assert check_gates(Gates(max_top1_drop=1.0), [skipped]) == []
    (g,) = check_gates(Gates(), [{**skipped, "required": True}])
    assert not g.passed and "TensorRT is not installed" in g.describe()
