"""Text pair -> token ids, shared by training and the endpoint so both see the same input.

Imports only the tokenizer's type: safe for the inference container.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


class TruncationError(ValueError):
    """Rows that the chosen truncation strategy cannot fit into `max_length` tokens."""

    def __init__(self, rows: Sequence[int], truncation: str, max_length: int):
        self.rows = list(rows)
        shown = ", ".join(str(r) for r in self.rows[:10]) + (" ..." if len(self.rows) > 10 else "")
        side = "second" if truncation == "only_first" else "first"
        super().__init__(
            f"--truncation {truncation} cannot fit {len(self.rows)} row(s) into {max_length} tokens "
            f"(rows {shown}): it may cut only one text, and the {side} text "
            "alone (or a missing text pair) already fills the window. Use --truncation "
            "longest_first, or a larger --max_seq_length."
        )


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_length: int,
    truncation: str = "longest_first",
) -> tuple[dict[str, list[list[int]]], list[bool]]:
    """Tokenise `texts` (and `pairs` as the second segment), unpadded.

    Returns the encodings and, per row, whether truncation dropped tokens (known for
    fast tokenizers; all False for slow ones, which do not report it).
    """
    if truncation not in TRUNCATION_STRATEGIES:
        raise ValueError(f"truncation: expected one of {TRUNCATION_STRATEGIES}, found {truncation!r}")
    try:
        encoded = tokenizer(
            list(texts),
            list(pairs) if pairs is not None else None,
            truncation=truncation,
            max_length=max_length,
        )
    except Exception:  # the Rust tokenizer raises a bare Exception for a row it cannot cut
        if truncation == "longest_first":
            raise
        raise TruncationError(
            _unfit_rows(tokenizer, texts, pairs, max_length, truncation), truncation, max_length
        ) from None
    rust = encoded.encodings or []
    truncated = [bool(e.overflowing) for e in rust] or [False] * len(texts)
    # token_type_ids too where the model takes them (BERT's segment A / B of a pair).
    return {name: encoded[name] for name in MODEL_INPUTS if name in encoded}, truncated


def _unfit_rows(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_length: int,
    truncation: str,
) -> list[int]:
    """The rows that fail to tokenise alone: the error path only, so speed does not matter."""
    unfit = []
    for i, text in enumerate(texts):
        try:
            tokenizer(
                text, pairs[i] if pairs is not None else None, truncation=truncation, max_length=max_length
            )
        except Exception:
            unfit.append(i)
    return unfit


def pad_batch(
    features: dict[str, list[list[int]]],
    pad_token_id: int,
    start: int,
    stop: int,
    multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """Rows start:stop of `encode_pairs`' output, right-padded to their longest row (rounded
    up to `multiple_of`, if given).

    Padding positions hold `pad_token_id` in input_ids and 0 in the other inputs.
    """
    ids = features["input_ids"][start:stop]
    width = max(len(row) for row in ids)
    if multiple_of:
        width = -(-width // multiple_of) * multiple_of
    batch = {}
    for name, rows in features.items():
        fill = pad_token_id if name == "input_ids" else 0
        tensor = torch.full((len(ids), width), fill, dtype=torch.long)
        for i, row in enumerate(rows[start:stop]):
            tensor[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        batch[name] = tensor
    return batch
