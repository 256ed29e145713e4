"""The training pipeline's own steps: the head's starting bias and loss weights, length grouping,
the data files of a run and its schedule. The whole pipeline runs in test_train_e2e.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, BertConfig, RobertaConfig, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from multilabel.arguments import DataArguments
from multilabel.run_paths import resolve_run_paths
from multilabel.tiny_model import tiny_config
from multilabel.training import (
    MultiLabelTrainer,
    TrainingSetupError,
    check_training_steps,
    classification_layer,
    compute_pos_weight,
    initialise_head_bias,
    resolve_data_files,
    training_steps,
)

# 200 rows, 3 labels on 50 %, 10 % and 1 % of them.
LABELS = np.zeros((200, 3), dtype=np.float32)
LABELS[:100, 0] = 1
LABELS[::10, 1] = 1
LABELS[[3, 77], 2] = 1


def tiny(config_class) -> torch.nn.Module:
    return AutoModelForSequenceClassification.from_config(tiny_config(config_class, num_labels=3))


def loss_gradient_of_a_constant(bias: torch.Tensor, pos_weight: torch.Tensor | None) -> np.ndarray:
    """d(training loss)/d(bias) when every row gets the logits `bias`."""
    bias = bias.detach().clone().requires_grad_(True)
    targets = torch.from_numpy(LABELS)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        bias.expand_as(targets), targets, pos_weight=pos_weight
    )
    loss.backward()
    return bias.grad.numpy()


@pytest.mark.parametrize(
    ("config_class", "layer_name"),
    [(RobertaConfig, "classifier.out_proj"), (BertConfig, "classifier")],
)
@pytest.mark.parametrize("pos_weight_mode", ["none", "auto", "sqrt"])
def test_bias_starts_at_the_loss_minimising_constant(config_class, layer_name, pos_weight_mode) -> None:
    model = tiny(config_class)
    names = {module: name for name, module in model.named_modules()}
    layer = classification_layer(model)
    assert names[layer] == layer_name
    pos_weight = compute_pos_weight(LABELS, pos_weight_mode, cap=30.0)
    before = loss_gradient_of_a_constant(layer.bias, pos_weight)

    initialise_head_bias(model, LABELS, pos_weight)

    after = loss_gradient_of_a_constant(layer.bias, pos_weight)
    # transformers' zero bias is far from the optimum (0.5 against a 1 % label)...
    assert np.abs(before).max() > 0.1, "the untouched bias should be off the optimum"
    # ...the initialised one sits at it.
    np.testing.assert_allclose(after, 0.0, atol=1e-4, err_msg="the initialised bias is not the optimum")
    if pos_weight_mode == "none":
        np.testing.assert_allclose(torch.sigmoid(layer.bias).detach().numpy(), LABELS.mean(0), atol=0.005)


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


def test_pos_weight_modes() -> None:
    ratio = np.array([1.0, 9.0, 99.0])  # negatives / positives of the three labels
    assert compute_pos_weight(LABELS, "none", cap=30.0) is None
    np.testing.assert_allclose(compute_pos_weight(LABELS, "auto", cap=30.0).numpy(), [1.0, 9.0, 30.0])
    np.testing.assert_allclose(
        compute_pos_weight(LABELS, "sqrt", cap=30.0).numpy(), np.sqrt(ratio), rtol=1e-6
    )


def test_flags_win_over_sagemaker_channels() -> None:
    paths = resolve_run_paths({"SM_CHANNEL_TRAIN": "/opt/ml/input/data/train", "SM_CHANNEL_TEST": "/t"})
    files = resolve_data_files(DataArguments(train_file="mine.csv"), paths)
    assert files == {"train": "mine.csv", "validation": None, "test": "/t"}


def test_the_schedule_is_counted_as_trainer_counts_it(tmp_path: Path) -> None:
    def args(**values) -> TrainingArguments:
        return TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, **values)

    # 300 rows, batches of 16: 19 batches, 9 updates at 2 accumulation steps, 3 epochs.
    assert training_steps(300, args(per_device_train_batch_size=16, num_train_epochs=3)) == 57
    assert training_steps(300, args(per_device_train_batch_size=16, gradient_accumulation_steps=2)) == 27
    assert training_steps(300, args(max_steps=5)) == 5
    with pytest.raises(
        TrainingSetupError, match=r"--num_train_epochs 0 with --max_steps -1 gives 0 training"
    ):
        check_training_steps(300, args(num_train_epochs=0))
