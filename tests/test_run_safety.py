"""A second run, a failed run, a corrupt checkpoint: nothing is lost, nothing is silently wrong.

Every case runs the real train.py (in a subprocess, or in-process where a failure must
be injected) against a copy of a finished SageMaker-shaped run, and compares checksums
of everything that was there before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from multilabel.data.dataset import label_matrix, load_split
from multilabel.data.schema import ColumnSpec, validate_files
from tests.conftest import SageMakerRun, sagemaker_env_for
from tests.helpers import DATA, FAST_ARGS, ROOT, clean_env, read_csv, run_train, write_csv

pytestmark = pytest.mark.integration

# sm_run's own arguments: the same command, run again, is the same run.
SM_RUN_ARGS = ["--num_train_epochs", "2", "--group_by_length", "True", *FAST_ARGS]


def checksums(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def copy_of_run(sm_run: SageMakerRun, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private copy of the session's finished run, and the environment that points at it."""
    base = tmp_path / "opt-ml"
    shutil.copytree(sm_run.base, base)
    return base, sagemaker_env_for(base)


def model_args(tiny_model: Path) -> list[str]:
    return ["--model_name_or_path", str(tiny_model), *SM_RUN_ARGS]


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    ["other training data", "another label count"],
)
def test_a_second_run_is_refused_and_the_first_kept(
    sm_run: SageMakerRun, tiny_model: Path, tmp_path: Path, change: str
) -> None:
    base, env = copy_of_run(sm_run, tmp_path)
    before = checksums(base)
    extra: list[str] = []
    if change == "other training data":
        channel = tmp_path / "train2"
        write_csv(channel / "train.csv", [list(r.values()) for r in read_csv(DATA / "train.csv")[:200]])
        env["SM_CHANNEL_TRAIN"] = str(channel)
    else:
        extra = ["--label_column_names", ",".join(f"label{i}" for i in range(1, 10))]
    result = run_train([*model_args(tiny_model), *extra], env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-3000:]
    differs = "data" if change == "other training data" else "label_columns, label_names"
    assert f"{base / 'checkpoints'} holds checkpoints" in result.stdout
    assert f"belong to another run (it differs in {differs})" in result.stdout
    assert "--overwrite_output_dir" in result.stdout and "another --output_dir" in result.stdout
    assert checksums(base) == before


@pytest.mark.slow
def test_an_unwritable_output_location_fails_before_training_and_keeps_the_model(
    sm_run: SageMakerRun, tiny_model: Path, tmp_path: Path
) -> None:
    base, env = copy_of_run(sm_run, tmp_path)
    before = checksums(base)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env["SM_OUTPUT_DATA_DIR"] = str(blocker / "data")
    result = run_train(model_args(tiny_model), env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-3000:]
    assert f"--output_data_dir {blocker / 'data'} cannot be written" in result.stdout
    assert "Training" not in result.stdout  # refused before the Trainer started
    assert checksums(base) == before


@pytest.mark.slow
def test_a_failure_while_saving_leaves_the_old_model_byte_identical(
    sm_run: SageMakerRun,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """The old failure: weights written, classifier_config.json not, a model that answers 400."""
    import train
    from multilabel.core.artifact import ClassifierConfig

    base, env = copy_of_run(sm_run, tmp_path)
    before = checksums(base / "model")
    for name, value in clean_env(env).items():
        monkeypatch.setenv(name, value)

    def fail(self, model_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ClassifierConfig, "save", fail)
    # Resumes the finished run (0 steps), then saves: exit 2 with the cause, no traceback.
    assert train.main(model_args(tiny_model)) == 2
    assert "(No space left on device); what was there is unchanged" in capsys.readouterr().out
    assert checksums(base / "model") == before
    assert not [p.name for p in base.iterdir() if ".staging-" in p.name]  # no leftovers


def test_a_file_replaced_in_place_is_read_afresh(tmp_path: Path) -> None:
    """Same path, size and mtime (`cp -p`, `rsync -t`), other labels: no stale cache."""
    path = write_csv(tmp_path / "v.csv", [["a", "b", 1, *[0] * 9]])
    stat = path.stat()
    schema = validate_files({"train": path})
    first = load_split(path, ColumnSpec(), schema, cache_dir=str(tmp_path / "cache"))
    write_csv(path, [["a", "b", 0, 1, *[0] * 8]])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    second = load_split(path, ColumnSpec(), schema, cache_dir=str(tmp_path / "cache"))
    assert label_matrix(first)[0, :2].tolist() == [1.0, 0.0]
    assert label_matrix(second)[0, :2].tolist() == [0.0, 1.0]


def readable_json(path: Path) -> bool:
    """Whether `path` exists and holds whole JSON (not a file caught half-written)."""
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def spot_args(tiny_model: Path, out: Path, data: Path) -> list[str]:
    """Three epochs, a checkpoint each, the last epoch's weights as the model."""
    return [
        f"--model_name_or_path={tiny_model}",
        f"--train_file={data / 'train.csv'}",
        f"--validation_file={data / 'validation.csv'}",
        f"--model_dir={out / 'model'}",
        f"--output_data_dir={out / 'data'}",
        f"--output_dir={out / 'checkpoints'}",
        "--num_train_epochs=3",
        "--load_best_model_at_end=False",
        "--save_total_limit=3",
        *FAST_ARGS,
        "--per_device_train_batch_size=4",  # 24 steps an epoch: time to interrupt epoch 3
    ]


@pytest.mark.slow
def test_spot_interruption_with_a_corrupt_newest_checkpoint_resumes_and_matches(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Killed once epoch 2 is saved, its newest checkpoint (epoch 2) truncated, restarted with the same
    command: it resumes from epoch 1 and ends with the weights of an uninterrupted run.

    The uninterrupted run also writes into a results folder holding an older run's test
    results and a user's own file: only the latter survives.
    """
    data = tmp_path / "small"
    for split, rows in (("train", 96), ("validation", 48)):
        write_csv(data / f"{split}.csv", [list(r.values()) for r in read_csv(DATA / f"{split}.csv")[:rows]])
    reference = tmp_path / "reference"
    stale = write_csv(reference / "data" / "test_predictions.csv", [["stale"]])
    (reference / "data" / "test_results.json").write_text('{"test_micro_f1": 0.99}')
    (reference / "data" / "notes.txt").write_text("the user's own file")
    result = run_train(spot_args(tiny_model, reference, data))
    assert result.returncode == 0, result.stdout[-3000:]
    assert not stale.exists() and not (reference / "data" / "test_results.json").exists()
    assert (reference / "data" / "notes.txt").read_text() == "the user's own file"
    assert not any(
        k.startswith("test_") for k in json.loads((reference / "data" / "all_results.json").read_text())
    )

    spot = tmp_path / "spot"
    epoch_2 = spot / "checkpoints" / "checkpoint-48"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *spot_args(tiny_model, spot, data)],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not readable_json(epoch_2 / "trainer_state.json"):
            assert process.poll() is None, "training ended before it was interrupted"
            assert time.monotonic() < deadline, "no epoch-2 checkpoint in time"
            time.sleep(0.01)
        # Killed at once: a fixed pause "into epoch 3" let a fast machine finish the epoch
        # (24 tiny steps) and save checkpoint-72 before the kill, which hid the corrupt one.
    finally:
        process.kill()  # no clean shutdown, as when a spot instance is reclaimed
        process.wait()
    assert not (spot / "checkpoints" / "checkpoint-72").exists(), "epoch 3 ended before the kill"
    weights = epoch_2 / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])

    # --log_level info: the Trainer's own INFO line shows the step it continued from.
    result = run_train([*spot_args(tiny_model, spot, data), "--log_level=info"])
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "checkpoint-48 is unusable: model.safetensors cannot be read" in log
    assert f"resuming from checkpoint {spot / 'checkpoints' / 'checkpoint-24'}" in log
    assert (spot / "checkpoints" / "corrupt-checkpoint-48").is_dir()
    assert "Continuing training from global step 24" in log
    resumed, uninterrupted = (
        load_file(spot / "model" / "model.safetensors"),
        load_file(reference / "model" / "model.safetensors"),
    )
    assert resumed.keys() == uninterrupted.keys()
    worst = max(float(np.max(np.abs(resumed[k] - uninterrupted[k]))) for k in resumed)
    print(f"largest weight difference, resumed vs uninterrupted: {worst:.3g}")
    assert worst < 1e-5
