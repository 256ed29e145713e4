"""Endpoint logic: parse a request, predict label sets, encode the response.

Imports only torch, transformers and this package's light modules, so it runs in the
Hugging Face inference container (transformers 4.51.3) and starts fast. Decisions use
the per-label thresholds that training tuned and saved in the model directory.

Two kinds of failure, kept apart:

- A broken deployment (a bad `classifier_config.json`, a `MULTILABEL_*` setting that is
  not a positive integer) raises `DeploymentError` from `Classifier.load`, that is at
  start-up in `model_fn`: the model is never served, and the error, listing every
  problem, is in the start-up log. It never becomes a 400 on every request.
- A bad request raises `RequestError`. The inference toolkit turns any exception into
  HTTP 400 with `str(exception)` as the message, so that text says exactly which
  record, field or parameter was wrong, and may quote what the client sent.

Request content stays out of the logs. The toolkit re-raises every hook exception as
`mms.service.PredictionException(str(e))` inside its `except` block, and Multi Model
Server logs that with `logger.error("Prediction error", exc_info=True)`: the traceback
would carry the client message twice (in the PredictionException and, as its
`__context__`, in our exception), field names and CSV cells included. `model_fn`
therefore installs `RequestLogFilter` (see `keep_request_content_out_of_logs`), which
rewrites any log record whose exception chain holds a `RequestError` into
"request refused: <kind> at <position>" (both written by this module, never by the
client), and strips the messages from any other exception raised while serving a
request, keeping its type and stack. Our own log lines hold counts only.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from multilabel.artifact import ClassifierConfig
from multilabel.pair_encoding import TruncationError, encode_pairs, pad_batch
from multilabel.runtime import RuntimeSettings

logger = logging.getLogger(__name__)

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
CONTENT_TYPES = (JSON, JSONLINES, CSV)
ACCEPT_TYPES = (JSON, JSONLINES)  # in order of preference when the client ranks them equally
CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's largest, as training sets it
MAX_RECORDS_ENV = "MULTILABEL_MAX_RECORDS"
BATCH_SIZE_ENV = "MULTILABEL_BATCH_SIZE"
MAX_TOKENS_ENV = "MULTILABEL_MAX_TOKENS"
DEFAULT_MAX_RECORDS = 256
# Records per forward pass. On a CPU, cost follows tokens, so small chunks of similar
# length (less padding) win; on a GPU, larger batches keep it busy.
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 32}
# Tokens per request after truncation when MULTILABEL_MAX_TOKENS is unset: the time one
# request holds a worker follows this count times the model's work per token. On a CPU,
# 4,096 tokens (16 records of 256) through a roberta-base-size model cost 18.8 CPU-seconds
# (benchmarks/README.md), so even 4 such requests at once (Multi Model Server starts a
# worker per vCPU, 4 on an ml.m5.xlarge) need about 38 s of its 2 physical cores: within
# SageMaker's 60 s invocation limit. Other models get the
# budget that costs the same, scaled by their parameters outside the embeddings (what
# every token goes through). On a GPU: 256 records of 256 tokens, what the record limit
# allowed before (not measured here).
REFERENCE_MAX_TOKENS = 4096
REFERENCE_PARAMETERS = 85_652_746  # roberta-base with a 10-label head, embeddings excluded
GPU_MAX_TOKENS = 65536
PARAMETERS = ("threshold", "top_k", "return_scores")
CLIP_MARGIN = 8  # tokens kept past max_seq_length when a long text of a pair is cut
BOM = "\ufeff"


class RequestError(ValueError):
    """A request the endpoint cannot serve; its text is the HTTP 400 message.

    `kind` (what went wrong) and `where` (which record, line or header) are written by
    this module and hold no request content: they are all that reaches the log.
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


def _env_int(name: str, default: int | None) -> int | None:
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
    return _env_int(MAX_RECORDS_ENV, DEFAULT_MAX_RECORDS)


def default_max_tokens(model: torch.nn.Module, device_type: str, max_seq_length: int) -> int:
    """The token budget for `model` when MULTILABEL_MAX_TOKENS is unset (see REFERENCE_MAX_TOKENS).

    At least one record of `max_seq_length` tokens, rounded to a multiple of 64.
    """
    if device_type == "cuda":
        return GPU_MAX_TOKENS
    per_token = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    scaled = REFERENCE_MAX_TOKENS * REFERENCE_PARAMETERS / max(per_token, 1)
    return max(max_seq_length, 64 * round(scaled / 64))


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
        payload = json.loads(body)
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
        parameters = payload.get("parameters") or {}
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


def _parse_jsonlines(body: str) -> Request:
    """One record a line (bare, or {"inputs": record}); blank lines are skipped."""
    records, locations = [], []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
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


def check_records(request: Request, text_columns: Sequence[str]) -> list[dict[str, str]]:
    """Each record as {text column: string}; the first text column is required."""
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
        unknown = sorted(set(record) - set(text_columns))
        if unknown:
            raise RequestError(
                f"{where}: unknown field(s) {unknown}; the model reads {list(text_columns)}",
                "unknown field",
                where,
            )
        if text_columns[0] not in record:
            raise RequestError(f"{where}: missing field '{text_columns[0]}'", "missing field", where)
        clean = {}
        for name in text_columns:
            value = record.get(name, "")
            if value is None and name != text_columns[0]:
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
        records.append(clean)
    return records


@dataclass(frozen=True)
class Options:
    """Request parameters, checked."""

    thresholds: list[float]
    top_k: int | None = None
    return_scores: bool = True


def _probability(value: Any, name: str) -> float:
    """A number in [0, 1] for the parameter `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise RequestError(
            f"parameter '{name}' must be a number in [0, 1], found {value!r}", "bad threshold", "parameters"
        )
    if not 0.0 <= value <= 1.0:
        raise RequestError(
            f"parameter '{name}' must be in [0, 1], found {value}", "bad threshold", "parameters"
        )
    return float(value)


def parse_options(
    parameters: Mapping[str, Any], label_names: Sequence[str], tuned: Sequence[float]
) -> Options:
    """Check `threshold`, `top_k` and `return_scores`; unknown parameters are errors."""
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise RequestError(
            f"unknown parameter(s) {unknown}; supported: {list(PARAMETERS)}",
            "unknown parameter",
            "parameters",
        )
    thresholds = list(tuned)
    threshold = parameters.get("threshold")
    if isinstance(threshold, dict):
        for name, value in threshold.items():
            if name not in label_names:
                raise RequestError(
                    f"parameter 'threshold': unknown label {name!r}; labels are {list(label_names)}",
                    "unknown threshold label",
                    "parameters",
                )
            thresholds[label_names.index(name)] = _probability(value, f"threshold.{name}")
    elif threshold is not None:
        thresholds = [_probability(threshold, "threshold")] * len(label_names)
    top_k = parameters.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise RequestError(
            f"parameter 'top_k' must be a positive integer, found {top_k!r}", "bad top_k", "parameters"
        )
    return_scores = parameters.get("return_scores", True)
    if not isinstance(return_scores, bool):
        raise RequestError(
            f"parameter 'return_scores' must be true or false, found {return_scores!r}",
            "bad return_scores",
            "parameters",
        )
    return Options(thresholds=thresholds, top_k=top_k, return_scores=return_scores)


def encode_response(response: Response, accept: str | None) -> str:
    """JSON (an object for a single record, else a list) or JSON Lines (one result a line)."""
    if negotiate(accept) == JSONLINES:
        return "".join(json.dumps(result) + "\n" for result in response.results)
    return json.dumps(response.results[0] if response.single else response.results)


@dataclass
class Classifier:
    """A loaded model directory: model, tokenizer, label names and serving config."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    config: ClassifierConfig
    label_names: list[str]
    device: torch.device
    batch_size: int = DEFAULT_BATCH_SIZE["cpu"]
    max_tokens: int = REFERENCE_MAX_TOKENS

    @classmethod
    def load(cls, model_dir: str | Path, device: str | torch.device | None = None) -> Classifier:
        """Load a directory written by train.py: safetensors only, never remote code.

        Checks the `MULTILABEL_*` settings and `classifier_config.json` against
        `config.json` before loading the weights, and raises `DeploymentError` listing
        every problem. On a GPU the weights run in bf16 (fp16 where bf16 is unsupported).
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        problems, settings = [], {}
        for name, default in (
            (BATCH_SIZE_ENV, DEFAULT_BATCH_SIZE.get(device.type, 8)),
            (MAX_RECORDS_ENV, DEFAULT_MAX_RECORDS),
            (MAX_TOKENS_ENV, None),  # None: from the model's size, once it is loaded
        ):
            try:
                settings[name] = _env_int(name, default)
            except DeploymentError as err:
                problems.append(str(err))
        runtime, runtime_problems = RuntimeSettings.from_env(device.type)  # precision and threads
        problems += runtime_problems
        model_config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
        names = [model_config.id2label[i] for i in range(model_config.num_labels)]
        try:
            config = ClassifierConfig.load(model_dir)
            problems += config.problems(names)
        except (FileNotFoundError, ValueError) as err:
            problems.append(str(err))
            config = None
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        if config is not None and not problems:
            if config.max_seq_length > tokenizer.model_max_length:
                problems.append(
                    f"classifier_config.json: max_seq_length {config.max_seq_length} is more than the "
                    f"tokenizer's model_max_length {tokenizer.model_max_length}"
                )
            if settings[MAX_TOKENS_ENV] is not None and settings[MAX_TOKENS_ENV] < config.max_seq_length:
                problems.append(
                    f"{MAX_TOKENS_ENV}={settings[MAX_TOKENS_ENV]}: less than max_seq_length "
                    f"{config.max_seq_length}, so one long record could never be served; raise it"
                )
        if problems:
            raise DeploymentError(
                f"cannot serve {model_dir}: {len(problems)} problem(s)\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, config=model_config, use_safetensors=True, trust_remote_code=False
        )
        if device.type == "cuda":
            model.to(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        model.to(device).eval()
        if settings[MAX_TOKENS_ENV] is None:
            settings[MAX_TOKENS_ENV] = default_max_tokens(model, device.type, config.max_seq_length)
        # After the budget: int8 layers hold packed weights, not parameters, which it counts.
        model = runtime.apply(model)
        logger.info("loaded %s: %d labels on %s, settings %s", model_dir, len(names), device, settings)
        return cls(
            model, tokenizer, config, names, device, settings[BATCH_SIZE_ENV], settings[MAX_TOKENS_ENV]
        )

    def probabilities(self, records: Sequence[Mapping[str, str]]) -> torch.Tensor:
        """Sigmoid probabilities, records x labels, float32 on CPU, in record order.

        Tokenises the whole request at once, refuses it if its tokens after truncation
        exceed `max_tokens` (the time a request may hold a worker follows that count),
        then runs it in chunks of similar length (less padding) and puts the rows back in
        order.
        """
        columns = self.config.text_columns
        texts = [r.get(columns[0], "") for r in records]
        pairs = [r.get(columns[1], "") for r in records] if len(columns) > 1 else None
        if pairs is not None:
            texts, pairs = self.clip_pairs(texts, pairs)
        features, _ = encode_pairs(
            self.tokenizer, texts, pairs, self.config.max_seq_length, self.config.truncation
        )
        tokens = sum(len(ids) for ids in features["input_ids"])
        if tokens > self.max_tokens:
            fits = max(1, self.max_tokens * len(texts) // tokens)
            raise RequestError(
                f"request too large: {tokens} tokens after truncation to {self.config.max_seq_length} "
                f"per record, at most {self.max_tokens} per request ({MAX_TOKENS_ENV}); split it into "
                f"requests of about {fits} records like these",
                "token budget exceeded",
            )
        order = sorted(range(len(texts)), key=lambda i: len(features["input_ids"][i]), reverse=True)
        features = {k: [v[i] for i in order] for k, v in features.items()}
        probs = torch.empty(len(texts), len(self.label_names))
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                stop = start + self.batch_size
                batch = pad_batch(features, self.tokenizer.pad_token_id, start, stop)
                logits = self.model(**{k: t.to(self.device) for k, t in batch.items()}).logits
                probs[order[start:stop]] = torch.sigmoid(logits.float()).cpu()
        return probs

    def clip_pairs(self, firsts: Sequence[str], seconds: Sequence[str]) -> tuple[list[str], list[str]]:
        """The pairs with each long text cut a few tokens past what the model can keep of it.

        Truncating a pair of long texts, a fast tokenizer builds every combination of their
        overflowing windows: quadratic in their lengths (16 pairs of 5,000 tokens took 69 s
        to cut to 32 tokens), and before any token budget can be counted. Truncation keeps
        at most max_seq_length tokens of a text and depends on the lengths only through
        their order and whether each exceeds that, so a long text is cut after
        max_seq_length + CLIP_MARGIN tokens (4 more for the longer), and a pair's cut is
        used only if its first tokens, its order and which texts exceed are all unchanged.
        """
        limit = self.config.max_seq_length
        firsts, seconds = list(firsts), list(seconds)
        long = [
            i for i, pair in enumerate(zip(firsts, seconds, strict=True)) if max(map(len, pair)) > 4 * limit
        ]
        if not long or not self.tokenizer.is_fast:
            return firsts, seconds  # texts of at most 4 windows each: cheap as they are
        texts = [text for i in long for text in (firsts[i], seconds[i])]  # pair k at 2k, 2k + 1
        encoded = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        cut = []
        for j, text in enumerate(texts):
            keep = limit + CLIP_MARGIN + 4 * (len(ids[j]) > len(ids[j ^ 1]))  # the longer stays longer
            cut.append(text if len(ids[j]) <= keep else text[: encoded["offset_mapping"][j][keep - 1][1]])
        again = self.tokenizer(cut, add_special_tokens=False)["input_ids"]

        def order(a: list[int], b: list[int]) -> int:
            return (len(a) > len(b)) - (len(a) < len(b))

        for k, i in enumerate(long):
            before, after = ids[2 * k : 2 * k + 2], again[2 * k : 2 * k + 2]
            if order(*before) == order(*after) and all(
                new[: limit + 1] == old[: limit + 1] and (len(new) > limit) == (len(old) > limit)
                for old, new in zip(before, after, strict=True)
            ):
                firsts[i], seconds[i] = cut[2 * k], cut[2 * k + 1]
        return firsts, seconds

    def predict(self, records: Sequence[Mapping[str, str]], options: Options | None = None) -> list[dict]:
        """`{"labels": [best first], "scores": {label: probability}}` per record, in order."""
        options = options or Options(thresholds=self.config.threshold_list(self.label_names))
        probs = self.probabilities(records)
        hits = probs >= torch.tensor(options.thresholds)
        results = []
        for row, row_hits in zip(probs.tolist(), hits.tolist(), strict=True):
            chosen = sorted((i for i, hit in enumerate(row_hits) if hit), key=lambda i: -row[i])
            result: dict[str, Any] = {"labels": [self.label_names[i] for i in chosen[: options.top_k]]}
            if options.return_scores:
                result["scores"] = dict(zip(self.label_names, row, strict=True))
            results.append(result)
        return results

    def handle(self, request: Request) -> Response:
        """Check a decoded request's records and parameters, and predict."""
        records = check_records(request, self.config.text_columns)
        tuned = self.config.threshold_list(self.label_names)
        options = parse_options(request.parameters, self.label_names, tuned)
        try:
            return Response(self.predict(records, options), request.single)
        except TruncationError as err:
            where = [request.locations[i] for i in err.rows]
            kept = "second" if self.config.truncation == "only_first" else "first"
            raise RequestError(
                f"{', '.join(where[:10])}{' ...' if len(where) > 10 else ''}: cannot be cut to "
                f"{self.config.max_seq_length} tokens: this model truncates {self.config.truncation}, "
                f"and the {kept} text alone fills the window; shorten it",
                "record cannot be truncated",
                where[0],
            ) from None


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
