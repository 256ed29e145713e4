"""The TF-IDF half of a hybrid model: numpy scores equal scikit-learn's, the blend weight,
and one hybrid run (train.py's defaults) read four ways (training's test predictions, `Classifier`,
`--do_train False`, transformers 4.51.3) and through the real model server."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from multilabel.serving.request_codec import DeploymentError
from multilabel.text import tfidf
from multilabel.training import metrics
from tests.helpers import DATA, LABELS, read_csv, run_train, train_on_sample, write_csv

COLUMNS = ("casePart1", "casePart2")


def texts_and_labels(path: Path) -> tuple[list[str], np.ndarray]:
    rows = read_csv(path)
    return [tfidf.record_text(r, COLUMNS) for r in rows], np.array(
        [[int(r[n]) for n in LABELS] for r in rows]
    )


def sklearn_probabilities(vectorizer, estimators, texts: list[str], train_labels: np.ndarray) -> np.ndarray:
    features = vectorizer.transform(texts)
    return np.column_stack(
        [
            e.predict_proba(features)[:, 1]
            if e is not None
            else np.full(len(texts), float(train_labels[0, k]))
            for k, e in enumerate(estimators)
        ]
    )


def test_numpy_scores_equal_scikit_learns_on_real_rows(tmp_path: Path) -> None:
    train_texts, train_labels = texts_and_labels(DATA / "train.csv")
    test_texts, _ = texts_and_labels(DATA / "test.csv")
    vectorizer, estimators = tfidf.fit_sklearn(train_texts, train_labels)
    assert vectorizer.analyzer is tfidf.analyse, "one analyser for training and serving"
    expected = sklearn_probabilities(vectorizer, estimators, test_texts, train_labels)
    model = tfidf.from_sklearn(vectorizer, estimators, train_labels)
    model.save(tmp_path)
    loaded = tfidf.TfidfModel.load(tmp_path)
    got = loaded.probabilities([*test_texts, "", "qqqzx vvvzy xxqqj"])
    np.testing.assert_allclose(got[: len(test_texts)], expected, atol=1e-6, rtol=0)
    assert len(loaded.terms) > 1000 and any(" " in t for t in loaded.terms), "words and word pairs"
    # A text with no known term scores each label's intercept alone, as scikit-learn's does.
    np.testing.assert_allclose(got[-1], 1 / (1 + np.exp(-loaded.intercept)), atol=1e-12)
    np.testing.assert_allclose(got[-2], got[-1], atol=1e-12)


def test_the_vocabulary_is_capped_at_the_most_frequent_terms_and_still_scores_as_scikit_learn() -> None:
    train_texts, train_labels = texts_and_labels(DATA / "train.csv")
    test_texts, _ = texts_and_labels(DATA / "test.csv")
    full, _ = tfidf.fit_sklearn(train_texts, train_labels)
    vectorizer, estimators = tfidf.fit_sklearn(train_texts, train_labels, max_terms=500)
    model = tfidf.from_sklearn(vectorizer, estimators, train_labels)
    assert len(model.terms) == 500 < len(full.vocabulary_)
    # The 500 kept are the most frequent: every dropped term is at most as frequent as any kept.
    counts = Counter(term for text in train_texts for term in tfidf.analyse(text))
    kept = set(model.terms)
    assert min(counts[t] for t in kept) >= max(counts[t] for t in full.vocabulary_ if t not in kept)
    expected = sklearn_probabilities(vectorizer, estimators, test_texts, train_labels)
    np.testing.assert_allclose(model.probabilities(test_texts), expected, atol=1e-6, rtol=0)


def test_many_labels_keep_fewer_terms_so_the_coefficients_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert tfidf.term_budget(10) == tfidf.MAX_TERMS
    assert tfidf.term_budget(1000) == tfidf.MAX_COEFFICIENTS // 1000 < tfidf.MAX_TERMS
    train_texts, train_labels = texts_and_labels(DATA / "train.csv")
    full = tfidf.fit(train_texts, train_labels)
    # A budget of 3,000 coefficients: 10 labels keep 300 terms, 20 labels (each column twice) 150.
    monkeypatch.setattr(tfidf, "MAX_COEFFICIENTS", 3000)
    ten = tfidf.fit(train_texts, train_labels)
    twenty = tfidf.fit(train_texts, np.hstack([train_labels, train_labels]))
    assert len(twenty.terms) == 150 < len(ten.terms) == 300 < len(full.terms)
    assert ten.coef.size == twenty.coef.size == 3000
    assert set(twenty.terms) < set(ten.terms)  # the most frequent terms, as with max_terms


def test_a_training_set_over_the_row_cap_fits_tfidf_on_a_random_sample(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from datasets import Dataset

    from multilabel.data.schema import ColumnSpec
    from multilabel.training import pipeline

    rows = read_csv(DATA / "train.csv")
    raw = {"train": Dataset.from_dict({c: [r[c] for r in rows] for c in COLUMNS})}
    labels = np.array([[int(r[n]) for n in LABELS] for r in rows])
    assert tfidf.fit_rows(len(rows), 3) is None, "the sample data is under the cap: every row"
    monkeypatch.setattr(tfidf, "MAX_FIT_ROWS", 100)
    with caplog.at_level(logging.INFO, logger=pipeline.logger.name):
        model = pipeline.fit_tfidf(raw, ColumnSpec(), labels, seed=3)
    assert f"fitted on a random 100 of the {len(rows)} training rows" in caplog.text
    chosen = tfidf.fit_rows(len(rows), 3)
    assert chosen == sorted(set(chosen)) and len(chosen) == 100, "100 distinct rows, in file order"
    assert chosen == tfidf.fit_rows(len(rows), 3) != tfidf.fit_rows(len(rows), 4), "drawn with the seed"
    # scikit-learn's smoothed idf, ln((1 + n) / (1 + df)) + 1, is largest for a term in MIN_DF
    # rows: n is the 100 rows fitted on, not the file's.
    assert model.idf.max() == pytest.approx(math.log(101 / (1 + tfidf.MIN_DF)) + 1)
    expected = tfidf.fit([tfidf.record_text(rows[i], COLUMNS) for i in chosen], labels[chosen])
    np.testing.assert_array_equal(model.coef, expected.coef)


def test_a_label_constant_in_training_gets_a_constant_probability() -> None:
    texts = ["alpha beta", "beta gamma", "alpha gamma", "gamma delta"] * 3
    labels = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]] * 3)
    model = tfidf.fit(texts, labels)
    probs = model.probabilities(["alpha beta", "delta"])
    assert np.all(probs[:, 1] < 1e-9) and np.all(probs[:, 2] > 1 - 1e-9)
    assert probs[0, 0] > probs[1, 0], "the varying label still follows its words"


def test_the_blend_weight_follows_the_better_model() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 3)) < 0.3).astype(int)
    informative = np.clip(labels * 0.6 + rng.random((200, 3)) * 0.4, 0, 1)
    noise = rng.random((200, 3))
    weight, scores = metrics.choose_blend_weight(informative, noise, labels)
    assert weight >= 0.8 and scores[weight] == max(scores.values())
    weight, _ = metrics.choose_blend_weight(noise, informative, labels)
    assert weight <= 0.2
    np.testing.assert_allclose(tfidf.blend(np.ones((1, 2)), np.zeros((1, 2)), 0.3), [[0.3, 0.3]])
    np.testing.assert_allclose(tfidf.blend(np.ones((1, 2)), np.zeros((1, 2)), [0.3, 1.0]), [[0.3, 1.0]])


def encoder_and_other_that_each_know_a_label(rows: int, positive_share: float, seed: int = 0):
    """Labels 0/1/2 and two models' probabilities: label 0 known to the encoder only, label 1
    to the other only, label 2 to both."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((rows, 3)) < positive_share).astype(int)
    informative = np.clip(labels * 0.6 + rng.random((rows, 3)) * 0.4, 0, 1)
    noise = rng.random((rows, 3))
    encoder = np.column_stack([informative[:, 0], noise[:, 1], informative[:, 2]])
    other = np.column_stack([noise[:, 0], informative[:, 1], informative[:, 2]])
    return encoder, other, labels


def test_per_label_blend_weights_follow_each_labels_better_model_when_it_has_many_positives() -> None:
    encoder, other, labels = encoder_and_other_that_each_know_a_label(3000, 0.3)
    choice = metrics.choose_blend_weights(encoder, other, labels)
    # Each model separates its label perfectly, so a little of the other one costs nothing
    # there, and ties go to the larger encoder share.
    assert choice.own[0] == 1.0 and choice.own[1] <= 0.1
    assert choice.weights[0] > 0.99 and choice.weights[1] < 0.11, "900 positives: the label's own weight"
    alone_row, own_rows = (
        metrics.BLEND_WEIGHTS.index(1.0),
        [metrics.BLEND_WEIGHTS.index(w) for w in choice.own],
    )
    assert choice.scores[own_rows[1], 1] > choice.scores[alone_row, 1] + 0.3, "average precision"
    assert choice.scores[own_rows[0], 0] == choice.scores[alone_row, 0]
    assert choice.positives[0] == labels[:, 0].sum()
    # Each label is scored alone: its own weight does not depend on the other labels.
    alone = metrics.choose_blend_weights(encoder[:, 1:2], other[:, 1:2], labels[:, 1:2])
    assert alone.own.tolist() == choice.own[1:2].tolist() and alone.scores.shape == (
        len(metrics.BLEND_WEIGHTS),
        1,
    )


def test_a_label_with_few_positives_stays_near_the_shared_weight() -> None:
    encoder, other, labels = encoder_and_other_that_each_know_a_label(300, 0.3)
    labels[10:, 1] = 0  # label 1 keeps only its positives among the first ten rows
    positives = int(labels[:, 1].sum())
    assert 1 <= positives <= 10
    choice = metrics.choose_blend_weights(encoder, other, labels)
    kept = positives / (positives + metrics.BLEND_POSITIVES)
    assert choice.weights[1] == pytest.approx(kept * choice.own[1] + (1 - kept) * choice.shared, abs=1e-4)
    assert abs(choice.weights[1] - choice.shared) <= kept + 1e-4
    # Without the prior every label takes its own weight; a label without positives the shared one.
    np.testing.assert_array_equal(metrics.choose_blend_weights(encoder, other, labels, 0).weights, choice.own)
    labels[:, 2] = 0
    choice = metrics.choose_blend_weights(encoder, other, labels)
    assert choice.own[2] == choice.weights[2] == choice.shared
    assert np.isnan(choice.scores[:, 2]).all()
    # No positives at all: the encoder alone.
    assert metrics.choose_blend_weights(encoder, other, np.zeros_like(labels)).weights.tolist() == [1.0] * 3


@pytest.mark.parametrize(
    ("weight", "problem"),
    [
        (0.4, None),
        ({"label1": 0.2, "label2": 1.0}, None),
        (1.5, "expected a number from 0 to 1"),
        ({"label1": 0.2}, "labels missing ['label2']"),
        ({"label1": 0.2, "label2": 1.0, "other": 0.5}, "not labels ['other']"),
        ({"label1": "0.2", "label2": True}, "found {'label1': '0.2', 'label2': True}"),
        ([0.2, 1.0], "expected a number from 0 to 1, {label: number"),
    ],
)
def test_the_saved_hybrid_weight_is_one_number_or_one_per_label(weight: object, problem: str | None) -> None:
    from multilabel.core.artifact import ClassifierConfig

    config = ClassifierConfig(
        text_columns=COLUMNS,
        thresholds={"label1": 0.5, "label2": 0.5},
        max_seq_length=128,
        hybrid_weight=weight,
    )
    problems = config.problems(["label1", "label2"])
    if problem is None:
        assert problems == []
        expected = [0.2, 1.0] if isinstance(weight, dict) else 0.4
        assert config.blend_weights(["label1", "label2"]) == expected
        # The label report's column: one per label, in the order asked for.
        assert config.encoder_weights(["label2", "label1"]) == (
            [1.0, 0.2] if isinstance(weight, dict) else [0.4, 0.4]
        )
    else:
        assert len(problems) == 1 and problem in problems[0], problems


# ------------------------------------------------------------ one hybrid run


@pytest.fixture(scope="module")
def hybrid_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hybrid")
    # train.py's defaults: the hybrid (--hybrid auto) with per-label weights. The saved
    # {label: weight} is read back by every scoring path below (one number is the same code
    # with a scalar; its choice is tested above).
    result = train_on_sample(tiny_model, base)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "hybrid: per-label encoder weights chosen on validation" in result.stdout + result.stderr
    weights = json.loads((base / "model" / "classifier_config.json").read_text())["hybrid_weight"]
    report = (base / "data" / "label_report.md").read_text()
    assert "| encoder weight |" in report
    assert f"| {LABELS[0]} | " in report and f" | {weights[LABELS[0]]:.2f} | " in report
    return base


def expected_probabilities(run: Path) -> np.ndarray:
    predictions = read_csv(run / "data" / "test_predictions.csv")
    return np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions])


def hybrid_records() -> list[dict[str, str]]:
    return [{c: r[c] for c in COLUMNS} for r in read_csv(DATA / "test.csv")]


@pytest.mark.slow
def test_hybrid_scores_the_same_in_training_scoring_and_the_classifier(hybrid_run: Path) -> None:
    from multilabel.serving.classifier import Classifier

    model_dir = hybrid_run / "model"
    config = json.loads((model_dir / "classifier_config.json").read_text())
    weights = config["hybrid_weight"]
    assert set(weights) == set(LABELS) and all(0 <= w <= 1 for w in weights.values())
    assert (model_dir / "tfidf.npz").is_file() and (
        model_dir / "code" / "multilabel" / "text" / "tfidf.py"
    ).is_file()
    expected = expected_probabilities(hybrid_run)
    classifier = Classifier.load(model_dir)
    np.testing.assert_allclose(
        classifier.probabilities(hybrid_records()).numpy(), expected, atol=1e-5, rtol=0
    )
    # The blend is really there: the encoder alone scores differently.
    classifier.tfidf = None
    if min(weights.values()) < 1:
        assert np.abs(classifier.probabilities(hybrid_records()).numpy() - expected).max() > 1e-3

    scored = hybrid_run / "scored"
    result = run_train(
        [
            f"--model_name_or_path={model_dir}",
            "--do_train=False",
            "--do_predict",
            f"--test_file={DATA / 'test.csv'}",
            f"--output_data_dir={scored}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rescored = np.array(
        [[float(p[f"prob_{n}"]) for n in LABELS] for p in read_csv(scored / "test_predictions.csv")]
    )
    np.testing.assert_allclose(rescored, expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_a_hybrid_model_without_its_tfidf_file_is_refused(hybrid_run: Path, tmp_path: Path) -> None:
    import shutil

    from multilabel.serving.classifier import Classifier

    broken = tmp_path / "model"
    shutil.copytree(hybrid_run / "model", broken)
    (broken / "tfidf.npz").unlink()
    with pytest.raises(DeploymentError, match=r"tfidf.npz: classifier_config.json has a hybrid_weight"):
        Classifier.load(broken)
    from multilabel.core.artifact import ArtifactError, check_model_archive, pack_model

    assert check_model_archive(pack_model(hybrid_run / "model", tmp_path / "whole.tar.gz")) == []
    with pytest.raises(ArtifactError, match=r"no tfidf.npz: classifier_config.json blends a TF-IDF model"):
        pack_model(broken, tmp_path / "broken.tar.gz")
    assert not (tmp_path / "broken.tar.gz").exists()


@pytest.mark.slow
@pytest.mark.parametrize("hybrid", ["tfidf", "auto"])
def test_training_rows_tfidf_cannot_learn_from_are_refused_or_left_to_the_encoder(
    hybrid: str, tiny_model: Path, tmp_path: Path
) -> None:
    # Every word occurs in one record only: nothing survives min_df, so scikit-learn has no terms.
    rows = [
        [f"first{i}x", f"second{i}y", *[r[n] for n in LABELS]]
        for i, r in enumerate(read_csv(DATA / "train.csv"))
    ]
    train = write_csv(tmp_path / "unique-words.csv", rows)
    result = run_train(
        [
            f"--model_name_or_path={tiny_model}",
            f"--train_file={train}",
            f"--validation_file={DATA / 'validation.csv'}",
            f"--model_dir={tmp_path / 'model'}",
            f"--output_data_dir={tmp_path / 'data'}",
            f"--output_dir={tmp_path / 'checkpoints'}",
            f"--hybrid={hybrid}",
            "--num_train_epochs=1",
        ]
    )
    output = result.stdout + result.stderr
    assert "the TF-IDF half cannot be fitted" in output
    assert f"occur in at least {tfidf.MIN_DF} records" in output
    assert "Traceback" not in output
    if hybrid == "tfidf":  # asked for: refused before training, no checkpoint, no model, no results
        assert result.returncode == 2, output[-3000:]
        assert "--hybrid tfidf: the TF-IDF half cannot be fitted" in output
        assert not list((tmp_path / "checkpoints").glob("checkpoint-*"))
        assert not (tmp_path / "model").exists() and not (tmp_path / "data").exists()
        return
    # The default: said once, and the encoder alone is trained and saved.
    assert result.returncode == 0, output[-3000:]
    assert "--hybrid auto: the TF-IDF half cannot be fitted" in output
    assert "Training the encoder alone." in output
    assert not (tmp_path / "model" / "tfidf.npz").exists()
    config = json.loads((tmp_path / "model" / "classifier_config.json").read_text())
    assert config.get("hybrid_weight") is None
    assert (tmp_path / "data" / "validation_predictions.csv").exists()


@pytest.mark.slow
def test_hybrid_model_serves_under_transformers_4_51_3(hybrid_run: Path) -> None:
    from tests.test_serving_compat import serve_in_serving_venv

    output = serve_in_serving_venv(hybrid_run / "model", hybrid_records())
    assert output["present"] == [], "served without scikit-learn"
    scores = np.array([[r["scores"][n] for n in LABELS] for r in output["results"]])
    np.testing.assert_allclose(scores, expected_probabilities(hybrid_run), atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.integration
def test_hybrid_model_through_the_model_server(hybrid_run: Path, tmp_path: Path) -> None:
    from tests.model_server import ModelServer, post

    records = hybrid_records()
    server = ModelServer(hybrid_run / "model", tmp_path, {"MULTILABEL_MAX_TOKENS": "8192"})
    server.start(probe=json.dumps({"inputs": records[0]}).encode())
    try:
        status, body = post(
            f"{server.url}/invocations", json.dumps({"inputs": records}).encode(), "application/json"
        )
    finally:
        server.stop()
    assert status == 200, body
    results = json.loads(body)
    scores = np.array([[r["scores"][n] for n in LABELS] for r in results])
    np.testing.assert_allclose(scores, expected_probabilities(hybrid_run), atol=1e-5, rtol=0)
    thresholds = json.loads((hybrid_run / "model" / "classifier_config.json").read_text())["thresholds"]
    for result, row in zip(results, scores, strict=True):
        assert set(result["labels"]) == {n for n, s in zip(LABELS, row, strict=True) if s >= thresholds[n]}


@pytest.mark.slow
def test_hybrid_benchmark_smoke(hybrid_run: Path, tmp_path: Path) -> None:
    from tests.test_benchmarks_smoke import run_benchmark

    out = tmp_path / "hybrid.json"
    run_benchmark("hybrid.py", str(hybrid_run), "--data", str(DATA), "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["run"] for r in rows][2:] == [f"{hybrid_run.name}: encoder", f"{hybrid_run.name}: hybrid"]
    assert all(0 <= r["micro_f1"] <= 1 and 0 <= r["macro_f1"] <= 1 for r in rows)
    assert 0 <= rows[-1]["weight"] <= 1
