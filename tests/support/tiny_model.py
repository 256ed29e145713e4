"""Models with random weights, built offline: the one builder for tests, benchmarks and the container check.

`build_tiny_roberta` writes a tiny RoBERTa with a tokenizer trained locally; training and
serving load it through the same `from_pretrained` path that loads `roberta-base` from the
Hub. It learns the sample data's easy labels in a few epochs, which is all it is for.
`build_tiny_model` does the same for each encoder family in `FAMILIES`, with the tokenizer
class, special tokens and pair template that family's real checkpoints use.
`tiny_config` gives any encoder family a tiny shape; `roberta_base_config` the shape of
roberta-base, for speed measurements.

    python -m tests.support.tiny_model --data data/train.csv --out .cache/tiny-roberta
    python -m tests.support.tiny_model --family modernbert --data data/train.csv --out .cache/tiny-modernbert
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from tokenizers import (
    ByteLevelBPETokenizer,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
    trainers,
)
from tokenizers.implementations import BertWordPieceTokenizer
from transformers import (
    AutoModelForMaskedLM,
    BertConfig,
    BertTokenizerFast,
    DebertaV2Config,
    DebertaV2TokenizerFast,
    DistilBertConfig,
    DistilBertTokenizerFast,
    ModernBertConfig,
    MPNetConfig,
    MPNetTokenizerFast,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaTokenizerFast,
)

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
# BERT's, DistilBERT's, DeBERTa-v3's and ModernBERT's special tokens (ids differ by family).
BRACKET_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# MPNet's: RoBERTa's tokens over a lower-cased WordPiece vocabulary, [UNK] for unknown words.
MPNET_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]
FAMILIES = ("bert", "roberta", "distilbert", "deberta-v2", "modernbert", "mpnet")
# Config fields that a family names differently from BERT.
FIELD_NAMES = {"distilbert": {"intermediate_size": "hidden_dim"}}


def _texts(csv_paths: list[Path]) -> Iterator[str]:
    csv.field_size_limit(2**31 - 1)
    for path in csv_paths:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                yield from (v for k, v in row.items() if not k.startswith("label") and v)


def tiny_config(config_class: type[PretrainedConfig], num_labels: int = 3, **overrides) -> PretrainedConfig:
    """A one-layer, 16-wide multi-label configuration of any encoder family."""
    names = FIELD_NAMES.get(config_class.model_type, {})
    shape = {
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 40,
    }
    fields = {names.get(k, k): v for k, v in {**shape, **overrides}.items()}
    return config_class(**fields, num_labels=num_labels, problem_type="multi_label_classification")


def roberta_base_config(num_labels: int = 10) -> RobertaConfig:
    """roberta-base's shape (125M parameters) with a multi-label head; weights are up to the caller."""
    return RobertaConfig(
        vocab_size=50265,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=514,
        num_labels=num_labels,
        problem_type="multi_label_classification",
    )


def build_tiny_roberta(
    out_dir: Path,
    corpus: list[Path] | None = None,
    vocab_size: int = 2000,
    hidden_size: int = 32,
    layers: int = 2,
    max_positions: int = 130,
    seed: int = 0,
) -> Path:
    """Write a tiny RoBERTa (config, random weights, tokenizer) to `out_dir`; return it."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    texts = list(_texts(corpus)) if corpus else ["a tiny corpus for a tiny tokenizer"] * 10
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS)
    bpe.save_model(str(out_dir))
    tokenizer = RobertaTokenizerFast(
        vocab_file=str(out_dir / "vocab.json"),
        merges_file=str(out_dir / "merges.txt"),
        model_max_length=max_positions - 2,
    )
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = RobertaConfig(
        # Wider random weights than transformers' 0.02: the tiny encoder's outputs then
        # vary between inputs by more than float noise, so tests comparing training and
        # endpoint decisions at a threshold are not decided by rounding.
        initializer_range=0.3,
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    RobertaForMaskedLM(config).save_pretrained(out_dir, safe_serialization=True)
    logger.info("tiny RoBERTa written to %s", out_dir)
    return out_dir


def _bracket_template(tokenizer: Tokenizer) -> processors.TemplateProcessing:
    """[CLS] A [SEP] B [SEP], segment B typed 1: DeBERTa-v3's and ModernBERT's pair template."""
    return processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
    )


def _family_tokenizer(
    family: str, texts: list[str], out_dir: Path, vocab_size: int, max_length: int
) -> PreTrainedTokenizerFast:
    """The tokenizer class the family's real checkpoints use, trained on `texts`."""
    brackets = {f"{t[1:-1].lower()}_token": t for t in BRACKET_SPECIAL_TOKENS}
    if family in ("bert", "distilbert"):
        wordpiece = BertWordPieceTokenizer(lowercase=True)
        wordpiece.train_from_iterator(
            texts, vocab_size=vocab_size, min_frequency=2, special_tokens=BRACKET_SPECIAL_TOKENS
        )
        (vocab_file,) = wordpiece.save_model(str(out_dir))
        tokenizer_class = BertTokenizerFast if family == "bert" else DistilBertTokenizerFast
        return tokenizer_class(vocab_file=vocab_file, do_lower_case=True, model_max_length=max_length)
    if family == "mpnet":  # <s> A </s></s> B </s>, as RoBERTa, with no token types
        wordpiece = BertWordPieceTokenizer(lowercase=True)
        wordpiece.train_from_iterator(
            texts, vocab_size=vocab_size, min_frequency=2, special_tokens=MPNET_SPECIAL_TOKENS
        )
        (vocab_file,) = wordpiece.save_model(str(out_dir))
        return MPNetTokenizerFast(vocab_file=vocab_file, do_lower_case=True, model_max_length=max_length)
    if family == "deberta-v2":
        # DeBERTa-v3's: a SentencePiece unigram model behind a metaspace. Its checkpoints
        # ship `spm.model`, from which transformers builds this fast class; `tokenizers`
        # cannot write an spm.model, so this one ships tokenizer.json only (the class, the
        # model and the pair template are the same; only the slow tokenizer is missing).
        unigram = Tokenizer(models.Unigram())
        unigram.pre_tokenizer = pre_tokenizers.Metaspace()
        unigram.decoder = decoders.Metaspace()
        unigram.train_from_iterator(
            texts,
            trainers.UnigramTrainer(
                vocab_size=vocab_size, special_tokens=BRACKET_SPECIAL_TOKENS, unk_token="[UNK]"
            ),
        )
        unigram.post_processor = _bracket_template(unigram)
        return DebertaV2TokenizerFast(tokenizer_object=unigram, model_max_length=max_length, **brackets)
    # ModernBERT's: byte-level BPE in a PreTrainedTokenizerFast that returns no token types.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            special_tokens=BRACKET_SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    bpe.post_processor = _bracket_template(bpe)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=max_length,
        **brackets,
    )


def build_tiny_model(
    family: str,
    out_dir: Path,
    corpus: list[Path] | None = None,
    vocab_size: int = 2000,
    hidden_size: int = 32,
    layers: int = 2,
    max_positions: int = 130,
    seed: int = 0,
) -> Path:
    """Write a tiny model of `family` (one of `FAMILIES`) to `out_dir`; return it.

    A pretrained checkpoint's layout: the config, random weights of the family's masked-LM
    model (`from_pretrained` for sequence classification adds a fresh head, as it does to
    a Hub checkpoint), and a tokenizer of the family's class trained on `corpus`.
    "roberta" is `build_tiny_roberta`.
    """
    if family == "roberta":
        return build_tiny_roberta(out_dir, corpus, vocab_size, hidden_size, layers, max_positions, seed)
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, found {family!r}")
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    texts = list(_texts(corpus)) if corpus else ["a tiny corpus for a tiny tokenizer"] * 10
    tokenizer = _family_tokenizer(family, texts, out_dir, vocab_size, max_positions)
    tokenizer.save_pretrained(out_dir)
    ids = {
        name: tokenizer.convert_tokens_to_ids(token) for name, token in (("cls", "[CLS]"), ("sep", "[SEP]"))
    }
    config_class, extra = {
        "bert": (BertConfig, {}),
        "distilbert": (DistilBertConfig, {}),
        # all-mpnet-base-v2's special token ids (its positions start after the padding index).
        "mpnet": (
            MPNetConfig,
            {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id},
        ),
        # DeBERTa-v3's: relative positions only, no token type embeddings.
        "deberta-v2": (
            DebertaV2Config,
            {
                "relative_attention": True,
                "position_biased_input": False,
                "pos_att_type": ["p2c", "c2p"],
                "type_vocab_size": 0,
                "max_relative_positions": -1,
                "position_buckets": 16,
                "norm_rel_ebd": "layer_norm",
                "share_att_key": True,
            },
        ),
        # ModernBERT-base's pooling; a local window shorter than the sequences the tests use.
        "modernbert": (
            ModernBertConfig,
            {
                "cls_token_id": ids["cls"],
                "sep_token_id": ids["sep"],
                "bos_token_id": ids["cls"],
                "eos_token_id": ids["sep"],
                "classifier_pooling": "mean",
                "local_attention": 16,
                "global_attn_every_n_layers": 2,
            },
        ),
    }[family]
    config = tiny_config(
        config_class,
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        # As build_tiny_roberta: outputs that differ between inputs by more than float noise.
        initializer_range=0.3,
        **extra,
    )
    torch.manual_seed(seed)
    AutoModelForMaskedLM.from_config(config).save_pretrained(out_dir, safe_serialization=True)
    logger.info("tiny %s written to %s", family, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, nargs="*", default=[], help="CSV files to train the tokenizer on"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--family", choices=FAMILIES, default="roberta")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build_tiny_model(args.family, args.out, args.data or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
