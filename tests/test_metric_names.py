"""Metric names, log lines and SageMaker metric definitions agree with what is computed and logged."""

from __future__ import annotations

import re

import numpy as np
import pytest

from multilabel.core import metric_names
from multilabel.core.metric_names import (
    AGGREGATE,
    BEST_METRIC,
    MAX_DEFINITIONS,
    PER_LABEL,
    final_line,
    format_metrics,
    metric_definitions,
    per_label_key,
    split_results,
    step_line,
)
from multilabel.training.metrics import multilabel_metrics

LABELS = ["perl", "c", "devel-lib"]


def test_the_computed_keys_are_the_named_ones_in_order() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 3)) < 0.4).astype(int)
    probs = rng.random((40, 3))
    computed = list(multilabel_metrics(probs, labels, 0.5, LABELS))
    per_label = [per_label_key(m, name) for name in LABELS for m in PER_LABEL]
    assert computed == [*AGGREGATE, *per_label], "multilabel_metrics' keys differ from metric_names"


def test_roc_auc_is_the_only_name_that_may_be_missing() -> None:
    labels = np.array([[1, 0], [1, 0]])  # no label has both classes
    computed = multilabel_metrics(np.array([[0.9, 0.1], [0.8, 0.2]]), labels, label_names=["a", "b"])
    missing = [name for name in AGGREGATE if name not in computed]
    assert missing == ["micro_roc_auc", "macro_roc_auc"]
    assert BEST_METRIC in computed, "the best-checkpoint metric must always be computed"


def test_best_metric_is_a_threshold_free_aggregate() -> None:
    assert BEST_METRIC == "macro_average_precision"
    assert BEST_METRIC in AGGREGATE


def test_a_step_line_round_trips_through_the_metric_definitions() -> None:
    values = {
        "loss": 0.6931,
        "learning_rate": 4.5e-05,
        "epoch": 1.0,
        "eval_micro_f1": 0.123456789,
        "eval_hamming_loss": 1e-07,
        "eval_f1_devel-lib": 0.5,
        "eval_runtime_note": "not a number",  # left out of the line
    }
    line = step_line(12, values)
    assert line.startswith("metrics step=12 loss=0.6931 learning_rate=4.5e-05 epoch=1 ")
    assert "runtime_note" not in line
    definitions = {d["Name"]: re.compile(d["Regex"]) for d in metric_definitions(LABELS)}
    for name, value in values.items():
        if name in definitions:
            match = definitions[name].search(line)
            assert match, f"the regex of {name} does not match {line!r}"
            assert float(match.group(1)) == pytest.approx(value, rel=1e-5), name
    # A name that is the tail of another is not matched inside it.
    assert definitions["loss"].findall("metrics step=1 train_loss=0.5 loss=0.25") == ["0.25"]


def test_format_metrics_keeps_six_significant_digits_of_numbers_only() -> None:
    assert format_metrics({"a": 1 / 3, "b": 12345678, "c": "text", "d": None}) == "a=0.333333 b=1.23457e+07"
    assert format_metrics({}) == ""


def test_the_final_line_leaves_out_the_untuned_metrics() -> None:
    results = split_results("validation", {"micro_f1": 0.8}, {"micro_f1": 0.7})
    assert results == {"eval_micro_f1": 0.8, "eval_untuned_micro_f1": 0.7}
    assert split_results("test", {"f1_a": 1.0}, {"f1_a": 0.0}) == {"test_f1_a": 1.0, "test_untuned_f1_a": 0.0}
    assert final_line({"train_loss": 0.25, **results}) == "final train_loss=0.25 eval_micro_f1=0.8"


def test_definitions_cover_training_eval_test_then_labels_up_to_the_limit() -> None:
    names = [d["Name"] for d in metric_definitions(LABELS, test=True)]
    assert names[: len(metric_names.TRAINING)] == list(metric_names.TRAINING)
    assert {f"eval_{m}" for m in AGGREGATE} <= set(names)
    assert "test_micro_f1" in names and "eval_f1_perl" in names
    many = [f"tag{i}" for i in range(100)]
    assert len(metric_definitions(many, test=True)) == MAX_DEFINITIONS
    assert len(set(names)) == len(names), "a metric is defined twice"


def test_an_evaluation_logs_one_compact_line_and_keeps_the_rest_for_sagemaker() -> None:
    event = {
        "eval_loss": 0.2,
        "eval_micro_f1": 0.7,
        "eval_macro_f1": 0.5,
        "eval_macro_average_precision": 0.6,
        "eval_weighted_f1": 0.65,
        "eval_f1_perl": 0.9,
        "eval_runtime": 3.2,
        "epoch": 2.0,
    }
    compact, rest = metric_names.split_log_event(event)
    assert list(compact) == [
        "eval_loss",
        "eval_micro_f1",
        "eval_macro_f1",
        "eval_macro_average_precision",
        "epoch",
    ]
    assert rest == {"eval_weighted_f1": 0.65, "eval_f1_perl": 0.9, "eval_runtime": 3.2}
    training = {"loss": 0.3, "learning_rate": 1e-4, "epoch": 0.5}
    assert metric_names.split_log_event(training) == (training, {})


def test_the_final_line_holds_the_headline_metrics_only() -> None:
    values = {"train_loss": 0.25, "train_runtime": 9.0, "test_micro_f1": 0.7, "test_f1_perl": 0.9}
    values |= {"test_micro_recall": 0.8, "eval_macro_f1": 0.5, "test_untuned_micro_f1": 0.6}
    line = final_line(values)
    assert line == "final train_loss=0.25 test_micro_f1=0.7 test_micro_recall=0.8 eval_macro_f1=0.5"
