"""Endpoint logic: parse a request, predict label sets, encode the response.

Imports only torch, transformers and this package's light modules, so it runs in the
Hugging Face inference container (transformers 4.51.3) and starts fast. Decisions use
the per-label thresholds that training tuned and saved in the model directory.

Every problem with a request raises `RequestError`; the inference toolkit turns any
exception into HTTP 400 with the exception's text as the message, so the text says
exactly which record, field or parameter was wrong.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from multilabel.artifact import ClassifierConfig
from multilabel.features import encode_pairs, pad_batch

logger = logging.getLogger(__name__)

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
CONTENT_TYPES = (JSON, JSONLINES, CSV)
ACCEPT_TYPES = (JSON, JSONLINES)
MAX_RECORDS_ENV = "MULTILABEL_MAX_RECORDS"
BATCH_SIZE_ENV = "MULTILABEL_BATCH_SIZE"
DEFAULT_MAX_RECORDS = 256
# Records per forward pass. On a CPU, cost follows tokens, so small chunks of similar
# length (less padding) win; on a GPU, larger batches keep it busy.
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 32}
PARAMETERS = ("threshold", "top_k", "return_scores")


class RequestError(ValueError):
    """A request the endpoint cannot serve; its text is the HTTP 400 message."""


@dataclass
class Request:
    """A decoded request: raw records with where each came from, and the parameters."""

    records: list[Any]
    locations: list[str]
    parameters: dict[str, Any] = field(default_factory=dict)
    single: bool = False  # one bare record in, one object out


@dataclass
class Response:
    results: list[dict]
    single: bool


def _media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";")[0].strip().lower()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def max_records() -> int:
    """Records allowed in one request (`MULTILABEL_MAX_RECORDS`, default 256)."""
    return _env_int(MAX_RECORDS_ENV, DEFAULT_MAX_RECORDS)


def _text(body: str | bytes) -> str:
    if isinstance(body, (bytes, bytearray)):
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError as err:
            raise RequestError(f"body is not valid UTF-8: {err}") from None
    return body


def _parse_json(body: str) -> Request:
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as err:
        raise RequestError(f"body is not valid JSON: {err}") from None
    parameters: Any = {}
    if isinstance(payload, dict) and "inputs" in payload:
        unknown = sorted(set(payload) - {"inputs", "parameters"})
        if unknown:
            raise RequestError(
                f"unknown top-level key(s) {unknown}; expected 'inputs' and optionally 'parameters'"
            )
        parameters = payload.get("parameters") or {}
        payload = payload["inputs"]
        prefix = "inputs"
    else:
        prefix = "body"
    if not isinstance(parameters, dict):
        raise RequestError(f"'parameters' must be an object, found {type(parameters).__name__}")
    if isinstance(payload, dict):
        return Request([payload], [prefix], parameters, single=True)
    if isinstance(payload, list):
        return Request(payload, [f"{prefix}[{i}]" for i in range(len(payload))], parameters)
    raise RequestError(
        f"{prefix} must be a record (an object) or a list of records, found {type(payload).__name__}"
    )


def _parse_jsonlines(body: str) -> Request:
    records, locations = [], []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RequestError(f"line {number} is not valid JSON: {err}") from None
        if isinstance(record, dict) and set(record) == {"inputs"}:
            record = record["inputs"]
        records.append(record)
        locations.append(f"line {number}")
    return Request(records, locations)


def _parse_csv(body: str) -> Request:
    reader = csv.reader(io.StringIO(body))
    header = next(reader, None)
    if not header:
        raise RequestError("CSV body is empty; expected a header row naming the text columns")
    records, locations = [], []
    for number, row in enumerate(reader, start=1):
        if not row:
            continue
        if len(row) != len(header):
            raise RequestError(f"CSV row {number} has {len(row)} fields, the header has {len(header)}")
        records.append(dict(zip(header, row, strict=False)))
        locations.append(f"CSV row {number}")
    return Request(records, locations)


def parse_request(body: str | bytes, content_type: str | None, limit: int | None = None) -> Request:
    """Decode a request body into records; checks its shape and size, not its fields."""
    media = _media_type(content_type)
    parsers = {JSON: _parse_json, JSONLINES: _parse_jsonlines, CSV: _parse_csv}
    if media not in parsers:
        raise RequestError(f"unsupported content type {content_type!r}; use one of {list(CONTENT_TYPES)}")
    request = parsers[media](_text(body))
    limit = max_records() if limit is None else limit
    if not request.records:
        raise RequestError("the request holds no records")
    if len(request.records) > limit:
        raise RequestError(
            f"too many records: {len(request.records)}, at most {limit} per request "
            f"(set {MAX_RECORDS_ENV} on the endpoint to change it)"
        )
    logger.debug("request: %d records, %d characters", len(request.records), len(body))
    return request


def check_records(request: Request, text_columns: Sequence[str]) -> list[dict[str, str]]:
    """Each record as {text column: string}; the first text column is required."""
    records = []
    for record, where in zip(request.records, request.locations, strict=False):
        if not isinstance(record, dict):
            raise RequestError(
                f"{where}: a record must be an object with {list(text_columns)}, found {type(record).__name__}"
            )
        unknown = sorted(set(record) - set(text_columns))
        if unknown:
            raise RequestError(f"{where}: unknown field(s) {unknown}; the model reads {list(text_columns)}")
        if text_columns[0] not in record:
            raise RequestError(f"{where}: missing field '{text_columns[0]}'")
        clean = {}
        for name in text_columns:
            value = record.get(name, "")
            if value is None and name != text_columns[0]:
                value = ""
            if not isinstance(value, str):
                raise RequestError(f"{where}: field '{name}' must be a string, found {type(value).__name__}")
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise RequestError(f"parameter '{name}' must be a number in [0, 1], found {value!r}")
    if not 0.0 <= value <= 1.0:
        raise RequestError(f"parameter '{name}' must be in [0, 1], found {value}")
    return float(value)


def parse_options(
    parameters: Mapping[str, Any], label_names: Sequence[str], tuned: Sequence[float]
) -> Options:
    """Check `threshold`, `top_k` and `return_scores`; unknown parameters are errors."""
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise RequestError(f"unknown parameter(s) {unknown}; supported: {list(PARAMETERS)}")
    thresholds = list(tuned)
    threshold = parameters.get("threshold")
    if isinstance(threshold, dict):
        for name, value in threshold.items():
            if name not in label_names:
                raise RequestError(
                    f"parameter 'threshold': unknown label {name!r}; labels are {list(label_names)}"
                )
            thresholds[label_names.index(name)] = _probability(value, f"threshold.{name}")
    elif threshold is not None:
        thresholds = [_probability(threshold, "threshold")] * len(label_names)
    top_k = parameters.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise RequestError(f"parameter 'top_k' must be a positive integer, found {top_k!r}")
    return_scores = parameters.get("return_scores", True)
    if not isinstance(return_scores, bool):
        raise RequestError(f"parameter 'return_scores' must be true or false, found {return_scores!r}")
    return Options(thresholds=thresholds, top_k=top_k, return_scores=return_scores)


def encode_response(response: Response, accept: str | None) -> str:
    """JSON (an object for a single record, else a list) or JSON Lines (one result a line)."""
    media = _media_type(accept) or JSON
    if media in ("*/*", JSON):
        payload = response.results[0] if response.single else response.results
        return json.dumps(payload)
    if media == JSONLINES:
        return "".join(json.dumps(result) + "\n" for result in response.results)
    raise RequestError(f"unsupported accept type {accept!r}; use one of {list(ACCEPT_TYPES)}")


@dataclass
class Classifier:
    """A loaded model directory: model, tokenizer, label names and serving config."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    config: ClassifierConfig
    label_names: list[str]
    device: torch.device
    batch_size: int = DEFAULT_BATCH_SIZE["cpu"]

    @classmethod
    def load(cls, model_dir: str | Path, device: str | torch.device | None = None) -> Classifier:
        """Load a directory written by train.py: safetensors only, never remote code.

        On a GPU the weights run in bf16 (fp16 where bf16 is unsupported).
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        config = ClassifierConfig.load(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, use_safetensors=True, trust_remote_code=False
        )
        if device.type == "cuda":
            model.to(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        model.to(device).eval()
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        logger.info("loaded %s: %d labels on %s", model_dir, len(names), device)
        batch_size = _env_int(BATCH_SIZE_ENV, DEFAULT_BATCH_SIZE.get(device.type, 8))
        return cls(model, tokenizer, config, names, device, batch_size)

    def probabilities(self, records: Sequence[Mapping[str, str]]) -> torch.Tensor:
        """Sigmoid probabilities, records x labels, float32 on CPU, in record order.

        Tokenises the whole request at once, then runs it in chunks of similar length
        (less padding), and puts the rows back in order.
        """
        columns = self.config.text_columns
        texts = [r.get(columns[0], "") for r in records]
        pairs = [r.get(columns[1], "") for r in records] if len(columns) > 1 else None
        features, _ = encode_pairs(
            self.tokenizer, texts, pairs, self.config.max_seq_length, self.config.truncation
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

    def predict(self, records: Sequence[Mapping[str, str]], options: Options | None = None) -> list[dict]:
        """`{"labels": [best first], "scores": {label: probability}}` per record, in order."""
        options = options or Options(thresholds=self.config.threshold_list(self.label_names))
        probs = self.probabilities(records)
        hits = probs >= torch.tensor(options.thresholds)
        results = []
        for row, row_hits in zip(probs.tolist(), hits.tolist(), strict=False):
            chosen = sorted((i for i, hit in enumerate(row_hits) if hit), key=lambda i: -row[i])
            result: dict[str, Any] = {"labels": [self.label_names[i] for i in chosen[: options.top_k]]}
            if options.return_scores:
                result["scores"] = dict(zip(self.label_names, row, strict=False))
            results.append(result)
        return results

    def handle(self, request: Request) -> Response:
        """Check a decoded request's records and parameters, and predict."""
        records = check_records(request, self.config.text_columns)
        tuned = self.config.threshold_list(self.label_names)
        options = parse_options(request.parameters, self.label_names, tuned)
        return Response(self.predict(records, options), request.single)
