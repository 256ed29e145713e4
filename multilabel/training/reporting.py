"""What a run writes into its output-data directory: metrics, per-row predictions, a per-label
report and its plot, all from the metrics that evaluation already computed."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from multilabel.core import metric_names, threshold_strategies
from multilabel.core.artifact import LABEL_SEPARATOR
from multilabel.core.metric_names import per_label_key, split_prefix, split_results
from multilabel.core.run_paths import (
    ALL_RESULTS,
    LABEL_PLOT,
    LABEL_REPORT,
    predictions_file,
    results_file,
)
from multilabel.training import metrics

logger = logging.getLogger(__name__)


def run_results(
    train_metrics: Mapping[str, float], evaluations: Mapping[str, metrics.SplitEvaluation]
) -> dict[str, dict[str, float]]:
    """The metrics of each `<prefix>_results.json`: train's, then each evaluated split's."""
    return {
        "train": dict(train_metrics),
        **{split_prefix(split): split_results(split, e.tuned, e.untuned) for split, e in evaluations.items()},
    }


def write_results(
    output_dir: Path,
    results: Mapping[str, Mapping[str, float]],
    evaluations: Mapping[str, metrics.SplitEvaluation],
    thresholds: np.ndarray,
    label_names: Sequence[str],
    length_lines: Sequence[str] = (),
    ids: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    encoder_weights: Sequence[float] | None = None,
) -> None:
    """Metrics, per-row predictions (with each row's id from `ids`, split -> (id column,
    values), and its true labels) and the per-label report (test set, else validation,
    with a hybrid's `encoder_weights`), which ends with `length_lines`
    (`data.length_report`) when given."""
    save_metrics(output_dir, results)
    for split, evaluation in evaluations.items():
        write_predictions(
            output_dir / predictions_file(split),
            evaluation.probs,
            thresholds,
            label_names,
            (ids or {}).get(split),
            evaluation.labels,
        )
    report_split = "test" if "test" in evaluations else "validation"
    write_label_report(
        output_dir,
        report_split,
        evaluations[report_split],
        thresholds,
        label_names,
        length_lines,
        validation_positives(evaluations["validation"]) if "validation" in evaluations else None,
        encoder_weights,
    )


def validation_positives(evaluation: metrics.SplitEvaluation) -> list[int]:
    """Each label's positives in the validation set: the examples its threshold was tuned on."""
    return [int(n) for n in (np.asarray(evaluation.labels) >= 0.5).sum(axis=0)]


def summary_lines(
    model_dir: str | Path, output_dir: str | Path, evaluations: Mapping[str, metrics.SplitEvaluation]
) -> list[str]:
    """The end of a run's log: its headline result, where the model and the results are."""
    split = "test" if "test" in evaluations else "validation"
    tuned = evaluations[split].tuned
    return [
        f"done: {split} micro-F1 {tuned['micro_f1']:.4f}, macro-F1 {tuned['macro_f1']:.4f} "
        f"({len(evaluations[split].labels)} rows, thresholds tuned on validation)",
        f"model: {model_dir}",
        f"results: {output_dir} ({LABEL_REPORT} and .png per label, "
        + ", ".join(map(predictions_file, evaluations))
        + f", {ALL_RESULTS})",
    ]


def save_metrics(output_dir: Path, results: Mapping[str, Mapping[str, float]]) -> None:
    """`<prefix>_results.json` for each entry of `results` and `all_results.json`, this run's only."""
    merged: dict[str, float] = {}
    for prefix, values in results.items():
        (output_dir / results_file(prefix)).write_text(
            json.dumps(dict(values), indent=4, sort_keys=True) + "\n"
        )
        merged.update(values)
    (output_dir / ALL_RESULTS).write_text(json.dumps(merged, indent=4, sort_keys=True) + "\n")


def _joined(label_names: Sequence[str], hits: Sequence[bool]) -> str:
    return LABEL_SEPARATOR.join(n for n, hit in zip(label_names, hits, strict=True) if hit)


def write_predictions(
    path: Path,
    probs: np.ndarray,
    thresholds: np.ndarray,
    label_names: Sequence[str],
    ids: tuple[str, Sequence[str]] | None = None,
    truth: np.ndarray | None = None,
) -> None:
    """One line per input row, in input order: its number, its id (`ids`: the id column's
    name and values), the predicted label names, the true ones (with `truth`), and every
    probability."""
    decisions = metrics.decide(probs, thresholds)
    header = ["row", *(ids[:1] if ids else ()), "predicted_labels"]
    header += ["true_labels"] if truth is not None else []
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*header, *(f"prob_{n}" for n in label_names)])
        for i, (row_probs, row_hits) in enumerate(zip(probs, decisions, strict=True)):
            cells = [i + 1, *((ids[1][i],) if ids else ()), _joined(label_names, row_hits)]
            cells += [_joined(label_names, truth[i] >= 0.5)] if truth is not None else []
            # Shortest exact repr: the file reproduces the reported metrics exactly.
            writer.writerow([*cells, *(repr(float(p)) for p in row_probs)])
    logger.debug("per-row predictions written to %s", path)


def label_table(
    evaluation: metrics.SplitEvaluation,
    thresholds: np.ndarray,
    label_names: Sequence[str],
    validation_support: Sequence[int] | None = None,
    encoder_weights: Sequence[float] | None = None,
) -> list[dict[str, float | str]]:
    """Per label: support, the validation positives its threshold was tuned on and a hybrid's
    encoder weight (each None when unknown), tuned threshold, and precision / recall / F1 at
    0.5 and tuned."""
    tuned, at_half = evaluation.tuned, evaluation.untuned
    return [
        {
            "label": name,
            "support": int(tuned[per_label_key("support", name)]),
            "validation_support": None if validation_support is None else int(validation_support[i]),
            "threshold": float(thresholds[i]),
            "encoder_weight": None if encoder_weights is None else float(encoder_weights[i]),
            "f1_at_0.5": at_half[per_label_key("f1", name)],
            "precision": tuned[per_label_key("precision", name)],
            "recall": tuned[per_label_key("recall", name)],
            "f1": tuned[per_label_key("f1", name)],
        }
        for i, name in enumerate(label_names)
    ]


def write_label_report(
    output_dir: Path,
    split: str,
    evaluation: metrics.SplitEvaluation,
    thresholds: np.ndarray,
    label_names: Sequence[str],
    length_lines: Sequence[str] = (),
    validation_support: Sequence[int] | None = None,
    encoder_weights: Sequence[float] | None = None,
) -> None:
    """`label_report.md` (a table per label, then the texts' lengths if given) and
    `label_report.png` (F1 before/after tuning).

    With `validation_support` (each label's validation positives), the table shows the
    positives behind each threshold and flags those under `threshold_strategies.MIN_TRUSTED_POSITIVES`;
    with `encoder_weights` (a hybrid's, one per label), each label's share of the encoder.
    """
    rows = label_table(evaluation, thresholds, label_names, validation_support, encoder_weights)
    known = validation_support is not None
    hybrid = encoder_weights is not None
    tuned = evaluation.tuned
    ranking = ", ".join(
        f"{name.replace('_at_', '@')} {tuned[name]:.3f}"
        for name in (
            *(metric_names.at_k("precision", k) for k in metric_names.PRECISION_AT),
            *(metric_names.at_k("ndcg", k) for k in metric_names.NDCG_AT),
        )
        if name in tuned
    )
    lines = [
        f"# Per-label results on the {split} set ({len(evaluation.labels)} rows)",
        "",
        f"micro-F1 {tuned['micro_f1']:.3f}, macro-F1 {tuned['macro_f1']:.3f} at the tuned thresholds; "
        f"each row's labels ranked by score, threshold-free: {ranking}.",
        "",
        "| label | support |"
        + (" validation positives |" if known else "")
        + " threshold |"
        + (" encoder weight |" if hybrid else "")
        + " F1 at 0.5 | precision | recall | F1 |",
        "|---|---:|"
        + ("---:|" if known else "")
        + "---:|"
        + ("---:|" if hybrid else "")
        + "---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['label']} | {r['support']} |"
        + (f" {_positives_cell(r['validation_support'])} |" if known else "")
        + f" {r['threshold']:.3f} |"
        + (f" {r['encoder_weight']:.2f} |" if hybrid else "")
        + f" {r['f1_at_0.5']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |"
        for r in rows
    ]
    if known:
        few = [
            str(r["label"])
            for r in rows
            if r["validation_support"] < threshold_strategies.MIN_TRUSTED_POSITIVES
        ]
        lines += [
            "",
            f"Each threshold was chosen on the validation set; a label with fewer than "
            f'{threshold_strategies.MIN_TRUSTED_POSITIVES} validation positives (marked "too few") has a threshold '
            "that rests on a handful of examples and can land far from where it should: treat its "
            "decisions and scores as noise, and add validation rows carrying it. "
            + (f"Too few: {', '.join(few)}." if few else "Every label has enough."),
        ]
    if hybrid:
        lines += [
            "",
            "Each label's probability is `w x encoder + (1 - w) x TF-IDF`, with `w` its encoder weight, "
            "chosen on the validation set by average precision (the hybrid, `--hybrid`): 1 is the "
            "encoder alone, 0 TF-IDF alone.",
        ]
    if length_lines:
        lines += ["", "## Text lengths of the training data", "", *(f"- {line}" for line in length_lines)]
    (output_dir / LABEL_REPORT).write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(output_dir / LABEL_PLOT, split, rows)


def _positives_cell(positives: int) -> str:
    return (
        f"{positives} (too few)" if positives < threshold_strategies.MIN_TRUSTED_POSITIVES else str(positives)
    )


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
