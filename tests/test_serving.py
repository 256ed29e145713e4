"""Request parsing, parameters and responses of the endpoint, with their messages pinned."""

from __future__ import annotations

import json
import re

import pytest
import torch

from multilabel.serving import (
    Classifier,
    Options,
    Request,
    RequestError,
    Response,
    check_records,
    encode_response,
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
    ],
)
def test_bad_requests_say_what_is_wrong(body, content_type, message) -> None:
    assert re.search(message, error_of(body, content_type))


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
