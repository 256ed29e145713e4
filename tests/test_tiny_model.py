"""The one builder of random-weight models: tiny shapes of any family, and a tiny RoBERTa on disk."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    RobertaConfig,
)

from tests.support.tiny_model import build_tiny_roberta, roberta_base_config, tiny_config


def test_tiny_config_gives_any_family_a_multi_label_head() -> None:
    for config_class in (BertConfig, RobertaConfig):
        config = tiny_config(config_class, num_labels=4, hidden_size=8)
        model = AutoModelForSequenceClassification.from_config(config)
        logits = model(input_ids=torch.tensor([[0, 5, 2]])).logits
        assert logits.shape == (1, 4), f"{config_class.__name__}: logits {tuple(logits.shape)}"
        assert config.problem_type == "multi_label_classification"
        assert config.hidden_size == 8, "an override must win over the tiny shape"


def test_roberta_base_config_has_roberta_bases_shape() -> None:
    config = roberta_base_config(num_labels=10)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (768, 12, 50265)
    assert config.num_labels == 10


def test_a_built_tiny_roberta_loads_through_from_pretrained(tmp_path: Path) -> None:
    out = build_tiny_roberta(tmp_path / "tiny", max_positions=34)
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, num_labels=3)
    encoded = tokenizer("a tiny corpus", "for a tiny tokenizer", truncation=True, return_tensors="pt")
    assert tokenizer.model_max_length == 32, "positions minus RoBERTa's two offsets"
    assert model(**encoded).logits.shape == (1, 3)
    again = build_tiny_roberta(tmp_path / "again", max_positions=34)
    assert (out / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes(), (
        "the same seed must build the same weights"
    )
