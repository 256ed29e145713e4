"""Human-readable outputs of a run: per-row predictions, a per-label report and its plot."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from multilabel import metrics

logger = logging.getLogger(__name__)

LABEL_SEPARATOR = "|"


def write_predictions(
    path: Path, probs: np.ndarray, thresholds: np.ndarray, label_names: Sequence[str]
) -> None:
    """One line per input row, in input order: predicted label names and every probability."""
    decisions = metrics.decide(probs, thresholds)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", "predicted_labels", *(f"prob_{n}" for n in label_names)])
        for i, (row_probs, row_hits) in enumerate(zip(probs, decisions, strict=False), start=1):
            predicted = LABEL_SEPARATOR.join(n for n, hit in zip(label_names, row_hits, strict=False) if hit)
            # Shortest exact repr: the file reproduces the reported metrics exactly.
            writer.writerow([i, predicted, *(repr(float(p)) for p in row_probs)])
    logger.info("per-row predictions written to %s", path)


def label_table(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, label_names: Sequence[str]
) -> list[dict[str, float | str]]:
    """Per label: support, tuned threshold, and precision / recall / F1 at 0.5 and tuned."""
    at_half = metrics.multilabel_metrics(probs, labels, metrics.DEFAULT_THRESHOLD, label_names)
    tuned = metrics.multilabel_metrics(probs, labels, thresholds, label_names)
    return [
        {
            "label": name,
            "support": int(tuned[f"support_{name}"]),
            "threshold": float(thresholds[i]),
            "f1_at_0.5": at_half[f"f1_{name}"],
            "precision": tuned[f"precision_{name}"],
            "recall": tuned[f"recall_{name}"],
            "f1": tuned[f"f1_{name}"],
        }
        for i, name in enumerate(label_names)
    ]


def write_label_report(
    output_dir: Path,
    split: str,
    probs: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    label_names: Sequence[str],
) -> None:
    """`label_report.md` (a table per label) and `label_report.png` (F1 before/after tuning)."""
    rows = label_table(probs, labels, thresholds, label_names)
    lines = [
        f"# Per-label results on the {split} set ({len(labels)} rows)",
        "",
        "| label | support | threshold | F1 at 0.5 | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['label']} | {r['support']} | {r['threshold']:.3f} | {r['f1_at_0.5']:.3f} "
        f"| {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |"
        for r in rows
    ]
    (output_dir / "label_report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(output_dir / "label_report.png", split, rows)


def _plot(path: Path, split: str, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(r["label"]) for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) + 2), 4))
    ax.bar(x - 0.2, [r["f1_at_0.5"] for r in rows], width=0.4, label="threshold 0.5")
    ax.bar(x + 0.2, [r["f1"] for r in rows], width=0.4, label="tuned thresholds")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title(f"Per-label F1 on the {split} set")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
