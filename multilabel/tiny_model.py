"""Models with random weights, built offline: the one builder for tests, benchmarks and the container check.

`build_tiny_roberta` writes a tiny RoBERTa with a tokenizer trained locally; training and
serving load it through the same `from_pretrained` path that loads `roberta-base` from the
Hub. It learns the sample data's easy labels in a few epochs, which is all it is for.
`tiny_config` gives any encoder family a tiny shape; `roberta_base_config` the shape of
roberta-base, for speed measurements.

    python -m multilabel.tiny_model --data data/train.csv --out .cache/tiny-roberta
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from tokenizers import ByteLevelBPETokenizer
from transformers import PretrainedConfig, RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _texts(csv_paths: list[Path]) -> Iterator[str]:
    csv.field_size_limit(2**31 - 1)
    for path in csv_paths:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                yield from (v for k, v in row.items() if not k.startswith("label") and v)


def tiny_config(config_class: type[PretrainedConfig], num_labels: int = 3, **overrides) -> PretrainedConfig:
    """A one-layer, 16-wide multi-label configuration of any encoder family."""
    shape = {
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 40,
    }
    return config_class(
        **{**shape, **overrides}, num_labels=num_labels, problem_type="multi_label_classification"
    )


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, nargs="*", default=[], help="CSV files to train the tokenizer on"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build_tiny_roberta(args.out, args.data or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
