"""The run's Trainer: length grouping from the `length` column. (Windows pooled per
record in its loss and predictions: test_windows.py.)"""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, RobertaConfig, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from multilabel.training.trainer import MultiLabelTrainer
from tests.support.tiny_model import tiny_config


def tiny(config_class) -> torch.nn.Module:
    return AutoModelForSequenceClassification.from_config(tiny_config(config_class, num_labels=3))


def test_length_grouping_reads_the_length_column(tmp_path: Path) -> None:
    lengths = [5, 30, 7, 29, 6, 31, 8, 28] * 8
    train = Dataset.from_dict(
        {
            "input_ids": [[1] * n for n in lengths],
            "attention_mask": [[1] * n for n in lengths],
            "length": lengths,
            "labels": [[0.0, 1.0, 0.0]] * len(lengths),
        }
    )
    args = TrainingArguments(
        output_dir=str(tmp_path), group_by_length=True, per_device_train_batch_size=4, report_to="none"
    )
    trainer = MultiLabelTrainer(model=tiny(RobertaConfig), args=args, train_dataset=train)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == lengths
    torch.manual_seed(0)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    # Grouped: far less padding than batches taken in file order (short, long, ...).
    assert padding_share(lengths, order, 4) < padding_share(lengths, list(range(len(lengths))), 4) / 2


def padding_share(lengths: list[int], order: list[int], batch_size: int) -> float:
    batches = [[lengths[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    return 1 - sum(map(sum, batches)) / sum(max(b) * len(b) for b in batches)
