"""train.py end to end, as a subprocess with SageMaker's environment, on a tiny RoBERTa."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from multilabel.training.metrics import multilabel_metrics
from tests.conftest import SageMakerRun
from tests.helpers import DATA, FAST_ARGS, LABELS, files_under, read_csv, run_train, write_csv

# Every test trains (the session's sm_run, or a run of its own) in a train.py subprocess.
pytestmark = pytest.mark.slow

MODEL_FILES = {
    "code/inference.py",
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "classifier_config.json",
    "tfidf.npz",  # the hybrid's TF-IDF half (--hybrid auto, the default)
}
OUTPUT_FILES = {
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "test_results.json",
    "test_predictions.csv",
    "validation_predictions.csv",
    "label_report.md",
    "label_report.png",
}


def test_model_dir_holds_exactly_the_deployable_files(sm_run: SageMakerRun) -> None:
    files = files_under(sm_run.model_dir)
    package = {f for f in files if f.startswith("code/multilabel/")}
    assert files - package == MODEL_FILES
    # The modules the handler imports travel, sources only, and no training module.
    assert {
        "code/multilabel/serving/classifier.py",
        "code/multilabel/serving/request_codec.py",
        "code/multilabel/core/artifact.py",
        "code/multilabel/text/pair_encoding.py",
    } <= package, f"the handler's imports are missing from code/: {sorted(package)}"
    assert "code/multilabel/training/pipeline.py" not in package, "training code shipped to the endpoint"
    assert all(f.endswith(".py") for f in package)


def test_output_data_files(sm_run: SageMakerRun) -> None:
    assert files_under(sm_run.output_data_dir) == OUTPUT_FILES


def test_checkpoints_go_to_the_checkpoint_dir_only(sm_run: SageMakerRun) -> None:
    checkpoints = sorted(p.name for p in sm_run.checkpoint_dir.iterdir())
    assert "run_fingerprint.json" in checkpoints  # which run owns them (test_run_safety.py)
    checkpoints.remove("run_fingerprint.json")
    assert checkpoints and all(name.startswith("checkpoint-") for name in checkpoints)
    assert not any(
        part.startswith("checkpoint-") for f in files_under(sm_run.model_dir) for part in f.split("/")
    )


def test_config_is_multilabel_with_label_names(sm_run: SageMakerRun) -> None:
    config = json.loads((sm_run.model_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {str(i): name for i, name in enumerate(LABELS)}
    assert config["label2id"] == {name: i for i, name in enumerate(LABELS)}


def test_classifier_config(sm_run: SageMakerRun) -> None:
    config = json.loads((sm_run.model_dir / "classifier_config.json").read_text())
    assert config["text_columns"] == ["casePart1", "casePart2"]
    assert config["max_seq_length"] == 64
    assert config["truncation"] == "longest_first"
    assert list(config["thresholds"]) == LABELS
    assert all(0.0 <= t <= 1.0 for t in config["thresholds"].values())


def test_metrics_files(sm_run: SageMakerRun) -> None:
    results = json.loads((sm_run.output_data_dir / "all_results.json").read_text())
    for split in ("eval", "test"):
        for name in (
            "micro_f1",
            "macro_f1",
            "weighted_f1",
            "samples_f1",
            "micro_precision",
            "micro_recall",
            "subset_accuracy",
            "hamming_loss",
            "micro_roc_auc",
            "macro_average_precision",
            "f1_label1",
            "support_label1",
        ):
            assert 0.0 <= results[f"{split}_{name}"] <= (100 if "support" in name else 1.0)
            assert f"{split}_untuned_{name}" in results
    assert results["train_loss"] > 0
    test = json.loads((sm_run.output_data_dir / "test_results.json").read_text())
    assert set(test) == {k for k in results if k.startswith("test_")}
    assert sum(test[f"test_support_{name}"] for name in LABELS) == sum(
        int(row[name]) for row in read_csv(DATA / "test.csv") for name in LABELS
    )


def test_per_row_predictions_are_in_input_order_and_match_the_metrics(sm_run: SageMakerRun) -> None:
    """The file lines up with test.csv row by row, despite group_by_length.

    Each row's probabilities are recomputed by the saved model alone, one row at a time,
    and the saved thresholds applied to them reproduce the reported test metrics.
    """
    from multilabel.serving.classifier import Classifier

    predictions = read_csv(sm_run.output_data_dir / "test_predictions.csv")
    test_rows = read_csv(DATA / "test.csv")
    assert [int(p["row"]) for p in predictions] == list(range(1, len(test_rows) + 1))
    probs = np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions])

    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    direct = np.concatenate([classifier.probabilities([row]).numpy() for row in test_rows[:12]])
    np.testing.assert_allclose(probs[:12], direct, atol=1e-5)

    thresholds = np.array(classifier.config.threshold_list(LABELS))
    labels = np.array([[int(r[n]) for n in LABELS] for r in test_rows])
    recomputed = multilabel_metrics(probs, labels, thresholds, LABELS)
    reported = json.loads((sm_run.output_data_dir / "test_results.json").read_text())
    assert recomputed["micro_f1"] == pytest.approx(reported["test_micro_f1"], abs=1e-6)
    assert recomputed["macro_f1"] == pytest.approx(reported["test_macro_f1"], abs=1e-6)
    for p, row_probs in zip(predictions, probs, strict=False):
        expected = [n for n, prob, t in zip(LABELS, row_probs, thresholds, strict=False) if prob >= t]
        assert (p["predicted_labels"].split("|") if p["predicted_labels"] else []) == expected


def test_label_report_lists_every_label(sm_run: SageMakerRun) -> None:
    report = (sm_run.output_data_dir / "label_report.md").read_text()
    assert report.startswith("# Per-label results on the test set (100 rows)")
    assert all(f"| {name} |" in report for name in LABELS)
    assert (sm_run.output_data_dir / "label_report.png").read_bytes()[:4] == b"\x89PNG"


def test_training_log_has_metric_lines_and_decisions(sm_run: SageMakerRun) -> None:
    assert "label format: indicator" in sm_run.stdout
    assert "rows (" in sm_run.stdout and "were truncated to max_seq_length=64" in sm_run.stdout
    assert "metrics step=" in sm_run.stdout and "eval_micro_f1=" in sm_run.stdout
    assert "with tuned thresholds" in sm_run.stdout


def test_bad_file_exits_non_zero_with_the_message_and_writes_no_model(
    tiny_model: Path, tmp_path: Path
) -> None:
    rows = [["text", "pair", *([0] * 10)] for _ in range(4)]
    rows[2][3] = "maybe"  # label2
    train = write_csv(tmp_path / "bad.csv", rows)
    model_dir = tmp_path / "model"
    result = run_train(
        [
            f"--model_name_or_path={tiny_model}",
            f"--train_file={train}",
            f"--model_dir={model_dir}",
            f"--output_dir={tmp_path / 'ckpt'}",
        ]
    )
    assert result.returncode == 2
    assert (
        f"{train}: column 'label2', row 3 (1 in all): expected 0/1, true/false or yes/no, found ['maybe']"
        in result.stdout
    )
    assert "the stratified split needs at least 11 rows" in result.stdout  # reported together
    assert not model_dir.exists()
    assert not (tmp_path / "ckpt").exists()


def test_no_validation_file_splits_train_and_names_format(tiny_model: Path, tmp_path: Path) -> None:
    """Names-format labels, a stratified validation split, and checkpoints elsewhere."""
    source = read_csv(DATA / "train.csv")[:120]
    header = ["title", "body", "tag1", "tag2"]
    names = {"label3": "devel-lib", "label5": "perl", "label6": "c"}
    rows = []
    for r in source:
        tags = [names[k] for k in names if r[k] == "1"][:2]
        rows.append([r["casePart1"], r["casePart2"], *[*tags, "", ""][:2]])
    train = write_csv(tmp_path / "names.csv", rows, header)
    result = run_train(
        [
            f"--model_name_or_path={tiny_model}",
            f"--train_file={train}",
            "--text_column_names=title,body",
            "--label_column_names=tag1,tag2",
            f"--model_dir={tmp_path / 'model'}",
            f"--output_data_dir={tmp_path / 'out'}",
            f"--output_dir={tmp_path / 'ckpt'}",
            "--num_train_epochs=1",
            *FAST_ARGS,
        ]
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "label format: names" in result.stdout
    assert "held out 12 of 120 training rows (10%, multi-label stratified, seed 42)" in result.stdout
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert sorted(config["label2id"]) == ["c", "devel-lib", "perl"]
    classifier = json.loads((tmp_path / "model" / "classifier_config.json").read_text())
    assert classifier["text_columns"] == ["title", "body"]
    assert files_under(tmp_path / "out") == OUTPUT_FILES - {"test_results.json", "test_predictions.csv"}
    assert "validation set" in (tmp_path / "out" / "label_report.md").read_text()
