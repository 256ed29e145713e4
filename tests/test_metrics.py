"""Metrics and per-label threshold tuning, checked against brute force and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from multilabel.metrics import (
    DEFAULT_THRESHOLD,
    best_f1_threshold,
    decide,
    evaluate_split,
    multilabel_metrics,
    sigmoid,
    tune_thresholds,
)


def brute_force_best_f1(probs: np.ndarray, truth: np.ndarray) -> float:
    """The best F1 over every possible cut, each computed from its confusion counts."""
    candidates = np.concatenate([np.unique(probs), [1.1]])
    predicted = probs[None, :] >= candidates[:, None]  # one row per cut
    true_positives = (predicted & (truth[None, :] == 1)).sum(axis=1)
    return float(np.max(2 * true_positives / (predicted.sum(axis=1) + truth.sum())))


@pytest.mark.parametrize("seed", range(20))
def test_tuned_threshold_reaches_the_best_f1(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    truth = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    truth[0] = 1
    probs = np.clip(truth * rng.uniform(0, 0.5) + rng.random(n) * 0.7, 0, 1).round(int(rng.integers(1, 4)))
    threshold = best_f1_threshold(probs, truth)
    assert f1_score(truth, probs >= threshold) == pytest.approx(brute_force_best_f1(probs, truth)), (
        f"threshold {threshold} does not reach the best F1 (seed {seed})"
    )


def test_threshold_sits_between_scores_and_ties_move_together() -> None:
    probs = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    truth = np.array([1, 1, 0, 0, 0])
    # Cutting between the tied 0.8s is impossible: keep both (F1 0.8) rather than one.
    assert best_f1_threshold(probs, truth) == pytest.approx((0.8 + 0.3) / 2)
    assert best_f1_threshold(np.array([0.2, 0.6]), np.array([0, 1])) == pytest.approx(0.4)


def test_label_without_positives_keeps_the_default() -> None:
    probs = np.array([[0.9, 0.2], [0.1, 0.7]])
    labels = np.array([[1, 0], [0, 0]])
    thresholds = tune_thresholds(probs, labels)
    assert thresholds[1] == DEFAULT_THRESHOLD
    assert 0.1 < thresholds[0] <= 0.9


def test_metrics_match_scikit_learn_and_thresholds_apply_per_label() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((50, 4)) < 0.3).astype(int)
    probs = np.clip(labels * 0.4 + rng.random((50, 4)) * 0.6, 0, 1)
    thresholds = np.array([0.3, 0.5, 0.7, 0.9])
    out = multilabel_metrics(probs, labels, thresholds, ["a", "b", "c", "d"])
    pred = probs >= thresholds
    for avg in ("micro", "macro", "weighted", "samples"):
        assert out[f"{avg}_f1"] == pytest.approx(f1_score(labels, pred, average=avg, zero_division=0))
    assert out["f1_c"] == pytest.approx(f1_score(labels[:, 2], pred[:, 2]))
    assert out["support_a"] == labels[:, 0].sum()
    assert out["subset_accuracy"] == pytest.approx(np.mean(np.all(pred == labels, axis=1)))
    assert out["hamming_loss"] == pytest.approx(np.mean(pred != labels))
    assert 0.5 < out["macro_roc_auc"] <= 1.0
    assert out["macro_average_precision"] == pytest.approx(
        np.mean([average_precision_score(labels[:, j], probs[:, j]) for j in range(4)])
    )
    assert out["micro_average_precision"] == pytest.approx(
        average_precision_score(labels.ravel(), probs.ravel())
    )
    assert all(isinstance(v, float) for v in out.values())


def test_roc_auc_is_left_out_when_undefined() -> None:
    labels = np.array([[1, 0], [1, 0]])
    out = multilabel_metrics(np.array([[0.9, 0.1], [0.8, 0.2]]), labels)
    assert "macro_roc_auc" not in out and np.isnan(out["macro_average_precision"])
    assert out["micro_f1"] == 1.0


def test_sigmoid_is_stable_and_decide_uses_greater_or_equal() -> None:
    np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])
    assert decide(np.array([[0.5, 0.49]]), 0.5).tolist() == [[1, 0]]


def test_a_split_is_evaluated_once_at_the_tuned_thresholds_and_at_the_default() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random((30, 2)) < 0.5).astype(int)
    probs = rng.random((30, 2))
    thresholds = np.array([0.2, 0.8])
    evaluation = evaluate_split(probs, labels, thresholds, ["a", "b"])
    assert evaluation.probs is probs and evaluation.labels is labels
    assert evaluation.tuned == multilabel_metrics(probs, labels, thresholds, ["a", "b"])
    assert evaluation.untuned == multilabel_metrics(probs, labels, DEFAULT_THRESHOLD, ["a", "b"])
