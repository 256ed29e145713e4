"""The endpoint's model: start-up checks, the token budget, truncation, batching and decisions.

Every test but the first loads the session's trained tiny model (tests/conftest.py `sm_run`,
a whole train.py run), so they are marked slow.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from multilabel.serving.classifier import Classifier, default_max_tokens
from multilabel.serving.options import Options
from multilabel.serving.request_codec import DeploymentError, Request, RequestError, parse_request
from multilabel.text.pair_encoding import TRUNCATION_STRATEGIES
from multilabel.training import metrics
from tests.conftest import SageMakerRun
from tests.helpers import DATA, LABELS, read_csv

COLUMNS = ("casePart1", "casePart2")


def records_of(body) -> Request:
    """A JSON request as the endpoint decodes it."""
    return parse_request(json.dumps(body), "application/json")


def test_default_token_budget_follows_the_model_size() -> None:
    """4096 tokens for roberta-base on a CPU (measured), the same work for other sizes."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    with torch.device("meta"):  # shapes only: no memory, no time
        base = RobertaForSequenceClassification(RobertaConfig(num_labels=3))
        large = RobertaForSequenceClassification(
            RobertaConfig(
                hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
            )
        )
    assert default_max_tokens(base, "cpu", 256) == 4096
    assert default_max_tokens(large, "cpu", 256) == 1152  # 4096 * 85.7M / 303.4M parameters
    assert default_max_tokens(large, "cpu", 2048) == 2048  # always at least one full record
    assert default_max_tokens(base, "cuda", 256) == 65536


@pytest.mark.slow
def test_a_loaded_model_gets_the_default_token_budget(sm_run: SageMakerRun) -> None:
    """MULTILABEL_MAX_TOKENS unset: the tiny model's budget is default_max_tokens', far above any request."""
    tiny = Classifier.load(sm_run.model_dir, device="cpu")
    assert tiny.max_tokens == default_max_tokens(tiny.model, "cpu", 64) > 10**6


@pytest.fixture
def model_dir(sm_run: SageMakerRun, tmp_path: Path) -> Path:
    """A copy of the session's trained model directory, free to break."""
    return Path(shutil.copytree(sm_run.model_dir, tmp_path / "model"))


def edit_config(model_dir: Path, **changes) -> None:
    path = model_dir / "classifier_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MULTILABEL_BATCH_SIZE": "-4"},
            r"MULTILABEL_BATCH_SIZE='-4': expected a positive integer \(default 8\); fix or unset it",
        ),
        ({"MULTILABEL_BATCH_SIZE": "0"}, r"MULTILABEL_BATCH_SIZE='0': expected a positive integer"),
        (
            {"MULTILABEL_MAX_RECORDS": "abc"},
            r"MULTILABEL_MAX_RECORDS='abc': expected a positive integer \(default 256\)",
        ),
        ({"MULTILABEL_MAX_TOKENS": "1e4"}, r"MULTILABEL_MAX_TOKENS='1e4': expected a positive integer"),
        (
            {"MULTILABEL_MAX_TOKENS": "10"},
            r"MULTILABEL_MAX_TOKENS=10: less than the 64 tokens of one long record \(max_seq_length 64 x "
            r"max_windows 1\), so one could never be served",
        ),
    ],
)
def test_bad_settings_fail_at_load(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(
        DeploymentError, match=rf"^cannot serve {re.escape(str(model_dir))}: 1 problem\(s\)\n  - {message}"
    ):
        Classifier.load(model_dir, device="cpu")


@pytest.mark.slow
def test_every_problem_of_a_broken_model_directory_at_once(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = json.loads((model_dir / "classifier_config.json").read_text())
    del config["thresholds"]["label3"]
    config["thresholds"]["label1"] = 7
    edit_config(model_dir, thresholds=config["thresholds"], max_seq_length="64")
    monkeypatch.setenv("MULTILABEL_BATCH_SIZE", "0")
    with pytest.raises(DeploymentError) as info:
        Classifier.load(model_dir, device="cpu")
    assert str(info.value).splitlines()[1:] == [
        "  - MULTILABEL_BATCH_SIZE='0': expected a positive integer (default 8); fix or unset it in the "
        "endpoint's environment",
        "  - classifier_config.json: max_seq_length: expected a positive integer, found '64'",
        "  - classifier_config.json: thresholds: no threshold for label(s) ['label3'] of config.json's id2label",
        "  - classifier_config.json: thresholds: expected numbers in [0, 1], found {'label1': 7}",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", r"classifier_config.json: not valid JSON \(Expecting property name"),
        (
            '{"thresholds": {}}',
            r"classifier_config.json: expected an object with the keys \['max_seq_length', 'text_columns', 'thresholds'\]",
        ),
        (None, r"classifier_config.json: missing; this model directory was not written by train.py"),
    ],
)
def test_unreadable_classifier_config_fails_at_load(
    model_dir: Path, content: str | None, message: str
) -> None:
    path = model_dir / "classifier_config.json"
    path.unlink()
    if content is not None:
        path.write_text(content)
    with pytest.raises(DeploymentError, match=message):
        Classifier.load(model_dir, device="cpu")


@pytest.mark.slow
def test_max_seq_length_beyond_the_tokenizer_fails_at_load(model_dir: Path) -> None:
    edit_config(model_dir, max_seq_length=100000)
    with pytest.raises(
        DeploymentError, match=r"max_seq_length 100000 is more than the tokenizer's model_max_length 128"
    ):
        Classifier.load(model_dir, device="cpu")


@pytest.mark.slow
def test_token_budget(sm_run: SageMakerRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTILABEL_MAX_TOKENS", "100")
    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    assert classifier.max_tokens == 100, "MULTILABEL_MAX_TOKENS sets the budget"
    long = {"casePart1": "word " * 200, "casePart2": "other " * 200}
    assert len(classifier.predict([long])) == 1, "one long record fits: 64 tokens after truncation"
    with pytest.raises(RequestError) as info:
        classifier.handle(records_of([long, long]))
    assert str(info.value) == (
        "request too large: 128 tokens after truncation to 64 per record, at most 100 per request "
        "(MULTILABEL_MAX_TOKENS); split it into requests of about 1 records like these"
    )
    assert (info.value.kind, info.value.where) == ("token budget exceeded", "request")


def encoded_pair(classifier: Classifier, pair: tuple[str, str]) -> dict | str:
    """What the model sees of one pair, or the kind of error when the truncation cannot fit it."""
    from multilabel.text.pair_encoding import encode_pairs

    config = classifier.config
    try:
        return encode_pairs(
            classifier.tokenizer, [pair[0]], [pair[1]], config.max_seq_length, config.truncation
        )[0]
    except ValueError as err:
        return type(err).__name__


@pytest.mark.slow
def test_long_pairs_are_cut_before_truncation_without_changing_what_the_model_sees(
    sm_run: SageMakerRun,
) -> None:
    """The tokenizer's pair truncation is quadratic in length; clip_pairs makes it linear."""
    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    words = " ".join(r["casePart1"] + " " + r["casePart2"] for r in read_csv(DATA / "test.csv"))
    sizes = [0, 30, 200, 1000, 5000, 20000]
    cuts = 0
    for length in (33, 64):  # odd and even: the longer text gets the odd token
        for truncation in TRUNCATION_STRATEGIES:
            classifier.config = dataclasses.replace(
                classifier.config, max_seq_length=length, truncation=truncation
            )
            for i, (a, b) in enumerate((a, b) for a in sizes[1:] for b in sizes):
                pair = (words[i * 7 :][:a], words[i * 11 :][:b])
                cut = tuple(text for texts in classifier.clip_pairs([pair[0]], [pair[1]]) for text in texts)
                cuts += cut != pair
                for text in cut:
                    assert (
                        len(text) <= 4 * length or len(classifier.tokenizer(text)["input_ids"]) <= length + 16
                    )
                assert encoded_pair(classifier, cut) == encoded_pair(classifier, pair), (
                    length,
                    truncation,
                    a,
                    b,
                )
    assert cuts > 50, "the cuts happened (and, above, changed nothing the model sees)"


@pytest.mark.slow
def test_a_record_the_truncation_cannot_fit(sm_run: SageMakerRun) -> None:
    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    classifier.config = dataclasses.replace(classifier.config, truncation="only_second")
    short = {"casePart1": "a perl module", "casePart2": "word " * 200}
    assert len(classifier.handle(records_of([short])).results) == 1, (
        "a pair whose second text can be cut is served"
    )
    with pytest.raises(
        RequestError,
        match=(
            r"^inputs\[1\]: cannot be cut to 64 tokens: this model truncates only_second, and the first text "
            r"alone fills the window; shorten it$"
        ),
    ):
        classifier.handle(records_of({"inputs": [short, {"casePart1": "word " * 200}]}))


@pytest.mark.slow
def test_classifier_decisions_follow_thresholds_and_options(sm_run: SageMakerRun) -> None:
    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    rows = [{c: r[c] for c in COLUMNS} for r in read_csv(DATA / "test.csv")[:20]]
    probs = classifier.probabilities(rows)
    # train.py's default model is a hybrid: blended in float64, as train.py blends and decides.
    assert classifier.tfidf is not None
    assert probs.shape == (20, 10) and probs.dtype == torch.float64
    tuned = classifier.thresholds.tolist()
    results = classifier.predict(rows)
    for result, row in zip(results, probs.tolist(), strict=True):
        assert set(result["labels"]) == {n for n, p, t in zip(LABELS, row, tuned, strict=False) if p >= t}, (
            "labels are those at or above their tuned threshold"
        )
        scores = [result["scores"][n] for n in result["labels"]]
        assert scores == sorted(scores, reverse=True), "labels best first"
        assert list(result["scores"]) == LABELS, "scores for every label, in label order"
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in result["scores"].values())
    everything = classifier.predict(rows, Options([0.0] * 10, top_k=3, return_scores=False))
    assert all(len(r["labels"]) == 3 and "scores" not in r for r in everything), (
        "top_k=3, return_scores=False"
    )
    assert all(r["labels"] == [] for r in classifier.predict(rows, Options([1.0] * 10))), (
        "threshold 1: no label"
    )


@pytest.mark.slow
def test_a_threshold_between_two_float32_values_decides_as_train_py_does(sm_run: SageMakerRun) -> None:
    """The endpoint once compared in float32: a threshold just above a probability was rounded
    onto it, and the label fired where train.py's reports (float64) said it did not."""
    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    # The encoder alone, whose probabilities are float32 (the model's TF-IDF half set aside:
    # a hybrid blends in float64, where the case below cannot arise).
    classifier.tfidf = None
    row = {c: read_csv(DATA / "test.csv")[0][c] for c in COLUMNS}
    probs = classifier.probabilities([row]).numpy()
    p = float(probs[0, 0])
    above = float(np.nextafter(p, 1.0))  # the next float64 up; float32 rounds it back onto p
    assert np.float32(above) == probs[0, 0], "the case that float32 thresholds decide wrongly"
    thresholds = classifier.thresholds.copy()
    for threshold, fires in ((above, 0), (p, 1)):
        thresholds[0] = threshold
        assert metrics.decide(probs, thresholds)[0, 0] == fires, "train.py's decision"
        served = classifier.handle(
            records_of({"inputs": row, "parameters": {"threshold": {LABELS[0]: threshold}}})
        )
        assert (LABELS[0] in served.results[0]["labels"]) == bool(fires), f"endpoint at {threshold!r}"
        python_api = classifier.predict([row], Options(thresholds.tolist()))[0]
        assert (LABELS[0] in python_api["labels"]) == bool(fires), f"Classifier.predict at {threshold!r}"


@pytest.mark.slow
def test_batching_does_not_change_scores(sm_run: SageMakerRun) -> None:
    """Chunked, length-sorted batches give each row the score it gets alone."""
    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    classifier.batch_size = 4
    rows = [{c: r[c] for c in COLUMNS} for r in read_csv(DATA / "test.csv")[:10]]
    together = classifier.probabilities(rows)
    alone = torch.cat([classifier.probabilities([row]) for row in rows])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
