"""What the launch notebook shows: a plot of a training job's metrics, a table of predictions.

Presentation only: the data comes from `sagemaker_training.training_metrics` and
`sagemaker_endpoint.predict`; nothing here calls AWS. matplotlib is imported when a plot
is drawn, so the command line never needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from multilabel.core.metric_names import UNTUNED
from multilabel.data.schema import DEFAULT_TEXT_COLUMNS

logger = logging.getLogger(__name__)


def plot_training_metrics(
    series: Mapping[str, list[tuple[float, float]]],
    names: Sequence[str] = ("loss", "eval_loss", "eval_micro_f1", "eval_macro_f1"),
):
    """A matplotlib figure of the named metrics over the job's time; None when there are none yet."""
    import matplotlib.pyplot as plt

    present = [n for n in names if series.get(n)]
    if not present:
        logger.info("no metrics recorded for this job yet")
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3), squeeze=False)
    for ax, name in zip(axes[0], present, strict=False):
        points = sorted(series[name])
        ax.plot([t / 60 for t, _ in points], [v for _, v in points], marker="o")
        ax.set_title(name)
        ax.set_xlabel("minutes")
    fig.tight_layout()
    return fig


def results_table(
    records: Sequence[Mapping[str, str]],
    results: Sequence[Mapping[str, Any]],
    text_column: str = DEFAULT_TEXT_COLUMNS[0],
) -> list[dict[str, Any]]:
    """One row per record: its text (shortened), predicted labels, and the top scores."""
    rows = []
    for record, result in zip(records, results, strict=False):
        scores = result.get("scores", {})
        top = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
        rows.append(
            {
                "text": record.get(text_column, "")[:60],
                "labels": ", ".join(result["labels"]),
                "top scores": ", ".join(f"{k} {v:.2f}" for k, v in top),
            }
        )
    return rows


# The metrics over all labels (per-label figures are in the label report).
SUMMARY_METRICS = ("micro_", "macro_", "samples_", "weighted_", "hamming_loss", "loss", "subset_accuracy")


def metrics_table(results: Mapping[str, float], prefix: str = "test") -> list[dict[str, Any]]:
    """One row per metric over all labels in a `<prefix>_results.json`: its value at the tuned
    thresholds and at 0.5 (train.py's `untuned` figures)."""
    rows = []
    for key, value in results.items():
        name = key.removeprefix(f"{prefix}_")
        if name == key or name.startswith(f"{UNTUNED}_") or not name.startswith(SUMMARY_METRICS):
            continue
        row = {"metric": name, "tuned thresholds": round(float(value), 4)}
        untuned = results.get(f"{prefix}_{UNTUNED}_{name}")
        if untuned is not None:
            row["at 0.5"] = round(float(untuned), 4)
        rows.append(row)
    return rows
