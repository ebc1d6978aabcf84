"""Accuracy and agreement metrics: pure numpy, no I/O, tested on hand-made arrays."""
from __future__ import annotations

import numpy as np


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of samples whose top-1 class equals the reference's: catches flips a top-1 figure hides."""
    return float((logits.argmax(1) == reference.argmax(1)).mean())


def cosine_similarity(logits: np.ndarray, reference: np.ndarray) -> float:
    """Mean per-sample cosine similarity of logit vectors."""
    a = logits.astype(np.float64)
    b = reference.astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def mean_kl(reference: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(softmax(reference) ‖ softmax(logits)) per sample: how far the answers moved, also where the
    top-1 class did not flip (a finer signal than agreement on few images)."""
    def log_softmax(z):
        z = z.astype(np.float64) - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    lp, lq = log_softmax(reference), log_softmax(logits)
    return float(np.mean((np.exp(lp) * (lp - lq)).sum(1)))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def percentiles(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    s = np.asarray(samples_ms, dtype=np.float64)
    return {f"p{q}": float(np.percentile(s, q)) for q in (50, 90, 99)}


def _correct(logits: np.ndarray, labels: np.ndarray) -> int:
    return int((np.asarray(logits).argmax(1) == np.asarray(labels)).sum())


def compare(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Everything the report says of one artifact's accuracy relative to the reference."""
    n, correct = max(len(labels), 1), _correct(logits, labels)
    return {
        "top1": correct / n,
        "top5": topk_accuracy(logits, labels, 5),
        # in points, from the counts: (0.9 - 0.898) * 100 is 0.2000000000000018, which failed a 0.2 bound
        "top1_drop": (_correct(reference, labels) - correct) * 100.0 / n,
        "agreement": agreement(logits, reference),
        "cosine": cosine_similarity(logits, reference),
        "max_abs_diff": max_abs_diff(logits, reference),
    }
