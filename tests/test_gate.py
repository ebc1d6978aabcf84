"""Gates over report rows: each bound, missing figures, and required artifacts that were skipped."""
from dataclasses import replace

from edgefocal.core import Row
from edgefocal.gate import check_gates
from edgefocal.recipe import Gates

ROW = Row("openvino int8", top1_drop=0.2, agreement=0.995, speedup_vs_reference={1: 3.2, 8: 2.0})


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
    (g,) = check_gates(Gates(min_speedup=1.0), [Row("coreml int8", no_latency="macOS only")])
    assert not g.passed and "missing" in g.describe()


def test_required_skipped_artifact_fails_and_optional_one_does_not():
    skipped = Row("tensorrt int8 (engine)", skipped="TensorRT is not installed here")
    assert check_gates(Gates(max_top1_drop=1.0), [skipped]) == []
    (g,) = check_gates(Gates(), [replace(skipped, required=True)])
    assert not g.passed and "TensorRT is not installed" in g.describe()


def _stable_row(low, high, stable=True, reason=""):
    return replace(ROW, latency_stability={1: {"speedup_low": low, "speedup_high": high, "stable": stable,
                                               "reason": reason, "rounds_used": 5}})


def test_speedup_decides_on_the_whole_interval():
    gates = Gates(min_speedup=3.0)
    (g,) = check_gates(gates, [_stable_row(3.1, 3.4)])
    assert g.status == "passed" and g.passed and "3.1-3.4x over 5 rounds" in g.describe()
    (g,) = check_gates(gates, [_stable_row(2.1, 2.9)])
    assert g.status == "failed" and not g.passed
    (g,) = check_gates(gates, [_stable_row(2.8, 3.3)])
    assert g.status == "inconclusive" and g.passed and "straddles the bound" in g.describe()


def test_unstable_latency_is_inconclusive_and_on_unstable_chooses_its_weight():
    row = _stable_row(9.0, 9.5, stable=False, reason="4 of 5 rounds ran while other processes used up to 90%")
    (warn,) = check_gates(Gates(min_speedup=3.0), [row])  # a far-cleared bound: still no verdict on noise
    assert warn.status == "inconclusive" and warn.passed and "other processes" in warn.describe()
    (fail,) = check_gates(Gates(min_speedup=3.0, on_unstable="fail"), [row])
    assert fail.status == "inconclusive" and not fail.passed and "INCONCLUSIVE (fails)" in fail.describe()


def test_report_json_keys_are_strings_and_gates_round_trip():
    from edgefocal.gate import counts, from_dict

    row = {"label": "x", "speedup_vs_reference": {"16": 1.0, "8": 5.0}}  # the smallest batch is 8, not "16"
    (g,) = check_gates(Gates(min_speedup=2.0), [row])  # a report.json row, read with Row.from_dict
    assert g.value == 5.0 and g.passed
    assert from_dict(dict(g.__dict__)) == g
    assert from_dict({"gate": "min_agreement", "artifact": "x", "value": 0.9, "bound": 0.99, "passed": False}).status == "failed"
    assert counts([g]) == {"passed": 1, "failed": 0, "inconclusive": 0}


def test_a_pruned_build_is_judged_per_share_and_names_the_share_that_failed():
    """Pruning's share (pruned FP32 vs the reference) has the prune_* bounds; INT8's share (the artifact vs the
    pruned FP32 model) the gates: bounds; the total stays in the detail, gated by neither."""
    from edgefocal.gate import prune_gates

    pruned = Row("torch fp32 (pruned)", "torch", "fp32", top1_drop=0.9, agreement=0.988)
    int8 = Row("openvino int8", "openvino", "int8", path="openvino/model_int8.xml", requested=True, top1_drop=1.0,
               agreement=0.986, top1_drop_vs_pruned=0.1, agreement_vs_pruned=0.996)
    bounds = Gates(prune_max_top1_drop=1.0, prune_min_agreement=0.985)
    share = prune_gates(bounds, [pruned, int8])
    assert [(g.gate, g.artifact, g.passed) for g in share] == [("prune_max_top1_drop", "torch fp32 (pruned)", True),
                                                               ("prune_min_agreement", "torch fp32 (pruned)", True)]
    gates = check_gates(Gates(max_top1_drop=0.2, min_agreement=0.995), [int8])
    assert [(g.gate, g.value, g.passed) for g in gates] == [("max_top1_drop", 0.1, True), ("min_agreement", 0.996, True)]
    assert "against the pruned FP32 model" in gates[1].detail and "0.9860" in gates[1].detail  # the total, said
    # pruning that costs more than its bound fails as pruning's share, INT8's share still passing
    costly = replace(pruned, top1_drop=1.4, agreement=0.98)
    failed = [g.describe() for g in prune_gates(bounds, [costly, int8]) if not g.passed]
    assert failed == ["prune_max_top1_drop for torch fp32 (pruned): 1.4 (bound 1.0) FAILED — what pruning cost: "
                      "the pruned FP32 model against the unpruned reference",
                      "prune_min_agreement for torch fp32 (pruned): 0.98 (bound 0.985) FAILED — what pruning cost: "
                      "the pruned FP32 model against the unpruned reference"]
    # an unpruned build has no pruned row: no prune gates, and the gates judge the artifact against the reference
    assert prune_gates(bounds, [int8]) == [] and prune_gates(Gates(), [pruned]) == []
    plain = replace(int8, top1_drop_vs_pruned=None, agreement_vs_pruned=None)
    assert [g.value for g in check_gates(Gates(max_top1_drop=0.2, min_agreement=0.995), [plain])] == [1.0, 0.986]
