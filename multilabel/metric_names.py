"""The metric names train.py logs, shared with launch.py's SageMaker metric definitions.

train.py logs every Trainer log event as one line, `metrics step=N name=value ...`
(see `training.MetricLogCallback`), so a metric's regex is ` name=(number)`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Aggregate metrics computed at every evaluation (metrics.multilabel_metrics).
AGGREGATE = (
    "micro_f1",
    "macro_f1",
    "weighted_f1",
    "samples_f1",
    "micro_precision",
    "micro_recall",
    "macro_precision",
    "macro_recall",
    "subset_accuracy",
    "hamming_loss",
    "micro_roc_auc",
    "macro_roc_auc",
    "micro_average_precision",
    "macro_average_precision",
)
PER_LABEL = ("precision", "recall", "f1", "support")
TRAINING = ("loss", "learning_rate", "grad_norm", "epoch", "train_loss", "train_samples_per_second")
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
# SageMaker accepts at most 40 metric definitions per training job.
MAX_DEFINITIONS = 40


def per_label_key(metric: str, label: str) -> str:
    return f"{metric}_{label}"


def metric_definitions(label_names: Sequence[str] = (), test: bool = False) -> list[dict[str, str]]:
    """SageMaker `metric_definitions` for train.py's log: training, eval (and test) metrics,
    then per-label eval F1 while there is room under SageMaker's limit of 40."""
    names = [*TRAINING, "eval_loss", *(f"eval_{m}" for m in AGGREGATE)]
    if test:
        names += [f"test_{m}" for m in ("micro_f1", "macro_f1", "micro_precision", "micro_recall")]
    names += [f"eval_{per_label_key('f1', label)}" for label in label_names]
    return [{"Name": name, "Regex": f" {re.escape(name)}={NUMBER}"} for name in names[:MAX_DEFINITIONS]]
