"""The files a run writes into its output-data directory, from the metrics evaluation computed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from multilabel.core.run_paths import OUTPUT_DATA_FILES
from multilabel.training import reporting
from multilabel.training.metrics import SplitEvaluation, evaluate_split

LABELS = ["perl", "c", "devel-lib"]
THRESHOLDS = np.array([0.5, 0.3, 0.7])


def evaluation(rows: int, seed: int) -> SplitEvaluation:
    rng = np.random.default_rng(seed)
    labels = (rng.random((rows, len(LABELS))) < 0.4).astype(np.float32)
    probs = np.clip(labels * 0.3 + rng.random((rows, len(LABELS))) * 0.7, 0, 1)
    return evaluate_split(probs, labels, THRESHOLDS, LABELS)


@pytest.fixture
def no_plot(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Skip matplotlib (seconds to import); record which split would have been plotted."""
    plotted: list[str] = []
    monkeypatch.setattr(reporting, "_plot", lambda path, split, rows: plotted.append(split))
    return plotted


def test_the_run_writes_every_output_file_it_owns(tmp_path: Path, no_plot: list[str]) -> None:
    evaluations = {"validation": evaluation(20, 0), "test": evaluation(10, 1)}
    results = reporting.run_results({"train_loss": 0.5}, evaluations)
    reporting.write_results(tmp_path, results, evaluations, THRESHOLDS, LABELS)
    written = {p.name for p in tmp_path.iterdir()} | {"label_report.png"}  # the plot is skipped here
    assert written == set(OUTPUT_DATA_FILES), "OUTPUT_DATA_FILES must name every file written"
    assert no_plot == ["test"], "the report is on the test set when there is one"
    assert (
        (tmp_path / "label_report.md").read_text().startswith("# Per-label results on the test set (10 rows)")
    )


def test_without_a_test_set_the_report_is_on_validation(tmp_path: Path, no_plot: list[str]) -> None:
    evaluations = {"validation": evaluation(20, 0)}
    reporting.write_results(tmp_path, reporting.run_results({}, evaluations), evaluations, THRESHOLDS, LABELS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "all_results.json",
        "eval_results.json",
        "label_report.md",
        "train_results.json",
        "validation_predictions.csv",
    ]
    assert no_plot == ["validation"]


def test_results_files_hold_tuned_and_untuned_metrics_by_prefix(tmp_path: Path, no_plot: list[str]) -> None:
    evaluations = {"validation": evaluation(20, 0), "test": evaluation(10, 1)}
    results = reporting.run_results({"train_loss": 0.5}, evaluations)
    assert list(results) == ["train", "eval", "test"]
    reporting.write_results(tmp_path, results, evaluations, THRESHOLDS, LABELS)
    test = json.loads((tmp_path / "test_results.json").read_text())
    assert test["test_micro_f1"] == evaluations["test"].tuned["micro_f1"]
    assert test["test_untuned_f1_c"] == evaluations["test"].untuned["f1_c"]
    assert len(test) == 2 * len(evaluations["test"].tuned)
    merged = json.loads((tmp_path / "all_results.json").read_text())
    assert merged == {**results["train"], **results["eval"], **results["test"]}
    assert list(merged) == sorted(merged), "keys are written sorted"


def test_predictions_are_in_row_order_with_exact_probabilities(tmp_path: Path) -> None:
    probs = np.array([[0.5, 0.29, 0.1], [0.1 + 0.2, 0.3, 0.71]])
    path = tmp_path / "p.csv"
    reporting.write_predictions(path, probs, THRESHOLDS, LABELS)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["row"] for r in rows] == ["1", "2"]
    assert [r["predicted_labels"] for r in rows] == ["perl", "c|devel-lib"], "a threshold is reached at >="
    assert float(rows[1]["prob_perl"]) == 0.1 + 0.2, "probabilities are written exactly"


def test_the_label_table_reuses_the_computed_metrics() -> None:
    split = evaluation(20, 0)
    rows = reporting.label_table(split, THRESHOLDS, LABELS)
    assert [r["label"] for r in rows] == LABELS
    c = rows[1]
    assert c["support"] == int(split.labels[:, 1].sum())
    assert c["threshold"] == 0.3
    assert (c["precision"], c["recall"], c["f1"]) == (
        split.tuned["precision_c"],
        split.tuned["recall_c"],
        split.tuned["f1_c"],
    )
    assert c["f1_at_0.5"] == split.untuned["f1_c"]
    # Given metrics are shown as they are: nothing is computed again from the probabilities.
    marked = SplitEvaluation(split.probs, split.labels, {**split.tuned, "f1_c": 0.123}, split.untuned)
    assert reporting.label_table(marked, THRESHOLDS, LABELS)[1]["f1"] == 0.123


def test_the_report_is_a_markdown_table(tmp_path: Path, no_plot: list[str]) -> None:
    split = evaluation(20, 0)
    reporting.write_label_report(tmp_path, "validation", split, THRESHOLDS, LABELS)
    lines = (tmp_path / "label_report.md").read_text().splitlines()
    assert lines[0] == "# Per-label results on the validation set (20 rows)"
    assert lines[2].startswith("micro-F1 ") and "precision@1 " in lines[2] and "ndcg@5 " in lines[2]
    assert lines[4] == "| label | support | threshold | F1 at 0.5 | precision | recall | F1 |"
    assert lines[7].startswith("| c | ") and "| 0.300 |" in lines[7]
    assert no_plot == ["validation"]


@pytest.mark.slow
def test_the_report_plot_is_a_png(tmp_path: Path) -> None:
    """matplotlib takes seconds to import."""
    reporting.write_label_report(tmp_path, "validation", evaluation(20, 0), THRESHOLDS, LABELS)
    assert (tmp_path / "label_report.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_shows_each_thresholds_validation_positives_and_flags_too_few(
    tmp_path: Path, no_plot: list[str]
) -> None:
    split = evaluation(20, 0)
    reporting.write_label_report(
        tmp_path,
        "test",
        split,
        THRESHOLDS,
        LABELS,
        ["3 of 20 rows truncated"],
        validation_support=[40, 2, 10],
    )
    lines = (tmp_path / "label_report.md").read_text().splitlines()
    assert lines[4] == (
        "| label | support | validation positives | threshold | F1 at 0.5 | precision | recall | F1 |"
    )
    perl, c, devel = lines[6:9]
    assert perl.startswith(f"| perl | {int(split.labels[:, 0].sum())} | 40 | 0.500 |")
    assert c.startswith(f"| c | {int(split.labels[:, 1].sum())} | 2 (too few) | 0.300 |")
    assert "| 10 | 0.700 |" in devel and "too few" not in devel, "10 positives is enough"
    note = lines[10]
    assert "fewer than 10 validation positives" in note and note.endswith("Too few: c.")
    # The training data's text lengths still close the report.
    assert lines[-3:] == ["## Text lengths of the training data", "", "- 3 of 20 rows truncated"]


def test_a_run_reports_the_validation_positives_behind_the_test_sets_thresholds(
    tmp_path: Path, no_plot: list[str]
) -> None:
    validation, test = evaluation(30, 0), evaluation(10, 1)
    validation.labels[:, 2] = 0
    validation.labels[:4, 2] = 1  # 4 validation positives: too few
    evaluations = {"validation": validation, "test": test}
    reporting.write_results(tmp_path, reporting.run_results({}, evaluations), evaluations, THRESHOLDS, LABELS)
    report = (tmp_path / "label_report.md").read_text()
    positives = validation.labels.sum(axis=0).astype(int).tolist()
    assert reporting.validation_positives(validation) == positives
    assert f"| perl | {int(test.labels[:, 0].sum())} | {positives[0]} |" in report
    assert f"| devel-lib | {int(test.labels[:, 2].sum())} | 4 (too few) |" in report
    assert "Too few: devel-lib." in report


def test_without_the_validation_positives_the_table_keeps_its_columns(
    tmp_path: Path, no_plot: list[str]
) -> None:
    """`train.py --do_train False` scores a trained model: its validation set is not known."""
    reporting.write_label_report(tmp_path, "test", evaluation(20, 0), THRESHOLDS, LABELS)
    report = (tmp_path / "label_report.md").read_text()
    assert "validation positives" not in report and "too few" not in report
    assert reporting.label_table(evaluation(20, 0), THRESHOLDS, LABELS)[0]["validation_support"] is None


def test_a_hybrids_report_shows_each_labels_encoder_weight(tmp_path: Path, no_plot: list[str]) -> None:
    validation, test = evaluation(30, 0), evaluation(10, 1)
    evaluations = {"validation": validation, "test": test}
    weights = [0.25, 1.0, 0.0]
    results = reporting.run_results({}, evaluations)
    reporting.write_results(tmp_path, results, evaluations, THRESHOLDS, LABELS, encoder_weights=weights)
    lines = (tmp_path / "label_report.md").read_text().splitlines()
    assert lines[4] == (
        "| label | support | validation positives | threshold | encoder weight | F1 at 0.5 | precision | recall | F1 |"
    )
    assert lines[5].count("|") == lines[6].count("|") == 10, "the separator row matches the header"
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[6:9]]
    assert [(row[0], row[3], row[4]) for row in cells] == [
        ("perl", "0.500", "0.25"),
        ("c", "0.300", "1.00"),
        ("devel-lib", "0.700", "0.00"),
    ]
    assert any(
        line.startswith("Each label's probability is `w x encoder + (1 - w) x TF-IDF`") for line in lines
    )
    # The encoder alone: no weight column, no sentence.
    reporting.write_results(tmp_path, results, evaluations, THRESHOLDS, LABELS)
    report = (tmp_path / "label_report.md").read_text()
    assert "encoder weight" not in report and "TF-IDF" not in report
