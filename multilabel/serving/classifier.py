"""The endpoint's model: load a model directory, check its settings, predict label sets.

Imports only torch, transformers and this package's light modules, so it runs in the
Hugging Face inference container (transformers 4.51.3) and starts fast. Decisions use
the per-label thresholds that training tuned and saved in the model directory.
Requests are decoded, checked and encoded by `multilabel.serving.request_codec` (standard
library only); `Classifier.handle` takes a decoded request and returns the results.

A broken deployment (a bad `classifier_config.json`, a `MULTILABEL_*` setting that is
not a positive integer) raises `DeploymentError` from `Classifier.load`, that is at
start-up in `model_fn`: the model is never served, and the error, listing every
problem, is in the start-up log. (`DeploymentError` is defined in `request_codec`,
beside the setting reader `env_int`, so that the codec's record limit can raise it
without torch.) A request the model cannot serve (too many tokens, a pair the
truncation cannot fit) raises `RequestError`, an HTTP 400.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from multilabel.core.artifact import ClassifierConfig, read_model_dir
from multilabel.serving.options import Options, check_options, parse_options
from multilabel.serving.request_codec import (
    DEFAULT_MAX_RECORDS,
    MAX_RECORDS_ENV,
    MAX_TOKENS_ENV,
    DeploymentError,
    Request,
    RequestError,
    Response,
    check_records,
    env_int,
)
from multilabel.serving.runtime import RuntimeSettings
from multilabel.text.decisions import decide, saved_thresholds
from multilabel.text.pair_encoding import TruncationError, encode_pairs, pad_batch
from multilabel.text.tfidf import TfidfModel, blend, load_tfidf, record_text
from multilabel.text.windows import WindowSettings, encode_windows, pool_logits

logger = logging.getLogger(__name__)

BATCH_SIZE_ENV = "MULTILABEL_BATCH_SIZE"
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
CLIP_MARGIN = 8  # tokens kept past max_seq_length when a long text of a pair is cut


def default_max_tokens(model: torch.nn.Module, device_type: str, record_tokens: int) -> int:
    """The token budget for `model` when MULTILABEL_MAX_TOKENS is unset (see REFERENCE_MAX_TOKENS).

    At least one record of `record_tokens` (its windows' tokens), rounded to a multiple of 64.
    """
    if device_type == "cuda":
        return GPU_MAX_TOKENS
    per_token = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    scaled = REFERENCE_MAX_TOKENS * REFERENCE_PARAMETERS / max(per_token, 1)
    return max(record_tokens, 64 * round(scaled / 64))


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
    tfidf: TfidfModel | None = None  # the TF-IDF half of a hybrid model (`hybrid_weight`)
    # The tuned thresholds, read once: one read-only float64 per label (text/decisions.py).
    thresholds: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.thresholds = saved_thresholds(self.config, self.label_names)

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
                settings[name] = env_int(name, default)
            except DeploymentError as err:
                problems.append(str(err))
        # precision, threads and runtime (torch or onnx: its files and package checked here)
        runtime, runtime_problems = RuntimeSettings.from_env(device.type, model_dir)
        problems += runtime_problems
        label_names, config, model_dir_problems = read_model_dir(model_dir)
        problems += model_dir_problems
        names = list(label_names)
        model_config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        if config is not None and not problems:
            if config.max_seq_length > tokenizer.model_max_length:
                problems.append(
                    f"classifier_config.json: max_seq_length {config.max_seq_length} is more than the "
                    f"tokenizer's model_max_length {tokenizer.model_max_length}"
                )
            record = config.max_seq_length * config.windows.max_windows
            if settings[MAX_TOKENS_ENV] is not None and settings[MAX_TOKENS_ENV] < record:
                problems.append(
                    f"{MAX_TOKENS_ENV}={settings[MAX_TOKENS_ENV]}: less than the {record} tokens of one "
                    f"long record (max_seq_length {config.max_seq_length} x max_windows "
                    f"{config.windows.max_windows}), so one could never be served; raise it"
                )
        tfidf, tfidf_problem = load_tfidf(model_dir, config, len(names))
        if tfidf_problem:
            problems.append(tfidf_problem)
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
            record = config.max_seq_length * config.windows.max_windows
            settings[MAX_TOKENS_ENV] = default_max_tokens(model, device.type, record)
        # After the budget: int8 layers hold packed weights, not parameters, which it counts.
        # With MULTILABEL_RUNTIME=onnx, an ONNX Runtime session takes the model's place.
        model = runtime.apply(model, model_dir)
        logger.info("loaded %s: %d labels on %s, settings %s", model_dir, len(names), device, settings)
        return cls(
            model,
            tokenizer,
            config,
            names,
            device,
            settings[BATCH_SIZE_ENV],
            settings[MAX_TOKENS_ENV],
            tfidf,
        )

    @property
    def windows(self) -> WindowSettings:
        """How this model reads a long record (saved by training)."""
        return self.config.windows

    @property
    def max_record_tokens(self) -> int:
        """The most tokens one record can become: one window, or max_windows of them."""
        return self.config.max_seq_length * self.windows.max_windows

    def encode(
        self, records: Sequence[Mapping[str, str]]
    ) -> tuple[dict[str, list[list[int]]], list[int] | None]:
        """The model inputs of `records` (unpadded rows), and with windows the rows per record."""
        columns = self.config.text_columns
        texts = [r.get(columns[0], "") for r in records]
        pairs = [r.get(columns[1], "") for r in records] if len(columns) > 1 else None
        length = self.config.max_seq_length
        if self.windows.enabled:
            features, counts, _ = encode_windows(
                self.tokenizer, texts, pairs, length, self.windows.max_windows, self.windows.overlap
            )
            return features, counts
        if pairs is not None:
            texts, pairs = self.clip_pairs(texts, pairs)
        return encode_pairs(self.tokenizer, texts, pairs, length, self.config.truncation)[0], None

    def probabilities(self, records: Sequence[Mapping[str, str]]) -> torch.Tensor:
        """Sigmoid probabilities, records x labels, on CPU, in record order: float32, or
        float64 for a hybrid (blended as train.py blends).

        Tokenises the whole request at once (each record into its windows, where the model
        reads windows), refuses it if its tokens after truncation exceed `max_tokens` (the
        time a request may hold a worker follows that count), then runs the rows in chunks
        of similar length (less padding), puts them back in order and pools each record's
        windows.
        """
        features, counts = self.encode(records)
        tokens = sum(len(ids) for ids in features["input_ids"])
        if tokens > self.max_tokens:
            fits = max(1, self.max_tokens * len(records) // tokens)
            cut = f"{self.config.max_seq_length} per window, {self.windows.max_windows} windows per record"
            if counts is None:
                cut = f"truncation to {self.config.max_seq_length} per record"
            raise RequestError(
                f"request too large: {tokens} tokens after {cut}, at most {self.max_tokens} per request "
                f"({MAX_TOKENS_ENV}); split it into requests of about {fits} records like these",
                "token budget exceeded",
            )
        rows = len(features["input_ids"])
        order = sorted(range(rows), key=lambda i: len(features["input_ids"][i]), reverse=True)
        features = {k: [v[i] for i in order] for k, v in features.items()}
        logits = torch.empty(rows, len(self.label_names))
        with torch.inference_mode():
            for start in range(0, rows, self.batch_size):
                stop = start + self.batch_size
                batch = pad_batch(features, self.tokenizer.pad_token_id, start, stop)
                output = self.model(**{k: t.to(self.device) for k, t in batch.items()}).logits
                logits[order[start:stop]] = output.float().cpu()
            if counts is not None:
                logits = pool_logits(logits, counts, self.windows.pooling)
        probs = torch.sigmoid(logits)
        if self.tfidf is None:
            return probs
        texts = [record_text(r, self.config.text_columns) for r in records]
        mixed = blend(
            probs.numpy(), self.tfidf.probabilities(texts), self.config.blend_weights(self.label_names)
        )
        return torch.from_numpy(mixed)  # float64, as train.py blends and decides

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

    def predict(
        self,
        inputs: Sequence[str | Mapping[str, Any]],
        options: Options | Mapping[str, Any] | None = None,
    ) -> list[dict]:
        """Label sets for a list of texts or records: the Python call for a model directory.

        `Classifier.load(model_dir).predict(["some text", {"title": ..., "body": ...}])`.
        A plain string is the first text column's value (a text-pair model gets an empty
        second text); a record maps text columns to strings. Records are checked exactly
        as the endpoint checks a request's: an unknown or missing field, or a value that is
        not a string, raises `RequestError` naming the record (`inputs[2]`), as does a
        record that the model's truncation cannot fit. Any number of inputs: they run in
        chunks within the token budget (`MULTILABEL_MAX_TOKENS`). Returns, in input order,
        `{"labels": [best first], "scores": {label: probability}}` (first the record's id,
        for a model trained with `--id_column`, when the record has one) at the tuned
        thresholds; `options` (an `Options`, or the endpoint's parameters such as
        `{"threshold": 0.3, "top_k": 2}`) changes the thresholds, `top_k` or `return_scores`,
        checked as the endpoint checks a request's parameters.
        """
        if isinstance(inputs, (str, Mapping)):
            raise TypeError("predict takes a list of texts or records; wrap a single one in a list")
        first = self.config.text_columns[0]
        records = [{first: item} if isinstance(item, str) else item for item in inputs]
        request = Request(records, [f"inputs[{i}]" for i in range(len(records))])
        checked = check_records(request, self.config.text_columns, self.config.id_column)
        options = check_options(options, self.label_names, self.thresholds)
        # Any number of inputs: in chunks that the token budget always admits.
        step = max(1, self.max_tokens // self.max_record_tokens)
        results = []
        for start in range(0, len(checked), step):
            part = Request(request.records[start : start + step], request.locations[start : start + step])
            results += self.decide(part, checked[start : start + step], options)
        return results

    def decide(
        self, request: Request, records: Sequence[Mapping[str, str]], options: Options | None = None
    ) -> list[dict]:
        """The results of a request's checked `records` (a `TruncationError` becomes a `RequestError`)."""
        if not records:
            return []
        options = options or Options(thresholds=self.thresholds)
        try:
            probs = self.probabilities(records)
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
        hits = decide(probs.numpy(), options.thresholds)
        results = []
        id_column = self.config.id_column
        for record, row, row_hits in zip(records, probs.tolist(), hits.tolist(), strict=True):
            chosen = sorted((i for i, hit in enumerate(row_hits) if hit), key=lambda i: -row[i])
            result: dict[str, Any] = {id_column: record[id_column]} if id_column in record else {}
            result["labels"] = [self.label_names[i] for i in chosen[: options.top_k]]
            if options.return_scores:
                result["scores"] = dict(zip(self.label_names, row, strict=True))
            results.append(result)
        return results

    def handle(self, request: Request) -> Response:
        """Check a decoded request's records and parameters, and predict."""
        records = check_records(request, self.config.text_columns, self.config.id_column)
        options = parse_options(request.parameters, self.label_names, self.thresholds)
        return Response(self.decide(request, records, options), request.single)
