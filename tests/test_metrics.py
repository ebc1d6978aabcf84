"""Metrics on hand-made arrays with known answers."""
import numpy as np
import pytest

from edgefocal.metrics import agreement, compare, cosine_similarity, percentiles, topk_accuracy

LOGITS = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 5.0], [0.0, 1.0, 0.5]])
LABELS = np.array([0, 2, 2, 1])


def test_topk():
    assert topk_accuracy(LOGITS, LABELS, 1) == 0.75
    assert topk_accuracy(LOGITS, LABELS, 2) == 1.0
    assert topk_accuracy(LOGITS, LABELS, 5) == 1.0  # k capped at the number of classes


def test_agreement_counts_flips_not_accuracy():
    flipped = LOGITS.copy()
    flipped[0] = [0.0, 3.0, 0.0]  # a correct answer flips to wrong...
    flipped[1] = [0.0, 0.0, 3.0]  # ...and a wrong one to right: top-1 unchanged
    assert topk_accuracy(flipped, LABELS) == topk_accuracy(LOGITS, LABELS)
    assert agreement(flipped, LOGITS) == 0.5


def test_cosine_and_compare():
    assert cosine_similarity(LOGITS, 2 * LOGITS) == pytest.approx(1.0)
    assert cosine_similarity(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == pytest.approx(0.0)
    c = compare(LOGITS, LOGITS, LABELS)
    assert c["top1_drop"] == 0 and c["agreement"] == 1 and c["max_abs_diff"] == 0


def test_percentiles():
    p = percentiles(list(range(1, 101)))
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01)


def test_one_image_in_500_is_exactly_the_02_point_bound():
    """(0.9 - 0.898) * 100 is 0.2000000000000018: a drop taken from the accuracies failed a 0.2 bound it met."""
    from edgefocal.gate import check_gates
    from edgefocal.recipe import Gates
    from edgefocal.core import Row

    labels = np.zeros(500, dtype=int)
    reference = np.tile([[1.0, 0.0]], (500, 1))
    reference[:50] = [0.0, 1.0]  # 90 % top-1
    logits = reference.copy()
    logits[50] = [0.0, 1.0]  # one more wrong: 89.8 %
    drop = compare(logits, reference, labels)["top1_drop"]
    assert drop == 0.2
    (gate,) = check_gates(Gates(max_top1_drop=0.2, min_agreement=None), [Row("openvino int8", top1_drop=drop)])
    assert gate.passed
