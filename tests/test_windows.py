"""Long records read as windows: cutting, pooling, training's loss, and the same scores
from training, `--do_train False` and the endpoint (also under transformers 4.51.3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, RobertaForSequenceClassification, TrainingArguments

from multilabel.serving.request_codec import MAX_TOKENS_ENV, DeploymentError, RequestError
from multilabel.text.pair_encoding import encode_pairs
from multilabel.text.windows import (
    WINDOW_COUNTS,
    WindowCollator,
    WindowSettings,
    encode_windows,
    pool_logits,
    window_texts,
)
from tests.helpers import DATA, LABELS, read_csv, run_train, train_on_sample

LONG = " ".join(f"word{i} is here." for i in range(300))  # far more than any window below


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    return AutoTokenizer.from_pretrained(tiny_model)


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_a_pair_that_fits_is_one_window_encoded_as_truncation_would(tokenizer) -> None:
    texts, pairs = ["a short synopsis"], ["and a short description"]
    features, counts, stats = encode_windows(tokenizer, texts, pairs, 64, 4, 8)
    truncated, _ = encode_pairs(tokenizer, texts, pairs, 64)
    assert counts == [1] and stats.tokens_dropped == 0 and stats.multi_window == 0
    assert features["input_ids"] == truncated["input_ids"]


def test_the_first_text_leads_every_window_and_the_second_is_covered_with_overlap(tokenizer) -> None:
    synopsis = "the synopsis of the case"
    cut = window_texts(tokenizer, [synopsis], [LONG], 48, 100, 6)
    assert cut.counts == [len(cut.first)] and cut.counts[0] > 3
    assert set(cut.first) == {synopsis}, "the whole first text opens every window"
    position = 0
    for k, window in enumerate(cut.second):
        start = LONG.index(window, max(position - len(window), 0))
        assert start <= position, f"window {k} leaves a gap before it"
        if k:
            assert start < position, f"window {k} does not overlap the one before"
        position = start + len(window)
    assert position == len(LONG), "the windows reach the end of the second text"
    assert cut.stats.tokens_dropped == 0 and cut.stats.capped == 0
    features, _, _ = encode_windows(tokenizer, [synopsis], [LONG], 48, 100, 6)
    assert max(len(ids) for ids in features["input_ids"]) <= 48


def test_the_cap_keeps_the_first_windows_and_counts_what_is_dropped(tokenizer) -> None:
    cut = window_texts(tokenizer, ["synopsis"], [LONG], 32, 3, 4)
    assert cut.counts == [3] and cut.stats.capped == 1
    assert LONG.startswith(cut.second[0])
    total = token_count(tokenizer, "synopsis") + token_count(tokenizer, LONG)
    assert cut.stats.tokens == total
    assert 0 < cut.stats.tokens_dropped < total
    assert "1 reach the cap of 3 windows" in cut.stats.summary(32, 3)


def test_a_long_first_text_slides_beside_a_short_second_and_a_single_text_slides_alone(tokenizer) -> None:
    cut = window_texts(tokenizer, [LONG], ["short pair"], 40, 500, 4)
    assert len(cut.first) > 3 and set(cut.second) == {"short pair"}
    assert LONG.endswith(cut.first[-1]) and cut.stats.tokens_dropped == 0
    single = window_texts(tokenizer, [LONG, "tiny"], None, 40, 500, 4)
    assert single.second is None and single.counts[1] == 1 and single.first[-1] == "tiny"
    assert LONG.endswith(single.first[single.counts[0] - 1])


def test_pooling() -> None:
    logits = torch.tensor([[1.0, -2.0], [3.0, -4.0], [0.5, 0.5]])
    assert pool_logits(logits, [2, 1], "max").tolist() == [[3.0, -2.0], [0.5, 0.5]]
    assert pool_logits(logits, [2, 1], "mean").tolist() == [[2.0, -3.0], [0.5, 0.5]]
    smooth = pool_logits(logits, [2, 1], "logsumexp")
    expected = torch.logsumexp(logits[:2], dim=0) - np.log(2)
    torch.testing.assert_close(smooth[0], expected)
    torch.testing.assert_close(smooth[1], logits[2]), "one window keeps its logits"
    with pytest.raises(ValueError, match="3 windows of logits for 2 windows counted"):
        pool_logits(logits, [1, 1], "max")


def test_the_collator_flattens_records_into_windows_in_order() -> None:
    records = [
        {"input_ids": [[5, 6, 7], [5, 8]], "attention_mask": [[1, 1, 1], [1, 1]], "labels": [1.0, 0.0]},
        {"input_ids": [[9]], "attention_mask": [[1]], "labels": [0.0, 1.0]},
    ]
    batch = WindowCollator(pad_token_id=1, pad_to_multiple_of=4)(records)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1], [5, 8, 1, 1], [9, 1, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]]
    assert batch[WINDOW_COUNTS].tolist() == [2, 1]
    assert batch["labels"].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_training_loss_is_the_bce_of_the_records_pooled_logits(tiny_model: Path, tmp_path: Path) -> None:
    from multilabel.training.trainer import MultiLabelTrainer

    torch.manual_seed(0)
    model = RobertaForSequenceClassification.from_pretrained(
        tiny_model, num_labels=2, problem_type="multi_label_classification"
    ).eval()
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = MultiLabelTrainer(model=model, args=args, windows=WindowSettings(max_windows=2))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    features, counts, _ = encode_windows(tokenizer, ["one", "two"], [LONG, "short"], 32, 3, 4)
    grouped = [
        {"input_ids": features["input_ids"][:3], "attention_mask": features["attention_mask"][:3]},
        {"input_ids": features["input_ids"][3:], "attention_mask": features["attention_mask"][3:]},
    ]
    for record, label in zip(grouped, ([1.0, 0.0], [0.0, 1.0]), strict=True):
        record["labels"] = label
    batch = WindowCollator(tokenizer.pad_token_id)(grouped)
    assert counts == [3, 1]
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        window_logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        pooled = torch.stack([window_logits[:3].mean(0), window_logits[3]])
        expected = torch.nn.functional.binary_cross_entropy_with_logits(pooled, batch["labels"])
        loss_, logits, labels = trainer.prediction_step(model, dict(batch), prediction_loss_only=False)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(loss_, expected)
    torch.testing.assert_close(logits, pooled)
    assert labels.tolist() == [[1.0, 0.0], [0.0, 1.0]]


# ------------------------------------------------------------ one run, read three ways

WINDOW_ARGS = ["--max_seq_length", "32", "--max_windows", "3", "--window_pooling", "max"]


@pytest.fixture(scope="module")
def windowed_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("windows")
    result = train_on_sample(tiny_model, base, *WINDOW_ARGS)  # WINDOW_ARGS override --max_seq_length
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "records -> " in log and "reach the cap of 3 windows" in log
    return base


@pytest.mark.slow
def test_records_as_windows_score_the_same_in_training_scoring_and_the_endpoint(windowed_run: Path) -> None:
    from multilabel.serving.classifier import Classifier

    config = json.loads((windowed_run / "model" / "classifier_config.json").read_text())
    assert (config["max_windows"], config["window_overlap"], config["window_pooling"]) == (3, 4, "max")
    assert (windowed_run / "model" / "code" / "multilabel" / "text" / "windows.py").is_file()
    report = (windowed_run / "data" / "label_report.md").read_text()
    assert "## Text lengths of the training data" in report and "max_seq_length 32 (this run)" in report
    predictions = read_csv(windowed_run / "data" / "test_predictions.csv")
    records = read_csv(DATA / "test.csv")
    assert len(predictions) == len(records), "one prediction per record, not per window"
    expected = np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions])
    classifier = Classifier.load(windowed_run / "model")
    pairs = [{"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in records]
    np.testing.assert_allclose(classifier.probabilities(pairs).numpy(), expected, atol=1e-5, rtol=0)

    scored = windowed_run / "scored"
    result = run_train(
        [
            f"--model_name_or_path={windowed_run / 'model'}",
            "--do_train=False",
            "--do_predict",
            f"--test_file={DATA / 'test.csv'}",
            f"--output_data_dir={scored}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rescored = read_csv(scored / "test_predictions.csv")
    again = np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in rescored])
    np.testing.assert_allclose(again, expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_windowed_model_serves_under_transformers_4_51_3(windowed_run: Path) -> None:
    from tests.test_serving_compat import serve_in_serving_venv

    records = [
        {"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in read_csv(DATA / "test.csv")
    ]
    output = serve_in_serving_venv(windowed_run / "model", records)
    predictions = read_csv(windowed_run / "data" / "test_predictions.csv")
    expected = np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions])
    scores = np.array([[r["scores"][n] for n in LABELS] for r in output["results"]])
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_the_token_budget_counts_every_window(windowed_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from multilabel.serving.classifier import Classifier

    monkeypatch.setenv(MAX_TOKENS_ENV, "95")
    with pytest.raises(
        DeploymentError,
        match=r"less than the 96 tokens of one long record \(max_seq_length 32 x max_windows 3\)",
    ):
        Classifier.load(windowed_run / "model")
    monkeypatch.setenv(MAX_TOKENS_ENV, "96")
    classifier = Classifier.load(windowed_run / "model")
    long = {"casePart1": "synopsis", "casePart2": LONG}
    assert len(classifier.predict([long])) == 1, "one record of 3 full windows fits the budget"
    with pytest.raises(RequestError, match=r"tokens after 32 per window, 3 windows per record, at most 96"):
        classifier.probabilities([long, long])
    assert len(classifier.predict([long, long, long])) == 3, "predict splits any number within the budget"
