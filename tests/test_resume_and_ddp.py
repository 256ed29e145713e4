"""Spot-style interruption and resume, and data-parallel training under torchrun (CPU, gloo)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import DATA, LABELS, ROOT, clean_env, read_csv, run_train

pytestmark = pytest.mark.integration


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


def wait_for(predicate, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"training ended (status {process.returncode}) before it was interrupted")
        if time.monotonic() > deadline:
            raise AssertionError("no checkpoint appeared in time")
        time.sleep(0.05)


def test_interrupted_run_resumes_from_the_last_complete_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    steps_per_epoch, epochs = math.ceil(300 / 4), 3
    args = train_args(
        tiny_model,
        tmp_path,
        f"--num_train_epochs={epochs}",
        "--per_device_train_batch_size=4",
        "--eval_strategy=steps",
        "--save_strategy=steps",
        "--eval_steps=20",
        "--save_steps=20",
        "--save_total_limit=3",
    )
    first_state = tmp_path / "checkpoints" / "checkpoint-40" / "trainer_state.json"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(first_state.exists, timeout=300, process=process)
    finally:
        process.kill()  # no clean shutdown, as when a spot instance is reclaimed
        process.wait()
    assert not (tmp_path / "model").exists()
    # A checkpoint cut short while being written: no trainer_state.json. It must be skipped.
    (tmp_path / "checkpoints" / "checkpoint-100000").mkdir()
    latest = max(
        int(p.parent.name.split("-")[1])
        for p in (tmp_path / "checkpoints").glob("checkpoint-*/trainer_state.json")
    )

    result = run_train(args)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert f"resuming from checkpoint {tmp_path / 'checkpoints' / f'checkpoint-{latest}'}" in log
    assert f"Continuing training from global step {latest}" in log
    final = tmp_path / "checkpoints" / f"checkpoint-{steps_per_epoch * epochs}" / "trainer_state.json"
    state = json.loads(final.read_text())
    assert state["global_step"] == steps_per_epoch * epochs
    logged_steps = [entry["step"] for entry in state["log_history"] if "eval_loss" in entry]
    assert logged_steps[0] == 20  # history from before the interruption was carried over
    assert (tmp_path / "model" / "model.safetensors").exists()


def test_torchrun_two_processes_on_cpu(tiny_model: Path, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    result = run_train(
        train_args(
            tiny_model,
            tmp_path,
            f"--test_file={DATA / 'test.csv'}",
            "--num_train_epochs=1",
            "--per_device_train_batch_size=16",
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
    from multilabel.serving import Classifier

    predictions = read_csv(tmp_path / "data" / "test_predictions.csv")
    assert len(predictions) == 100
    rows = read_csv(DATA / "test.csv")[:8]
    direct = Classifier.load(tmp_path / "model", device="cpu").probabilities(rows).numpy()
    saved = np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions[:8]])
    np.testing.assert_allclose(saved, direct, atol=1e-5)
