"""The metric names, the lines train.py logs them in, and the metric that picks the best checkpoint.

`metrics.multilabel_metrics` builds its keys from the names here; launch.py's SageMaker
metric definitions match the lines written here. Every Trainer log event becomes one line,
`metrics step=N name=value ...` (an evaluation's holds its headline metrics; on SageMaker a
second line carries the rest), and the end of a run one `final name=value ...` line, so a
metric's regex is ` name=(number)`. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# Aggregate metrics, in the order they are computed and logged: F1 over every averaging,
# precision and recall, exact-match accuracy and Hamming loss of the thresholded
# decisions; then the threshold-free ranking scores.
F1_AVERAGES = ("micro", "macro", "weighted", "samples")
PRECISION_RECALL_AVERAGES = ("micro", "macro")
SUBSET_ACCURACY = "subset_accuracy"
HAMMING_LOSS = "hamming_loss"
RANKING_AVERAGES = ("micro", "macro")
ROC_AUC = "roc_auc"  # left out where no label has both classes
AVERAGE_PRECISION = "average_precision"  # always present (NaN where undefined)
# Each row's labels ranked by score, threshold-free, as many-label tasks are judged: of the
# k best-scored labels the share that are true (precision@k), and nDCG@k; averaged over
# the rows with at least one true label (NaN where there is none).
PRECISION_AT = (1, 3, 5)
NDCG_AT = (3, 5)


def at_k(score: str, k: int) -> str:
    """The key of a ranking score at k: `precision_at_3`, `ndcg_at_5`."""
    return f"{score}_at_{k}"


def averaged(average: str, score: str) -> str:
    """The key of a score averaged over labels: `micro_f1`, `macro_average_precision`, ..."""
    return f"{average}_{score}"


AGGREGATE = (
    *(averaged(a, "f1") for a in F1_AVERAGES),
    *(averaged(a, s) for a in PRECISION_RECALL_AVERAGES for s in ("precision", "recall")),
    SUBSET_ACCURACY,
    HAMMING_LOSS,
    *(averaged(a, ROC_AUC) for a in RANKING_AVERAGES),
    *(averaged(a, AVERAGE_PRECISION) for a in RANKING_AVERAGES),
    *(at_k("precision", k) for k in PRECISION_AT),
    *(at_k("ndcg", k) for k in NDCG_AT),
)
# Per label, in this order, after the aggregates: `<metric>_<label name>`.
PER_LABEL = ("precision", "recall", "f1", "support")
TRAINING = ("loss", "learning_rate", "grad_norm", "epoch", "train_loss", "train_samples_per_second")

# The metric the best checkpoint is chosen by (Trainer prefixes it with "eval_"). It does
# not depend on thresholds, which are tuned only after training: F1 at 0.5 would favour
# checkpoints that happen to be calibrated near 0.5 for the frequent labels.
BEST_METRIC = averaged("macro", AVERAGE_PRECISION)

# The metrics of an evaluation's one-line summary, and those the final line adds.
HEADLINE = ("loss", averaged("micro", "f1"), averaged("macro", "f1"), BEST_METRIC)
FINAL_EXTRA = (averaged("micro", "precision"), averaged("micro", "recall"))

# Results of the validation split carry Trainer's prefix; metrics at the default threshold
# (before tuning) are kept beside the tuned ones as `<prefix>_untuned_<name>`.
EVAL_PREFIX = "eval"
UNTUNED = "untuned"

NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
# SageMaker accepts at most 40 metric definitions per training job.
MAX_DEFINITIONS = 40


def per_label_key(metric: str, label: str) -> str:
    return f"{metric}_{label}"


def split_prefix(split: str) -> str:
    """The prefix of a split's results: `eval` for validation (as Trainer names it), else the split."""
    return EVAL_PREFIX if split == "validation" else split


def split_results(split: str, tuned: Mapping[str, float], untuned: Mapping[str, float]) -> dict[str, float]:
    """One split's results file: `<prefix>_<name>` at the tuned thresholds, then `<prefix>_untuned_<name>`."""
    prefix = split_prefix(split)
    return {
        **{f"{prefix}_{k}": v for k, v in tuned.items()},
        **{f"{prefix}_{UNTUNED}_{k}": v for k, v in untuned.items()},
    }


def format_metrics(values: Mapping[str, float]) -> str:
    """`name=value` pairs of the numeric values; the form that SageMaker metric definitions match."""
    return " ".join(f"{k}={v:.6g}" for k, v in values.items() if isinstance(v, (int, float)))


def step_line(step: int, values: Mapping[str, float]) -> str:
    """The line logged for each Trainer log event: `metrics step=N name=value ...`."""
    return f"metrics step={step:d} {format_metrics(values)}"


def split_log_event(values: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """A Trainer log event as (its compact line's values, the rest).

    An evaluation's compact line holds the epoch and the headline eval metrics; the rest
    (every other aggregate, the per-label figures, timings) goes to the output files and,
    on SageMaker, to a second line for the metric definitions. Training events are compact.
    """
    if f"{EVAL_PREFIX}_loss" not in values:
        return dict(values), {}
    keep = {"epoch", *(f"{EVAL_PREFIX}_{name}" for name in HEADLINE)}
    return (
        {k: v for k, v in values.items() if k in keep},
        {k: v for k, v in values.items() if k not in keep},
    )


def final_line(values: Mapping[str, float]) -> str:
    """The line logged at the end of a run: `final name=value ...` with the training loss and
    each evaluated split's headline metrics (the rest is in the results files)."""
    keep = {"train_loss", *(f"{p}_{n}" for p in (EVAL_PREFIX, "test") for n in (*HEADLINE, *FINAL_EXTRA))}
    return "final " + format_metrics({k: v for k, v in values.items() if k in keep})


def metric_definitions(label_names: Sequence[str] = (), test: bool = False) -> list[dict[str, str]]:
    """SageMaker `metric_definitions` for train.py's log: training, eval (and test) metrics,
    then per-label eval F1 while there is room under SageMaker's limit of 40."""
    eval_ = f"{EVAL_PREFIX}_"
    names = [*TRAINING, f"{eval_}loss", *(eval_ + m for m in AGGREGATE)]
    if test:
        names += [f"test_{m}" for m in ("micro_f1", "macro_f1", "micro_precision", "micro_recall")]
    names += [eval_ + per_label_key("f1", label) for label in label_names]
    return [{"Name": name, "Regex": f" {re.escape(name)}={NUMBER}"} for name in names[:MAX_DEFINITIONS]]
