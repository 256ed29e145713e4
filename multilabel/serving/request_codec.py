"""The endpoint's request codec: decode a request into records, check them, encode the answer
(its `parameters` are checked in `multilabel.serving.options`).

Standard library only (no torch, no transformers), as the inference toolkit keeps its
decoder and encoder apart from the model: requests can be parsed, checked and answered
without loading one, and `multilabel.serving.classifier` holds the model.

Content types in: JSON (one record, a list, or either under "inputs" with
"parameters"), JSON Lines and CSV with a header row. Out: JSON or JSON Lines, chosen
from the `Accept` header as HTTP does.

Two kinds of failure, kept apart:

- A bad request raises `RequestError`. The inference toolkit turns any exception into
  HTTP 400 with `str(exception)` as the message, so that text says exactly which
  record, field or parameter was wrong, and may quote what the client sent.
- A broken endpoint setting (a `MULTILABEL_*` setting that is not a positive integer)
  raises `DeploymentError`; `Classifier.load` checks every setting at start-up, so the
  model is never served with one, and it never becomes a 400 on every request.

Request content stays out of the logs. The toolkit re-raises every hook exception as
`mms.service.PredictionException(str(e))` inside its `except` block, and Multi Model
Server logs that with `logger.error("Prediction error", exc_info=True)`: the traceback
would carry the client message twice (in the PredictionException and, as its
`__context__`, in our exception), field names and CSV cells included. `model_fn`
therefore installs `RequestLogFilter` (see `keep_request_content_out_of_logs`), which
rewrites any log record whose exception chain holds a `RequestError` into
"request refused: <kind> at <position>" (both written by the endpoint's code, never by
the client), and strips the messages from any other exception raised while serving a
request, keeping its type and stack. The filter lives here, beside `RequestError`,
because it is what makes that error's contract hold (only `kind` and `where` reach the
log), and because it needs nothing but the standard library. Our own log lines hold
counts only.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
CONTENT_TYPES = (JSON, JSONLINES, CSV)
ACCEPT_TYPES = (JSON, JSONLINES)  # in order of preference when the client ranks them equally
CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's largest, as training sets it
MAX_RECORDS_ENV = "MULTILABEL_MAX_RECORDS"
DEFAULT_MAX_RECORDS = 256
# Tokens per request after truncation; read by the classifier (its default follows the
# model's size), and named here so that what sets it (launch, the transform job) needs no torch.
MAX_TOKENS_ENV = "MULTILABEL_MAX_TOKENS"
PARAMETERS = ("threshold", "top_k", "return_scores")
BOM = "\ufeff"


class RequestError(ValueError):
    """A request the endpoint cannot serve; its text is the HTTP 400 message.

    `kind` (what went wrong) and `where` (which record, line or header) are written by
    this module or the classifier and hold no request content: they are all that
    reaches the log.
    """

    def __init__(self, message: str, kind: str, where: str = "request"):
        super().__init__(message)
        self.kind = kind
        self.where = where


class DeploymentError(RuntimeError):
    """A model directory or endpoint setting that cannot be served; raised at start-up."""


@dataclass
class Request:
    """A decoded request: raw records with where each came from, and the parameters."""

    records: list[Any]
    locations: list[str]
    parameters: dict[str, Any] = field(default_factory=dict)
    single: bool = False  # one bare record in, one object out
    header: list[str] | None = None  # a CSV body's header row


@dataclass
class Response:
    """Results in request order, and whether the request was one bare record."""

    results: list[dict]
    single: bool


def _media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";")[0].strip().lower()


def env_int(name: str, default: int | None) -> int | None:
    """A positive integer setting from the environment; `default` when unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdecimal() or int(value) < 1:
        hint = f" (default {default})" if default is not None else " (unset: chosen from the model's size)"
        raise DeploymentError(
            f"{name}={value!r}: expected a positive integer{hint}; fix or unset it in the endpoint's environment"
        )
    return int(value)


def max_records() -> int:
    """Records allowed in one request (`MULTILABEL_MAX_RECORDS`, default 256)."""
    return env_int(MAX_RECORDS_ENV, DEFAULT_MAX_RECORDS)


def negotiate(accept: str | None) -> str:
    """The response type for an `Accept` header, chosen as HTTP does (RFC 9110, 12.5.1).

    Each supported type takes the q-value of the most specific range that matches it
    (`application/json` over `application/*` over `*/*`); the highest q above 0 wins,
    JSON on a tie. Other parameters (charset) are ignored: the JSON written is ASCII.
    """
    if not accept or not accept.strip():
        return JSON
    ranges = []
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() != "q":
                continue
            try:
                quality = float(value)
            except ValueError:
                quality = math.nan
            if not 0.0 <= quality <= 1.0:
                raise RequestError(
                    f"Accept header: q-value {value.strip()!r} is not a number in [0, 1]",
                    "bad q-value",
                    "Accept header",
                )
        if media:
            ranges.append((media.lower(), quality))
    best, best_quality = None, 0.0
    for supported in ACCEPT_TYPES:
        patterns = (supported, supported.split("/")[0] + "/*", "*/*")  # most specific first
        matches = [q for pattern in patterns for media, q in ranges if media == pattern]
        if matches and matches[0] > best_quality:
            best, best_quality = supported, matches[0]
    if best is None:
        raise RequestError(
            f"unsupported accept type {accept!r}; use one of {list(ACCEPT_TYPES)}",
            "unsupported Accept",
            "Accept header",
        )
    return best


def _text(body: str | bytes) -> str:
    """The body as text, without a UTF-8 byte order mark (training's CSVs may have one)."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as err:
            raise RequestError(
                f"body is not valid UTF-8: {err}", "invalid UTF-8", f"byte {err.start}"
            ) from None
    return body.removeprefix(BOM)


def _parse_json(body: str) -> Request:
    """One record, a list of records, or either under "inputs" with "parameters"."""
    try:
        payload = _loads(body)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise RequestError(f"body is not valid JSON: {err}", "invalid JSON", where) from None
    parameters: Any = {}
    if isinstance(payload, dict) and "inputs" in payload:
        unknown = sorted(set(payload) - {"inputs", "parameters"})
        if unknown:
            raise RequestError(
                f"unknown top-level key(s) {unknown}; expected 'inputs' and optionally 'parameters'",
                "unknown top-level key",
                "body",
            )
        parameters = payload.get("parameters")
        parameters = {} if parameters is None else parameters
        payload = payload["inputs"]
        prefix = "inputs"
    else:
        prefix = "body"
    if not isinstance(parameters, dict):
        raise RequestError(
            f"'parameters' must be an object, found {type(parameters).__name__}",
            "parameters not an object",
            "parameters",
        )
    if isinstance(payload, dict):
        return Request([payload], [prefix], parameters, single=True)
    if isinstance(payload, list):
        return Request(payload, [f"{prefix}[{i}]" for i in range(len(payload))], parameters)
    raise RequestError(
        f"{prefix} must be a record (an object) or a list of records, found {type(payload).__name__}",
        "no records",
        prefix,
    )


def _loads(text: str) -> Any:
    """`json.loads`, with integers too long for Python (over 4,300 digits) read as infinity,
    so that the parameter check names the parameter instead of the parser failing."""
    return json.loads(text, parse_int=lambda digits: int(digits) if len(digits) <= 4300 else math.inf)


def _parse_jsonlines(body: str) -> Request:
    """One record a line (bare, or {"inputs": record}); blank lines are skipped.

    Lines end at "\n" only (JSON Lines' separator, "\r\n" included): `str.splitlines`
    would also cut at U+2028, U+2029 or U+0085, which JSON allows raw inside a string.
    """
    records, locations = [], []
    for number, line in enumerate(body.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = _loads(line)
        except json.JSONDecodeError as err:
            raise RequestError(
                f"line {number} is not valid JSON: {err}", "invalid JSON", f"line {number}"
            ) from None
        if isinstance(record, dict) and set(record) == {"inputs"}:
            record = record["inputs"]
        records.append(record)
        locations.append(f"line {number}")
    return Request(records, locations)


def _parse_csv(body: str) -> Request:
    """A header row, then one record a row; `check_records` checks the header's names.

    Strict quoting: a malformed row is refused rather than guessed at. Fields may be as
    long as training accepts (the csv module's default 128 KiB cap is not a data rule;
    the token budget bounds the work).
    """
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(body), strict=True)
    records, locations = [], []
    try:
        header = next(reader, None)
        if not header:
            raise RequestError(
                "CSV body is empty; expected a header row naming the text columns", "empty CSV", "CSV header"
            )
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise RequestError(
                f"CSV header: column(s) {repeated} appear more than once; name each column once",
                "repeated CSV column",
                "CSV header",
            )
        for number, row in enumerate(reader, start=1):
            if not row:
                continue
            if len(row) != len(header):
                raise RequestError(
                    f"CSV row {number} has {len(row)} fields, the header has {len(header)}",
                    "CSV field count",
                    f"CSV row {number}",
                )
            records.append(dict(zip(header, row, strict=True)))
            locations.append(f"CSV row {number}")
    except csv.Error as err:
        where = f"CSV line {reader.line_num}"
        raise RequestError(f"{where}: not valid CSV ({err})", "invalid CSV", where) from None
    return Request(records, locations, header=header)


def parse_request(body: str | bytes, content_type: str | None, limit: int | None = None) -> Request:
    """Decode a request body into records; checks its shape and size, not its fields."""
    media = _media_type(content_type)
    parsers = {JSON: _parse_json, JSONLINES: _parse_jsonlines, CSV: _parse_csv}
    if media not in parsers:
        raise RequestError(
            f"unsupported content type {content_type!r}; use one of {list(CONTENT_TYPES)}",
            "unsupported Content-Type",
            "Content-Type header",
        )
    request = parsers[media](_text(body))
    limit = max_records() if limit is None else limit
    if not request.records:
        raise RequestError("the request holds no records", "no records")
    if len(request.records) > limit:
        raise RequestError(
            f"too many records: {len(request.records)}, at most {limit} per request "
            f"(set {MAX_RECORDS_ENV} on the endpoint to change it)",
            "too many records",
        )
    logger.debug("request: %d records, %d characters", len(request.records), len(body))
    return request


def _check_header(header: Sequence[str], text_columns: Sequence[str]) -> None:
    """A CSV header must name a text column; if it names none, it is probably data."""
    if not set(header) & set(text_columns):
        raise RequestError(
            f"CSV header (the first row) names none of the text columns {list(text_columns)}: "
            f"the header row seems missing; make the first row {','.join(text_columns)}",
            "CSV header missing",
            "CSV header",
        )


def check_records(
    request: Request, text_columns: Sequence[str], id_column: str | None = None
) -> list[dict[str, Any]]:
    """Each record as {text column: string}; a missing or null text field is empty, as in
    training's CSVs, but a record must name at least one of them. With the model's
    `id_column`, a record may also carry an id (a string or a number), kept as it is."""
    if request.header is not None:
        _check_header(request.header, text_columns)
    records = []
    for record, where in zip(request.records, request.locations, strict=True):
        if not isinstance(record, dict):
            raise RequestError(
                f"{where}: a record must be an object with {list(text_columns)}, found {type(record).__name__}",
                "record not an object",
                where,
            )
        unknown = sorted(set(record) - {*text_columns, id_column})
        if unknown:
            ids = f" and the id field {id_column!r}" if id_column else ""
            raise RequestError(
                f"{where}: unknown field(s) {unknown}; the model reads {list(text_columns)}{ids}",
                "unknown field",
                where,
            )
        if not set(record) & set(text_columns):
            raise RequestError(
                f"{where}: no text field; the model reads {list(text_columns)} (a missing one is empty)",
                "missing field",
                where,
            )
        clean = {}
        for name in text_columns:
            value = record.get(name, "")
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise RequestError(
                    f"{where}: field '{name}' must be a string, found {type(value).__name__}",
                    "field not a string",
                    where,
                )
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:  # JSON's "\ud800": the tokenizer cannot take it
                raise RequestError(
                    f"{where}: field '{name}' is not valid Unicode: lone surrogate "
                    f"{value[err.start]!r} at character {err.start}; send well-formed text",
                    "lone surrogate",
                    where,
                ) from None
            clean[name] = value
        if id_column in record:
            value = record[id_column]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise RequestError(
                    f"{where}: the id field {id_column!r} must be a string or a number, found {type(value).__name__}",
                    "bad id",
                    where,
                )
            clean[id_column] = value
        records.append(clean)
    return records


def encode_response(response: Response, accept: str | None) -> str:
    """JSON (an object for a single record, else a list) or JSON Lines (one result a line)."""
    if negotiate(accept) == JSONLINES:
        return "".join(json.dumps(result) + "\n" for result in response.results)
    return json.dumps(response.results[0] if response.single else response.results)


def _exception_chain(error: BaseException) -> list[BaseException]:
    """`error` and every exception it was raised from or while handling, outermost first."""
    chain: list[BaseException] = []
    while error is not None and all(error is not seen for seen in chain):
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


class RequestLogFilter(logging.Filter):
    """Rewrites log records about failed requests so that no request content reaches the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record; replace a failed request's exception by its kind and position."""
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return True
        chain = _exception_chain(error)
        refused = next((e for e in chain if isinstance(e, RequestError)), None)
        if refused is not None:
            record.msg, record.args = "request refused (400): %s at %s", (refused.kind, refused.where)
            record.exc_info = record.exc_text = None
        elif any(type(e).__name__ == "PredictionException" for e in chain):
            # An unexpected failure while serving a request: its message may quote the
            # request, so keep the types and the stack (our code, not the client's text).
            lines = []
            for link in reversed(chain):
                lines += traceback.format_tb(link.__traceback__)
                lines.append(f"{type(link).__module__}.{type(link).__qualname__}: (message withheld)\n")
            record.exc_info, record.exc_text = None, "".join(lines).rstrip("\n")
        return True


def keep_request_content_out_of_logs() -> None:
    """Install `RequestLogFilter` where Multi Model Server logs failed requests (idempotent).

    On the `mms.service` logger, which logs every failed request with its traceback,
    and on the root logger's handlers (the worker's stdout), which every propagating
    logger reaches.
    """
    for target in (logging.getLogger("mms.service"), *logging.getLogger().handlers):
        if not any(isinstance(f, RequestLogFilter) for f in target.filters):
            target.addFilter(RequestLogFilter())
