"""Request parsing, parameters and responses of the endpoint, with their messages pinned."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch

from multilabel.artifact import ClassifierConfig
from multilabel.pair_encoding import TRUNCATION_STRATEGIES
from multilabel.serving import (
    Classifier,
    DeploymentError,
    Options,
    Request,
    RequestError,
    RequestLogFilter,
    Response,
    check_records,
    default_max_tokens,
    encode_response,
    negotiate,
    parse_options,
    parse_request,
)
from tests.conftest import SageMakerRun
from tests.helpers import DATA, LABELS, read_csv

COLUMNS = ("casePart1", "casePart2")
RECORD = {"casePart1": "a perl module", "casePart2": "it parses things"}


def records_of(body, content_type="application/json", **kw) -> Request:
    return parse_request(body if isinstance(body, (str, bytes)) else json.dumps(body), content_type, **kw)


def error_of(body, content_type="application/json", **kw) -> str:
    with pytest.raises(RequestError) as info:
        request = records_of(body, content_type, **kw)
        check_records(request, COLUMNS)
    return str(info.value)


def test_every_json_request_shape() -> None:
    single = records_of({"inputs": RECORD})
    assert (single.records, single.single) == ([RECORD], True)
    batch = records_of({"inputs": [RECORD, RECORD], "parameters": {"top_k": 1}})
    assert (len(batch.records), batch.single, batch.parameters) == (2, False, {"top_k": 1})
    assert records_of(RECORD).single is True
    assert len(records_of([RECORD, RECORD, RECORD]).records) == 3
    assert records_of(json.dumps({"inputs": RECORD}).encode(), "application/json; charset=utf-8").single


def test_jsonlines_and_csv() -> None:
    body = json.dumps(RECORD) + "\n\n" + json.dumps({"inputs": {"casePart1": "x"}}) + "\n"
    request = records_of(body.encode(), "application/jsonlines")
    assert check_records(request, COLUMNS) == [RECORD, {"casePart1": "x", "casePart2": ""}]
    csv_body = 'casePart1,casePart2\n"one, with comma","two\nlines"\nthree,\n'
    request = records_of(csv_body, "text/csv")
    assert check_records(request, COLUMNS) == [
        {"casePart1": "one, with comma", "casePart2": "two\nlines"},
        {"casePart1": "three", "casePart2": ""},
    ]
    assert check_records(records_of("casePart1\nonly first\n", "text/csv"), COLUMNS) == [
        {"casePart1": "only first", "casePart2": ""}
    ]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("{not json", "application/json", r"^body is not valid JSON: Expecting property name"),
        (
            {"inputs": RECORD, "parameter": {}},
            "application/json",
            r"^unknown top-level key\(s\) \['parameter'\]",
        ),
        (
            {"inputs": "text"},
            "application/json",
            r"^inputs must be a record \(an object\) or a list of records, found str",
        ),
        ({"inputs": [RECORD, "text"]}, "application/json", r"^inputs\[1\]: a record must be an object"),
        (
            {"inputs": [RECORD, {"casePart2": "x"}]},
            "application/json",
            r"^inputs\[1\]: missing field 'casePart1'$",
        ),
        (
            {"inputs": {"casePart1": 3}},
            "application/json",
            r"^inputs: field 'casePart1' must be a string, found int$",
        ),
        (
            [RECORD, {"casePart1": "a", "casePart2": ["b"]}],
            "application/json",
            r"^body\[1\]: field 'casePart2' must be a string, found list$",
        ),
        (
            {"inputs": {"casePart1": "a", "casepart2": "b"}},
            "application/json",
            r"^inputs: unknown field\(s\) \['casepart2'\]; the model reads",
        ),
        ({"inputs": []}, "application/json", r"^the request holds no records$"),
        (
            {"inputs": RECORD, "parameters": [1]},
            "application/json",
            r"^'parameters' must be an object, found list$",
        ),
        ('{"casePart1": "a"}\n{oops\n', "application/jsonlines", r"^line 2 is not valid JSON"),
        ("", "text/csv", r"^CSV body is empty"),
        ("casePart1,casePart2\na,b,c\n", "text/csv", r"^CSV row 1 has 3 fields, the header has 2$"),
        ("text,casePart2\na,b\n", "text/csv", r"^CSV row 1: unknown field\(s\) \['text'\]"),
        (b"\xff\xfe", "application/jsonlines", r"^body is not valid UTF-8"),
        ("x", "text/plain", r"^unsupported content type 'text/plain'; use one of \['application/json'"),
        (
            "casePart1,casePart2,casePart1\na,b,c\n",
            "text/csv",
            r"^CSV header: column\(s\) \['casePart1'\] appear more than once; name each column once$",
        ),
        (
            "a perl module,it parses\nanother,row\n",
            "text/csv",
            r"^CSV header \(the first row\) names none of the text columns \['casePart1', 'casePart2'\]: "
            r"the header row seems missing; make the first row casePart1,casePart2$",
        ),
        (
            'casePart1\n"quoted"then more"\n',
            "text/csv",
            r"^CSV line 2: not valid CSV \(',' expected after '\"'\)$",
        ),
        (
            '{"inputs": [{"casePart1": "ok"}, {"casePart1": "bad \\ud800 text"}]}',
            "application/json",
            r"^inputs\[1\]: field 'casePart1' is not valid Unicode: lone surrogate '\\ud800' at character 4; "
            r"send well-formed text$",
        ),
        (
            '{"casePart1": "a", "casePart2": "\\udfff"}\n',
            "application/jsonlines",
            r"^line 1: field 'casePart2' is not valid Unicode: lone surrogate",
        ),
    ],
)
def test_bad_requests_say_what_is_wrong(body, content_type, message) -> None:
    assert re.search(message, error_of(body, content_type))


def test_a_byte_order_mark_is_ignored() -> None:
    """Excel and training's own CSVs may start with one; a JSON body may too."""
    csv_body = "\ufeffcasePart1,casePart2\na,b\n".encode()
    assert check_records(records_of(csv_body, "text/csv"), COLUMNS) == [{"casePart1": "a", "casePart2": "b"}]
    assert records_of(b"\xef\xbb\xbf" + json.dumps(RECORD).encode()).records == [RECORD]


def test_record_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "too many records: 257, at most 256 per request" in error_of([RECORD] * 257)
    monkeypatch.setenv("MULTILABEL_MAX_RECORDS", "2")
    assert "too many records: 3, at most 2 per request (set MULTILABEL_MAX_RECORDS" in error_of([RECORD] * 3)


def test_parameters() -> None:
    names, tuned = ["a", "b", "c"], [0.2, 0.5, 0.7]
    assert parse_options({}, names, tuned) == Options([0.2, 0.5, 0.7])
    assert parse_options({"threshold": 0.4}, names, tuned).thresholds == [0.4, 0.4, 0.4]
    assert parse_options({"threshold": {"c": 1}}, names, tuned).thresholds == [0.2, 0.5, 1.0]
    assert parse_options({"top_k": 2, "return_scores": False}, names, tuned) == Options(tuned, 2, False)
    for parameters, message in [
        (
            {"treshold": 0.5},
            r"unknown parameter\(s\) \['treshold'\]; supported: \['threshold', 'top_k', 'return_scores'\]",
        ),
        ({"threshold": 1.5}, r"parameter 'threshold' must be in \[0, 1\], found 1.5"),
        ({"threshold": "0.5"}, r"parameter 'threshold' must be a number in \[0, 1\], found '0.5'"),
        ({"threshold": {"d": 0.5}}, r"parameter 'threshold': unknown label 'd'"),
        ({"threshold": {"a": -0.1}}, r"parameter 'threshold.a' must be in \[0, 1\], found -0.1"),
        ({"top_k": 0}, r"parameter 'top_k' must be a positive integer, found 0"),
        ({"top_k": True}, r"parameter 'top_k' must be a positive integer, found True"),
        ({"return_scores": "no"}, r"parameter 'return_scores' must be true or false, found 'no'"),
    ]:
        with pytest.raises(RequestError, match=message):
            parse_options(parameters, names, tuned)


def test_responses() -> None:
    results = [{"labels": ["a"], "scores": {"a": 0.9}}, {"labels": [], "scores": {"a": 0.1}}]
    assert json.loads(encode_response(Response(results[:1], single=True), None)) == results[0]
    assert json.loads(encode_response(Response(results, single=False), "*/*")) == results
    lines = encode_response(Response(results, single=False), "application/jsonlines").splitlines()
    assert [json.loads(line) for line in lines] == results
    with pytest.raises(RequestError, match=r"unsupported accept type 'text/html'"):
        encode_response(Response(results, single=False), "text/html")


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("*/*;q=0.8", "application/json"),
        ("application/json, text/plain", "application/json"),
        ("text/plain, application/*", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        ("Application/JSONLines", "application/jsonlines"),
        ("application/jsonlines;q=0.9, application/json", "application/json"),
        ("text/html, application/jsonlines;q=0.1", "application/jsonlines"),
        ("application/json;q=0, */*", "application/jsonlines"),
        ("application/json;q=0.5, application/jsonlines;q=0.5", "application/json"),
    ],
)
def test_accept_is_negotiated_as_http_does(accept: str | None, chosen: str) -> None:
    assert negotiate(accept) == chosen


@pytest.mark.parametrize(
    ("accept", "message"),
    [
        (
            "text/html",
            r"^unsupported accept type 'text/html'; use one of \['application/json', 'application/jsonlines'\]$",
        ),
        ("application/json;q=0", r"^unsupported accept type 'application/json;q=0'"),
        ("application/*;q=0, text/*", r"^unsupported accept type"),
        ("application/json;q=high", r"^Accept header: q-value 'high' is not a number in \[0, 1\]$"),
        ("application/json;q=1.5", r"^Accept header: q-value '1.5' is not a number in \[0, 1\]$"),
    ],
)
def test_unacceptable_accept_headers(accept: str, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        negotiate(accept)


def test_classifier_config_problems() -> None:
    labels = ["a", "b"]
    good = ClassifierConfig(("t1", "t2"), {"a": 0.5, "b": 1}, 64)
    assert good.problems(labels) == []
    assert ClassifierConfig.TRUNCATIONS == TRUNCATION_STRATEGIES
    bad = ClassifierConfig(("t1", ""), {"a": 1.5, "c": 0.5}, 0, "only_third")
    assert bad.problems(labels) == [
        "classifier_config.json: text_columns: expected 1 or 2 distinct non-empty names, found ('t1', '')",
        "classifier_config.json: max_seq_length: expected a positive integer, found 0",
        "classifier_config.json: truncation: expected one of ['longest_first', 'only_first', 'only_second'], "
        "found 'only_third'",
        "classifier_config.json: thresholds: no threshold for label(s) ['b'] of config.json's id2label",
        "classifier_config.json: thresholds: label(s) ['c'] are not in config.json's id2label ['a', 'b']",
        "classifier_config.json: thresholds: expected numbers in [0, 1], found {'a': 1.5}",
    ]
    for columns in [("t1", "t1"), ("a", "b", "c"), (), "t1"]:
        assert "text_columns" in dataclasses.replace(good, text_columns=columns).problems(labels)[0]
    for length in [True, 2.5, -1]:
        assert "max_seq_length" in dataclasses.replace(good, max_seq_length=length).problems(labels)[0]
    for value in [float("nan"), "0.5", None, False]:
        assert (
            "expected numbers in [0, 1]"
            in good.__class__(("t1",), {"a": value, "b": 0}, 8).problems(labels)[0]
        )


@pytest.fixture
def model_dir(sm_run: SageMakerRun, tmp_path: Path) -> Path:
    """A copy of the session's trained model directory, free to break."""
    return Path(shutil.copytree(sm_run.model_dir, tmp_path / "model"))


def edit_config(model_dir: Path, **changes) -> None:
    path = model_dir / "classifier_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


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
            r"MULTILABEL_MAX_TOKENS=10: less than max_seq_length 64, so one long record could never be served",
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


def test_max_seq_length_beyond_the_tokenizer_fails_at_load(model_dir: Path) -> None:
    edit_config(model_dir, max_seq_length=100000)
    with pytest.raises(
        DeploymentError, match=r"max_seq_length 100000 is more than the tokenizer's model_max_length 128"
    ):
        Classifier.load(model_dir, device="cpu")


def test_default_token_budget_follows_the_model_size(sm_run: SageMakerRun) -> None:
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
    tiny = Classifier.load(sm_run.model_dir, device="cpu")
    assert tiny.max_tokens == default_max_tokens(tiny.model, "cpu", 64) > 10**6


def test_token_budget(sm_run: SageMakerRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTILABEL_MAX_TOKENS", "100")
    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    assert classifier.max_tokens == 100
    long = {"casePart1": "word " * 200, "casePart2": "other " * 200}
    assert len(classifier.predict([long])) == 1  # 64 tokens after truncation
    with pytest.raises(RequestError) as info:
        classifier.handle(records_of([long, long]))
    assert str(info.value) == (
        "request too large: 128 tokens after truncation to 64 per record, at most 100 per request "
        "(MULTILABEL_MAX_TOKENS); split it into requests of about 1 records like these"
    )
    assert (info.value.kind, info.value.where) == ("token budget exceeded", "request")


def encoded_pair(classifier: Classifier, pair: tuple[str, str]) -> dict | str:
    """What the model sees of one pair, or the kind of error when the truncation cannot fit it."""
    from multilabel.pair_encoding import encode_pairs

    config = classifier.config
    try:
        return encode_pairs(
            classifier.tokenizer, [pair[0]], [pair[1]], config.max_seq_length, config.truncation
        )[0]
    except ValueError as err:
        return type(err).__name__


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
    assert cuts > 50  # the cuts happened, and changed nothing the model sees


def test_a_record_the_truncation_cannot_fit(sm_run: SageMakerRun) -> None:
    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    classifier.config = dataclasses.replace(classifier.config, truncation="only_second")
    short = {"casePart1": "a perl module", "casePart2": "word " * 200}
    assert len(classifier.handle(records_of([short])).results) == 1
    with pytest.raises(
        RequestError,
        match=(
            r"^inputs\[1\]: cannot be cut to 64 tokens: this model truncates only_second, and the first text "
            r"alone fills the window; shorten it$"
        ),
    ):
        classifier.handle(records_of({"inputs": [short, {"casePart1": "word " * 200}]}))


def test_request_errors_reach_the_log_as_kind_and_position_only() -> None:
    """The toolkit re-raises as PredictionException; MMS logs that with its traceback."""
    from mms.service import PredictionException

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestLogFilter())
    log = logging.getLogger("test-request-log")
    log.addHandler(handler)
    log.propagate = False
    secret = "marker-7f3a"
    try:
        for raised in (
            RequestError(f"unknown field(s) ['{secret}']", "unknown field", "inputs[2]"),
            KeyError(secret),
        ):
            try:
                try:
                    raise raised
                except Exception as err:
                    raise PredictionException(str(err), 400)  # noqa: B904 - as the toolkit does
            except PredictionException:
                log.error("Prediction error", exc_info=True)
        try:
            raise ValueError(f"not a request: {secret}")
        except ValueError:
            log.error("Backend worker process died.", exc_info=True)
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert text.startswith("request refused (400): unknown field at inputs[2]\n")
    assert "KeyError: (message withheld)" in text and "PredictionException: (message withheld)" in text
    assert text.count(secret) == 1 and f"ValueError: not a request: {secret}" in text  # start-up errors stay


def test_classifier_decisions_follow_thresholds_and_options(sm_run: SageMakerRun) -> None:
    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    rows = [{c: r[c] for c in COLUMNS} for r in read_csv(DATA / "test.csv")[:20]]
    probs = classifier.probabilities(rows)
    assert probs.shape == (20, 10) and probs.dtype == torch.float32
    tuned = torch.tensor(classifier.config.threshold_list(LABELS))
    results = classifier.predict(rows)
    for result, row in zip(results, probs, strict=False):
        assert set(result["labels"]) == {n for n, p, t in zip(LABELS, row, tuned, strict=False) if p >= t}
        scores = [result["scores"][n] for n in result["labels"]]
        assert scores == sorted(scores, reverse=True)  # best first
        assert list(result["scores"]) == LABELS
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in result["scores"].values())
    everything = classifier.predict(rows, Options([0.0] * 10, top_k=3, return_scores=False))
    assert all(len(r["labels"]) == 3 and "scores" not in r for r in everything)
    assert all(r["labels"] == [] for r in classifier.predict(rows, Options([1.0] * 10)))


def test_batching_does_not_change_scores(sm_run: SageMakerRun) -> None:
    """Chunked, length-sorted batches give each row the score it gets alone."""
    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    classifier.batch_size = 4
    rows = [{c: r[c] for c in COLUMNS} for r in read_csv(DATA / "test.csv")[:10]]
    together = classifier.probabilities(rows)
    alone = torch.cat([classifier.probabilities([row]) for row in rows])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_a_csv_field_longer_than_the_csv_modules_default_cap_is_accepted() -> None:
    """Training reads fields of any length; the endpoint must not refuse what training took."""
    request = parse_request("casePart1\n" + "x" * 140_000 + "\n", "text/csv")
    assert [len(r["casePart1"]) for r in request.records] == [140_000]
