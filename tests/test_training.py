"""The training pipeline's own steps: the data files of a run and its schedule. The whole
pipeline runs in test_train_e2e.py; the head in test_encoder.py, the Trainer in test_trainer.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import TrainingArguments

from multilabel.core.errors import TrainingSetupError
from multilabel.core.run_paths import resolve_run_paths
from multilabel.training.arguments import DataArguments
from multilabel.training.pipeline import check_training_steps, resolve_data_files, training_steps


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
