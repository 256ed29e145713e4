"""Text pair -> token ids, shared by training and the endpoint so both see the same input.

Imports only the tokenizer's type: safe for the inference container.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


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
    encoded = tokenizer(
        list(texts),
        list(pairs) if pairs is not None else None,
        truncation=truncation,
        max_length=max_length,
    )
    rust = encoded.encodings or []
    truncated = [bool(e.overflowing) for e in rust] or [False] * len(texts)
    # token_type_ids too where the model takes them (BERT's segment A / B of a pair).
    return {name: encoded[name] for name in MODEL_INPUTS if name in encoded}, truncated


def pad_batch(
    features: dict[str, list[list[int]]], pad_token_id: int, start: int, stop: int
) -> dict[str, torch.Tensor]:
    """Rows start:stop of `encode_pairs`' output, right-padded to their longest row.

    Padding positions hold `pad_token_id` in input_ids and 0 in the other inputs.
    """
    ids = features["input_ids"][start:stop]
    width = max(len(row) for row in ids)
    batch = {}
    for name, rows in features.items():
        fill = pad_token_id if name == "input_ids" else 0
        tensor = torch.full((len(ids), width), fill, dtype=torch.long)
        for i, row in enumerate(rows[start:stop]):
            tensor[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        batch[name] = tensor
    return batch
