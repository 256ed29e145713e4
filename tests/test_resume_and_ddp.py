"""Data-parallel training under torchrun (CPU, gloo). Interruption and resume: test_run_safety.py."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import DATA, LABELS, read_csv, run_train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def train_args(tiny_model: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"--model_name_or_path={tiny_model}",
        f"--train_file={DATA / 'train.csv'}",
        f"--validation_file={DATA / 'validation.csv'}",
        f"--model_dir={out / 'model'}",
        f"--output_data_dir={out / 'data'}",
        f"--output_dir={out / 'checkpoints'}",
        "--max_seq_length=64",
        "--learning_rate=1e-3",
        *extra,
    ]


def test_torchrun_two_processes_on_cpu(tiny_model: Path, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    result = run_train(
        train_args(
            tiny_model,
            tmp_path,
            f"--test_file={DATA / 'test.csv'}",
            "--num_train_epochs=1",
            "--per_device_train_batch_size=16",
            "--keep_checkpoints=True",  # read below; a finished local run deletes them otherwise
        ),
        env={"OMP_NUM_THREADS": "1"},
        launcher=(str(torchrun), "--standalone", "--nproc_per_node=2"),
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    # Two ranks split each epoch: 300 rows / (2 x 16) per step.
    state = json.loads(next((tmp_path / "checkpoints").glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["global_step"] == math.ceil(300 / 32)
    # Gathered predictions: one per test row, in input order, no padding duplicates.
    from multilabel.serving.classifier import Classifier

    predictions = read_csv(tmp_path / "data" / "test_predictions.csv")
    assert len(predictions) == 100
    rows = read_csv(DATA / "test.csv")[:8]
    direct = Classifier.load(tmp_path / "model", device="cpu").probabilities(rows).numpy()
    saved = np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions[:8]])
    np.testing.assert_allclose(saved, direct, atol=1e-5)
