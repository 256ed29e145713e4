"""Multi-label metrics and per-label decision thresholds.

Everything takes probabilities (after sigmoid), a 0/1 label matrix and the thresholds,
so the numbers reported at evaluation, after tuning and on the test set all come from
one function.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from multilabel import metric_names

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float64."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -logits))


def decide(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """0/1 decisions: a label is predicted when its probability reaches its threshold."""
    return (np.asarray(probs) >= np.asarray(thresholds)).astype(np.int64)


def multilabel_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray | float = DEFAULT_THRESHOLD,
    label_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Aggregate and per-label metrics of thresholded predictions, keyed as `metric_names` says.

    First `metric_names.AGGREGATE`, in that order: micro/macro/weighted/samples F1,
    micro/macro precision and recall, subset accuracy, Hamming loss, micro/macro ROC-AUC
    (only where some label has both classes) and average precision; then, label by label,
    `metric_names.PER_LABEL` (precision, recall, F1, support) as `<metric>_<label name>`.
    """
    y_true = (np.asarray(labels) >= 0.5).astype(np.int64)
    y_pred = decide(probs, thresholds)
    label_names = list(label_names) if label_names is not None else [str(i) for i in range(y_true.shape[1])]
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ill-defined scores are reported as 0, by design
        for avg in metric_names.F1_AVERAGES:
            out[metric_names.averaged(avg, "f1")] = f1_score(y_true, y_pred, average=avg, zero_division=0)
        for avg in metric_names.PRECISION_RECALL_AVERAGES:
            p, r, _, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
            out[metric_names.averaged(avg, "precision")], out[metric_names.averaged(avg, "recall")] = p, r
        out[metric_names.SUBSET_ACCURACY] = float(np.mean(np.all(y_true == y_pred, axis=1)))
        out[metric_names.HAMMING_LOSS] = hamming_loss(y_true, y_pred)
        defined = (y_true.min(axis=0) == 0) & (y_true.max(axis=0) == 1)
        if defined.any():
            for avg in metric_names.RANKING_AVERAGES:
                out[metric_names.averaged(avg, metric_names.ROC_AUC)] = roc_auc_score(
                    y_true[:, defined], probs[:, defined], average=avg
                )
        for avg in metric_names.RANKING_AVERAGES:
            # Always present, as the best-checkpoint metric; NaN when no label is defined.
            out[metric_names.averaged(avg, metric_names.AVERAGE_PRECISION)] = (
                average_precision_score(y_true[:, defined], probs[:, defined], average=avg)
                if defined.any()
                else float("nan")
            )
        per_label = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    for i, name in enumerate(label_names):
        for metric, values in zip(metric_names.PER_LABEL, per_label, strict=True):
            out[metric_names.per_label_key(metric, name)] = values[i]
    return {k: float(v) for k, v in out.items()}


@dataclass(frozen=True)
class SplitEvaluation:
    """One split's probabilities and labels, with its metrics at the tuned thresholds and at 0.5."""

    probs: np.ndarray
    labels: np.ndarray
    tuned: dict[str, float]
    untuned: dict[str, float]


def evaluate_split(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, label_names: Sequence[str]
) -> SplitEvaluation:
    """`multilabel_metrics` at `thresholds` and at DEFAULT_THRESHOLD, computed once for every report."""
    return SplitEvaluation(
        probs=probs,
        labels=labels,
        tuned=multilabel_metrics(probs, labels, thresholds, label_names),
        untuned=multilabel_metrics(probs, labels, DEFAULT_THRESHOLD, label_names),
    )


def best_f1_threshold(probs: np.ndarray, truth: np.ndarray) -> float:
    """The threshold maximising F1 of one label; DEFAULT_THRESHOLD when it has no positive.

    Sorting the scores gives F1 at every cut in one pass. The threshold sits halfway
    between the last score kept and the next one, so it does not hinge on one example.
    """
    truth = np.asarray(truth) >= 0.5
    n_pos = int(truth.sum())
    if n_pos == 0:
        return DEFAULT_THRESHOLD
    order = np.argsort(-probs, kind="stable")
    scores, hits = probs[order], truth[order]
    # Only cut between distinct scores: tied examples are kept or dropped together.
    last_of_tie = np.append(scores[1:] != scores[:-1], True)
    tp = np.cumsum(hits)[last_of_tie]
    kept = (np.arange(1, len(scores) + 1))[last_of_tie]
    f1 = 2 * tp / (kept + n_pos)
    best = int(np.argmax(f1))
    cut_scores = scores[last_of_tie]
    upper = cut_scores[best]
    lower = cut_scores[best + 1] if best + 1 < len(cut_scores) else 0.0
    return float((upper + lower) / 2)


def tune_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-label thresholds that maximise each label's F1 on the given (validation) set."""
    return np.array([best_f1_threshold(probs[:, j], labels[:, j]) for j in range(labels.shape[1])])
