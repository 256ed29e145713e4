"""Long records read whole: overlapping token windows per record, and their logits pooled.

With `--max_windows` above 1, a record longer than `max_seq_length` tokens becomes up to
`max_windows` windows of at most `max_seq_length` tokens instead of one truncated input.
For a text pair, the first text (a synopsis, a title) leads every window, up to half
the window; the second text slides through the rest of each window, consecutive windows
sharing `overlap` tokens. (When only the first text is long, it slides instead, beside the
whole second text; when both are, the first is cut at half the window.) A single text
slides alone. Windows past the cap are dropped; what is dropped is counted and logged.

The model scores every window; a record's logits are its windows' logits pooled
(`pool_logits`), and the record's labels and thresholds apply to the pooled logits.
Training (`trainer.MultiLabelTrainer`), evaluation, `train.py --do_train False` and
the endpoint (`classifier.Classifier`) all call `encode_windows` and `pool_logits`, with
the settings saved in `classifier_config.json`, so each record is read the same way.

Windows are cut in token space and turned back into character spans of the texts, which
the tokenizer then encodes as ordinary (first, second) pairs: its own special tokens and
token type ids, whatever the model family. Needs a fast tokenizer (character offsets).

Imports torch and the tokenizer's type only: it runs in the inference container.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from multilabel.core.artifact import WindowSettings  # the settings, standard library (re-exported)
from multilabel.text.pair_encoding import MODEL_INPUTS, pad_batch

POOLINGS = WindowSettings.POOLINGS
DEFAULT_POOLING = WindowSettings.pooling  # "mean", measured: benchmarks/README.md, "Long records"
ONE_WINDOW = WindowSettings()  # a record read as one truncated input, as without windows
WINDOW_COUNTS = "window_counts"  # the collator's per-record window counts, read by the trainer


def default_overlap(max_length: int) -> int:
    """Tokens shared by consecutive windows when `--window_overlap` is not given: an eighth."""
    return max_length // 8


@dataclass
class WindowStats:
    """What windowing did to a set of records, for the log and the report."""

    records: int = 0
    windows: int = 0
    multi_window: int = 0  # records read as more than one window
    capped: int = 0  # records with text left after the last window allowed
    tokens: int = 0  # text tokens of the records (no special tokens)
    tokens_dropped: int = 0  # of them, in no window (past the cap, or a first text's cut)

    def count(self, plan: WindowPlan) -> None:
        """Count one record's windows."""
        self.records += 1
        self.windows += len(plan.spans)
        self.tokens += plan.tokens
        self.tokens_dropped += plan.dropped
        self.capped += plan.past_cap > 0
        self.multi_window += len(plan.spans) > 1

    def add(self, other: WindowStats) -> None:
        """Count `other`'s records in these totals."""
        for name in ("records", "windows", "multi_window", "capped", "tokens", "tokens_dropped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self, max_length: int, max_windows: int) -> str:
        """One log line."""
        share = 100 * self.tokens_dropped / max(self.tokens, 1)
        return (
            f"{self.records} records -> {self.windows} windows of at most {max_length} tokens "
            f"({self.windows / max(self.records, 1):.2f} per record); {self.multi_window} records "
            f"span several windows, {self.capped} reach the cap of {max_windows} windows; "
            f"{self.tokens_dropped} of {self.tokens} text tokens ({share:.1f}%) are in no window"
        )


def _spans(length: int, room: int, overlap: int, max_windows: int) -> list[tuple[int, int]]:
    """Token spans [start, stop) of the windows over a text of `length` tokens."""
    if length <= room:
        return [(0, length)]
    stride = room - overlap
    count = min(max_windows, 1 + math.ceil((length - room) / stride))
    return [(i * stride, min(i * stride + room, length)) for i in range(count)]


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of one record fall, in tokens of its texts (no special tokens)."""

    slide_first: bool  # the first text slides (else the second does)
    fixed: int  # tokens of the other text in every window
    spans: list[tuple[int, int]]  # the sliding text's token spans, one per window
    tokens: int  # the record's text tokens
    cut: int  # of them, the first text's tokens past half the window (when both texts are long)
    past_cap: int  # of them, the sliding text's tokens after the last window allowed

    @property
    def dropped(self) -> int:
        """The record's text tokens in no window."""
        return self.cut + self.past_cap


def plan_windows(first: int, second: int | None, room: int, max_windows: int, overlap: int) -> WindowPlan:
    """The windows of a record whose texts have `first` and `second` tokens (None: a single
    text), `room` tokens of text per window (`max_seq_length` less the special tokens)."""
    half = room // 2
    b_len = second or 0
    if second is None or (first > half and b_len <= half):  # the first slides beside the whole second
        slide_first, fixed, sliding, cut = True, b_len, first, 0
    else:  # the first (whole if both fit, else at most half the window) leads; the second slides
        fixed = first if first + b_len <= room else min(first, half)
        slide_first, sliding, cut = False, b_len, first - fixed
    left = room - fixed
    spans = _spans(sliding, left, min(overlap, left - 1), max_windows)
    return WindowPlan(slide_first, fixed, spans, first + b_len, cut, sliding - spans[-1][1])


def _char_span(offsets: Sequence[tuple[int, int]], start: int, stop: int, text: str) -> str:
    """The text of tokens [start, stop) by their character offsets."""
    if stop <= start:
        return ""
    return text[offsets[start][0] : offsets[stop - 1][1]]


def _tokens(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> tuple[list, list]:
    """Token ids and character offsets of each text, without special tokens."""
    # Whole texts are longer than the model's window by design: no "longer than the
    # specified maximum sequence length" warning (the tokenizer's once-only flag).
    tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    return encoded["input_ids"], encoded["offset_mapping"]


def token_lengths(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """Tokens of each text, without special tokens."""
    return [len(ids) for ids in _tokens(tokenizer, texts)[0]]


@dataclass
class WindowTexts:
    """The windows of a set of records as text: `first[k]` (and `second[k]` for a pair) is
    window k; `counts[i]` windows belong to record i, record after record."""

    first: list[str]
    second: list[str] | None
    counts: list[int]
    stats: WindowStats


def window_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_length: int,
    max_windows: int,
    overlap: int,
) -> WindowTexts:
    """Each record as 1 to `max_windows` windows of at most `max_length` tokens, as texts.

    A pair that fits is one window, as truncation would encode it. Otherwise one text
    stays whole (or its first half-window) in every window and the other slides: the
    second text slides beside the first, unless the first is the one longer than half
    the window and the second is not, when the first slides beside the whole second.
    """
    if not tokenizer.is_fast:
        raise ValueError(
            f"--max_windows above 1 needs a fast tokenizer (character offsets); "
            f"{type(tokenizer).__name__} is not one"
        )
    paired = pairs is not None
    room_total = max_length - tokenizer.num_special_tokens_to_add(pair=paired)
    if room_total < 2:
        raise ValueError(f"max_seq_length {max_length} leaves no room for text between the special tokens")
    a_ids, a_offsets = _tokens(tokenizer, texts)
    b_ids, b_offsets = _tokens(tokenizer, pairs) if paired else ([[]] * len(texts), [[]] * len(texts))
    stats = WindowStats()
    first, second, counts = [], [], []
    for i in range(len(texts)):
        plan = plan_windows(
            len(a_ids[i]), len(b_ids[i]) if paired else None, room_total, max_windows, overlap
        )
        stats.count(plan)
        counts.append(len(plan.spans))
        offsets, text = (a_offsets[i], texts[i]) if plan.slide_first else (b_offsets[i], pairs[i])
        for start, stop in plan.spans:
            window = _char_span(offsets, start, stop, text)
            if not paired:
                first.append(window)
            elif plan.slide_first:
                first.append(window)
                second.append(pairs[i])
            else:
                first.append(_char_span(a_offsets[i], 0, plan.fixed, texts[i]))
                second.append(window)
    return WindowTexts(first, second if paired else None, counts, stats)


def encode_windows(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_length: int,
    max_windows: int,
    overlap: int,
) -> tuple[dict[str, list[list[int]]], list[int], WindowStats]:
    """`window_texts`, encoded: the windows' model inputs (record after record, unpadded, as
    `encode_pairs` returns rows), the number of windows of each record, and what windowing
    dropped."""
    cut = window_texts(tokenizer, texts, pairs, max_length, max_windows, overlap)
    # A span re-encoded on its own may differ from its tokens in context by a token at
    # an edge (a word's leading-space form): truncation keeps each window within max_length.
    windows = tokenizer(cut.first, cut.second, truncation="longest_first", max_length=max_length)
    return {name: windows[name] for name in MODEL_INPUTS if name in windows}, cut.counts, cut.stats


def group_windows(
    features: dict[str, list[list[int]]], counts: Sequence[int]
) -> dict[str, list[list[list[int]]]]:
    """Flat window rows -> per record, a list of its windows (one dataset row per record)."""
    grouped: dict[str, list[list[list[int]]]] = {name: [] for name in features}
    start = 0
    for count in counts:
        for name, rows in features.items():
            grouped[name].append(rows[start : start + count])
        start += count
    return grouped


def pool_logits(logits: torch.Tensor, counts: Sequence[int] | torch.Tensor, pooling: str) -> torch.Tensor:
    """Windows x labels -> records x labels: each record's consecutive windows pooled.

    `max`: a label is as present as in its strongest window (a record of many windows
    about other things still shows a label that one window is clearly about). `mean`:
    the windows' average. `logsumexp`: a smooth maximum, log of the summed odds, minus
    log(windows) so that a record of one window keeps its logit.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"window pooling: expected one of {POOLINGS}, found {pooling!r}")
    sizes = counts.tolist() if isinstance(counts, torch.Tensor) else list(counts)
    if sum(sizes) != logits.shape[0]:
        raise ValueError(f"{logits.shape[0]} windows of logits for {sum(sizes)} windows counted")
    pooled = []
    for part in torch.split(logits, sizes):
        if pooling == "max":
            pooled.append(part.max(dim=0).values)
        elif pooling == "mean":
            pooled.append(part.mean(dim=0))
        else:
            pooled.append(torch.logsumexp(part, dim=0) - math.log(part.shape[0]))
    return torch.stack(pooled)


@dataclass
class WindowCollator:
    """Records, each a list of windows -> all their windows padded to the longest, in record
    order, with the record's labels and `WINDOW_COUNTS` (windows per record) for pooling."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, records: list[dict]) -> dict[str, torch.Tensor]:
        counts = [len(record["input_ids"]) for record in records]
        flat = {
            name: [window for record in records for window in record[name]]
            for name in MODEL_INPUTS
            if name in records[0]
        }
        batch = pad_batch(flat, self.pad_token_id, 0, len(flat["input_ids"]), self.pad_to_multiple_of)
        if "labels" in records[0]:
            batch["labels"] = torch.tensor([record["labels"] for record in records], dtype=torch.float32)
        batch[WINDOW_COUNTS] = torch.tensor(counts, dtype=torch.long)
        return batch
