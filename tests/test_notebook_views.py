"""multilabel.sagemaker.notebook_views: the launch notebook's plot and table, from plain data."""

from __future__ import annotations

import matplotlib
import pytest

from multilabel.sagemaker.notebook_views import plot_training_metrics, results_table

matplotlib.use("Agg")


def test_results_table_shortens_the_text_and_lists_the_best_scores() -> None:
    records = [{"casePart1": "x" * 100, "casePart2": "pair"}, {"casePart2": "only a pair"}]
    results = [
        {
            "labels": ["label2", "label1"],
            "scores": {"label1": 0.6, "label2": 0.9, "label3": 0.1, "label4": 0.05},
        },
        {"labels": []},
    ]
    assert results_table(records, results) == [
        {"text": "x" * 60, "labels": "label2, label1", "top scores": "label2 0.90, label1 0.60, label3 0.10"},
        {"text": "", "labels": "", "top scores": ""},
    ]
    assert results_table(records, results, text_column="casePart2")[1]["text"] == "only a pair"


def test_plot_shows_the_recorded_metrics_over_minutes(caplog: pytest.LogCaptureFixture) -> None:
    series = {"loss": [(120.0, 0.5), (60.0, 0.7)], "eval_micro_f1": [(120.0, 0.4)], "other": [(1.0, 1.0)]}
    figure = plot_training_metrics(series)
    axes = figure.axes
    assert [ax.get_title() for ax in axes] == ["loss", "eval_micro_f1"]  # in the order asked, if recorded
    (line,) = axes[0].get_lines()
    assert list(line.get_xdata()) == [1.0, 2.0] and list(line.get_ydata()) == [0.7, 0.5]  # sorted by time
    assert axes[0].get_xlabel() == "minutes"

    caplog.set_level("INFO")
    assert plot_training_metrics({"loss": []}) is None
    assert "no metrics recorded for this job yet" in caplog.text


def test_metrics_table_shows_the_summary_metrics_tuned_and_at_one_half() -> None:
    from multilabel.sagemaker.notebook_views import metrics_table

    results = {
        "test_micro_f1": 0.7,
        "test_untuned_micro_f1": 0.6,
        "test_macro_f1": 0.5,
        "test_untuned_macro_f1": 0.4,
        "test_f1_label1": 0.9,
        "test_untuned_f1_label1": 0.8,
        "test_hamming_loss": 0.1,
    }
    assert metrics_table(results) == [
        {"metric": "micro_f1", "tuned thresholds": 0.7, "at 0.5": 0.6},
        {"metric": "macro_f1", "tuned thresholds": 0.5, "at 0.5": 0.4},
        {"metric": "hamming_loss", "tuned thresholds": 0.1},
    ]
