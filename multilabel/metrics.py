"""Multi-label metrics and per-label decision thresholds.

Everything takes probabilities (after sigmoid), a 0/1 label matrix and the thresholds,
so the numbers reported at evaluation, after tuning and on the test set all come from
one function.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
# The metric the best checkpoint is chosen by (Trainer prefixes it with "eval_"). It does
# not depend on thresholds, which are tuned only after training: F1 at 0.5 would favour
# checkpoints that happen to be calibrated near 0.5 for the frequent labels.
BEST_METRIC = "macro_average_precision"


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
    """Aggregate and per-label metrics of thresholded predictions.

    Keys: micro/macro/weighted/samples F1, micro/macro precision and recall, subset
    accuracy, Hamming loss, micro/macro ROC-AUC (over labels where both classes occur),
    then `<metric>_<label name>` for precision, recall, F1 and support of each label.
    """
    y_true = (np.asarray(labels) >= 0.5).astype(np.int64)
    y_pred = decide(probs, thresholds)
    names = list(label_names) if label_names is not None else [str(i) for i in range(y_true.shape[1])]
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ill-defined scores are reported as 0, by design
        for avg in ("micro", "macro", "weighted", "samples"):
            out[f"{avg}_f1"] = f1_score(y_true, y_pred, average=avg, zero_division=0)
        for avg in ("micro", "macro"):
            p, r, _, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
            out[f"{avg}_precision"], out[f"{avg}_recall"] = p, r
        out["subset_accuracy"] = float(np.mean(np.all(y_true == y_pred, axis=1)))
        out["hamming_loss"] = hamming_loss(y_true, y_pred)
        defined = (y_true.min(axis=0) == 0) & (y_true.max(axis=0) == 1)
        if defined.any():
            out["micro_roc_auc"] = roc_auc_score(y_true[:, defined], probs[:, defined], average="micro")
            out["macro_roc_auc"] = roc_auc_score(y_true[:, defined], probs[:, defined], average="macro")
        for avg in ("micro", "macro"):
            # Always present, as the best-checkpoint metric; NaN when no label is defined.
            out[f"{avg}_average_precision"] = (
                average_precision_score(y_true[:, defined], probs[:, defined], average=avg)
                if defined.any()
                else float("nan")
            )
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    for i, name in enumerate(names):
        out[f"precision_{name}"] = p[i]
        out[f"recall_{name}"] = r[i]
        out[f"f1_{name}"] = f[i]
        out[f"support_{name}"] = s[i]
    return {k: float(v) for k, v in out.items()}


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
