"""Load a trained model directory and predict label sets for text records.

Imports only torch, transformers and this package's light modules, so it runs in the
inference container. Decisions use the thresholds that training tuned and saved.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class Classifier:
    """A loaded model directory: model, tokenizer, label names and serving config."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    config: ClassifierConfig
    label_names: list[str]
    device: torch.device

    @classmethod
    def load(cls, model_dir: str | Path, device: str | torch.device | None = None) -> Classifier:
        """Load from a directory written by train.py (safetensors only, no remote code)."""
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        config = ClassifierConfig.load(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, use_safetensors=True, trust_remote_code=False
        )
        model.to(device).eval()
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        logger.info("loaded %s: %d labels on %s", model_dir, len(names), device)
        return cls(model=model, tokenizer=tokenizer, config=config, label_names=names, device=device)

    def probabilities(self, records: Sequence[Mapping[str, str]], batch_size: int = 32) -> torch.Tensor:
        """Sigmoid probabilities, records x labels, float32 on CPU, in record order."""
        columns = self.config.text_columns
        texts = [r.get(columns[0], "") for r in records]
        pairs = [r.get(columns[1], "") for r in records] if len(columns) > 1 else None
        features, _ = encode_pairs(
            self.tokenizer, texts, pairs, self.config.max_seq_length, self.config.truncation
        )
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = pad_batch(features, self.tokenizer.pad_token_id, start, start + batch_size)
                logits = self.model(**{k: t.to(self.device) for k, t in batch.items()}).logits
                chunks.append(torch.sigmoid(logits.float()).cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, len(self.label_names))

    def predict(self, records: Sequence[Mapping[str, str]]) -> list[dict]:
        """`{"labels": [...], "scores": {label: probability}}` for each record, in order."""
        probs = self.probabilities(records)
        thresholds = torch.tensor(self.config.threshold_list(self.label_names))
        hits = probs >= thresholds
        return [
            {
                "labels": [n for n, hit in zip(self.label_names, row_hits.tolist(), strict=False) if hit],
                "scores": dict(zip(self.label_names, row.tolist(), strict=False)),
            }
            for row, row_hits in zip(probs, hits, strict=False)
        ]
