"""The request codec: parsing, record checks, parameters, Accept and responses, messages pinned."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest

from multilabel.serving.options import Options, check_options, parse_options
from multilabel.serving.request_codec import (
    DEFAULT_MAX_RECORDS,
    MAX_RECORDS_ENV,
    DeploymentError,
    Request,
    RequestError,
    RequestLogFilter,
    Response,
    check_records,
    encode_response,
    max_records,
    negotiate,
    parse_request,
)
from tests.helpers import ROOT

COLUMNS = ("casePart1", "casePart2")
RECORD = {"casePart1": "a perl module", "casePart2": "it parses things"}


def records_of(body, content_type="application/json", **kw) -> Request:
    return parse_request(body if isinstance(body, (str, bytes)) else json.dumps(body), content_type, **kw)


def error_of(body, content_type="application/json", **kw) -> str:
    with pytest.raises(RequestError) as info:
        request = records_of(body, content_type, **kw)
        check_records(request, COLUMNS)
    return str(info.value)


def test_importing_the_codec_loads_neither_torch_nor_transformers() -> None:
    """Requests can be parsed and answered without the model's libraries (a fresh interpreter)."""
    code = "import sys, multilabel.serving.request_codec; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", f"request_codec imported {result.stdout.strip()}"


def test_every_json_request_shape() -> None:
    single = records_of({"inputs": RECORD})
    assert (single.records, single.single) == ([RECORD], True)
    batch = records_of({"inputs": [RECORD, RECORD], "parameters": {"top_k": 1}})
    assert (len(batch.records), batch.single, batch.parameters) == (2, False, {"top_k": 1})
    assert records_of(RECORD).single is True, "a bare record is answered with one object"
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
            {"inputs": [RECORD, {}]},
            "application/json",
            r"^inputs\[1\]: no text field; the model reads",
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
    assert re.search(message, error_of(body, content_type)), f"the 400 message should match {message!r}"


def test_a_byte_order_mark_is_ignored() -> None:
    """Excel and training's own CSVs may start with one; a JSON body may too."""
    csv_body = "\ufeffcasePart1,casePart2\na,b\n".encode()
    assert check_records(records_of(csv_body, "text/csv"), COLUMNS) == [{"casePart1": "a", "casePart2": "b"}]
    assert records_of(b"\xef\xbb\xbf" + json.dumps(RECORD).encode()).records == [RECORD], "BOM before JSON"


def test_record_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "too many records: 257, at most 256 per request" in error_of([RECORD] * 257)
    monkeypatch.setenv("MULTILABEL_MAX_RECORDS", "2")
    assert "too many records: 3, at most 2 per request (set MULTILABEL_MAX_RECORDS" in error_of([RECORD] * 3)


def test_parameters() -> None:
    names, tuned = ["a", "b", "c"], [0.2, 0.5, 0.7]
    assert parse_options({}, names, tuned) == Options([0.2, 0.5, 0.7])
    assert parse_options({"threshold": 0.4}, names, tuned).thresholds.tolist() == [0.4, 0.4, 0.4]
    assert parse_options({"threshold": {"c": 1}}, names, tuned).thresholds.tolist() == [0.2, 0.5, 1.0]
    assert parse_options({"top_k": 2, "return_scores": False}, names, tuned) == Options(tuned, 2, False)
    checked = parse_options({"threshold": {"a": 0.3}}, names, tuned).thresholds
    assert (checked.dtype, checked.flags.writeable) == (np.float64, False), "the model's own threshold shape"
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
    assert json.loads(encode_response(Response(results[:1], single=True), None)) == results[0], (
        "one bare record in, one object out"
    )
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
    assert text.startswith("request refused (400): unknown field at inputs[2]\n"), (
        "a refusal logs kind and position"
    )
    assert "KeyError: (message withheld)" in text and "PredictionException: (message withheld)" in text, (
        "other failures while serving keep their types, not their messages"
    )
    assert text.count(secret) == 1 and f"ValueError: not a request: {secret}" in text  # start-up errors stay


def test_a_csv_field_longer_than_the_csv_modules_default_cap_is_accepted() -> None:
    """Training reads fields of any length; the endpoint must not refuse what training took."""
    request = parse_request("casePart1\n" + "x" * 140_000 + "\n", "text/csv")
    assert [len(r["casePart1"]) for r in request.records] == [140_000]


def test_the_record_limit_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """MULTILABEL_MAX_RECORDS: 256 when unset or empty; anything but a positive integer is a deployment error."""
    monkeypatch.delenv(MAX_RECORDS_ENV, raising=False)
    assert max_records() == DEFAULT_MAX_RECORDS == 256
    monkeypatch.setenv(MAX_RECORDS_ENV, " ")
    assert max_records() == 256, "an empty setting means the default"
    monkeypatch.setenv(MAX_RECORDS_ENV, "12")
    assert max_records() == 12
    for bad in ("0", "-3", "1.5", "abc"):
        monkeypatch.setenv(MAX_RECORDS_ENV, bad)
        with pytest.raises(
            DeploymentError, match=rf"^MULTILABEL_MAX_RECORDS='{re.escape(bad)}': expected a positive"
        ):
            max_records()


def test_jsonlines_lines_end_at_newlines_only() -> None:
    """U+2028, U+2029 and U+0085 may stand raw inside a JSON string (JSON.stringify writes them):
    they were once taken for line ends, and the record refused as "Unterminated string"."""
    texts = ["one\u2028two", "three\u2029four", "five\u0085six"]
    body = "\r\n".join(json.dumps({"casePart1": t}, ensure_ascii=False) for t in texts) + "\r\n"
    request = records_of(body.encode(), "application/jsonlines")
    assert [r["casePart1"] for r in check_records(request, COLUMNS)] == texts
    assert request.locations == ["line 1", "line 2", "line 3"]


def test_parameters_that_are_no_object_and_numbers_too_long_are_refused_naming_them() -> None:
    for parameters in ([], 0, "", False):
        with pytest.raises(RequestError, match=r"^'parameters' must be an object"):
            records_of({"inputs": RECORD, "parameters": parameters})
    assert records_of({"inputs": RECORD, "parameters": None}).parameters == {}
    names, tuned = ["a", "b"], [0.5, 0.5]
    for digits in (400, 5000):
        body = '{"inputs": {"casePart1": "x"}, "parameters": {"threshold": 1' + "0" * digits + "}}"
        request = records_of(body.encode())
        with pytest.raises(RequestError, match=r"^parameter 'threshold' must be in \[0, 1\], found "):
            parse_options(request.parameters, names, tuned)


def test_the_python_api_checks_options_by_the_endpoints_rules() -> None:
    """Options once went unchecked: one threshold broadcast to every label, top_k=-1 dropped the
    last label, a wrong count of thresholds gave a torch traceback, return_scores="no" returned scores."""
    names, tuned = ["a", "b", "c"], [0.2, 0.5, 0.7]
    assert check_options(None, names, tuned) == Options([0.2, 0.5, 0.7])
    assert check_options(Options([0.1, 0.2, 0.3], top_k=2), names, tuned) == Options([0.1, 0.2, 0.3], 2)
    assert check_options({"threshold": 0.4}, names, tuned).thresholds.tolist() == [0.4, 0.4, 0.4]
    for options, message in [
        (
            Options([0.3]),
            r"^Options.thresholds: expected 3 thresholds, one per label in the order \['a', 'b', 'c'\], found 1",
        ),
        (Options([0.3] * 11), r"expected 3 thresholds, .* found 11"),
        (Options(0.3), r"expected 3 thresholds, .* found float"),
        (Options(tuned, top_k=-1), r"parameter 'top_k' must be a positive integer, found -1"),
        (Options(tuned, return_scores="no"), r"parameter 'return_scores' must be true or false, found 'no'"),
        (Options([0.1, 2.0, 0.3]), r"parameter 'threshold.b' must be in \[0, 1\], found 2.0"),
        ({"top_k": 0}, r"parameter 'top_k' must be a positive integer, found 0"),
    ]:
        with pytest.raises(RequestError, match=message):
            check_options(options, names, tuned)


def test_a_missing_text_field_is_empty_and_the_id_field_is_carried() -> None:
    request = records_of(
        {"inputs": [{"casePart2": "only the second"}, {"casePart1": None, "casePart2": "x"}]}
    )
    assert check_records(request, COLUMNS) == [
        {"casePart1": "", "casePart2": "only the second"},
        {"casePart1": "", "casePart2": "x"},
    ]
    request = records_of(
        {"inputs": [{"ticket_id": "T-1", "casePart1": "a"}, {"ticket_id": 7, "casePart2": "b"}]}
    )
    with pytest.raises(RequestError, match=r"unknown field\(s\) \['ticket_id'\]"):
        check_records(request, COLUMNS)
    assert check_records(request, COLUMNS, "ticket_id") == [
        {"casePart1": "a", "casePart2": "", "ticket_id": "T-1"},
        {"casePart1": "", "casePart2": "b", "ticket_id": 7},
    ]
    with pytest.raises(
        RequestError, match=r"^inputs\[0\]: the id field 'ticket_id' must be a string or a number"
    ):
        check_records(records_of({"inputs": [{"ticket_id": [1], "casePart1": "a"}]}), COLUMNS, "ticket_id")
