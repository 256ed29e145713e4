"""Text pairs -> token ids and padded batches, as training and the endpoint both encode them."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from multilabel.text.pair_encoding import TruncationError, encode_pairs, pad_batch


def test_pairs_are_two_segments_truncated_and_reported(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    features, truncated = encode_pairs(tokenizer, ["short", "word " * 100], ["pair", "more " * 100], 32)
    assert [len(ids) for ids in features["input_ids"]][1] == 32
    assert truncated == [False, True]
    # The pair is a second segment: <s> text </s></s> pair </s>.
    ids = features["input_ids"][0]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.eos_token_id) == 3
    with pytest.raises(ValueError, match="truncation: expected one of"):
        encode_pairs(tokenizer, ["a"], None, 8, truncation="sideways")


def test_rows_that_one_sided_truncation_cannot_fit_are_named(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    texts = ["short", "a very long first text " * 20, "short too"]
    with pytest.raises(TruncationError) as info:
        encode_pairs(tokenizer, texts, ["pair"] * 3, 16, truncation="only_second")
    assert info.value.rows == [1], "only the row whose first text fills the window"
    assert "--truncation only_second cannot fit 1 row(s) into 16 tokens (rows 1)" in str(info.value)


def test_bert_pairs_carry_segment_ids_and_pad_them(tmp_path: Path) -> None:
    """BERT-family models get token_type_ids (0 for the text, 1 for the pair), padded with 0."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(["a first text", "and its pair", "more words here"] * 5, vocab_size=60)
    wordpiece.save_model(str(tmp_path))
    tokenizer = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    features, _ = encode_pairs(tokenizer, ["a first text", "a"], ["and its pair", "pair"], 32)
    assert set(features) == {"input_ids", "token_type_ids", "attention_mask"}
    first_segment = len(tokenizer("a first text")["input_ids"])
    assert features["token_type_ids"][0] == [0] * first_segment + [1] * (
        len(features["input_ids"][0]) - first_segment
    )
    batch = pad_batch(features, tokenizer.pad_token_id, 0, 2)
    width = len(features["input_ids"][0])
    assert batch["token_type_ids"].shape == (2, width)
    short = len(features["input_ids"][1])
    assert batch["token_type_ids"][1, :short].tolist() == features["token_type_ids"][1]
    assert batch["token_type_ids"][1, short:].sum() == 0
    assert batch["input_ids"][1, short:].tolist() == [tokenizer.pad_token_id] * (width - short)
    assert batch["attention_mask"][1].tolist() == [1] * short + [0] * (width - short)
