"""Which checkpoint a run resumes from: ownership by fingerprint, and unreadable checkpoints;
what a finished run keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from multilabel.training.checkpoints import (
    FINGERPRINT_FILE,
    CheckpointConflictError,
    checkpoint_problem,
    choose_resume_checkpoint,
    read_fingerprint,
    remove_finished_checkpoints,
)
from tests.helpers import DATA, FAST_ARGS, read_csv, run_train, write_csv

RUN = {"data": {"train": {"train.csv": "ab12"}}, "learning_rate": 5e-5, "label_names": ["a", "b"]}


def make_checkpoint(root: Path, step: int) -> Path:
    """A checkpoint folder with the files Trainer reads back when it resumes."""
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"weight": torch.ones(4, 4)}, str(path / "model.safetensors"))
    torch.save({"state": {0: {"exp_avg": torch.zeros(4)}}, "param_groups": []}, path / "optimizer.pt")
    torch.save({"last_epoch": step, "_last_lr": [1e-5]}, path / "scheduler.pt")
    torch.save({"python": (3, (1, 2), None), "cpu": torch.get_rng_state()}, path / "rng_state.pth")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return path


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_new_folder_starts_afresh_and_records_its_owner(tmp_path: Path) -> None:
    assert choose_resume_checkpoint(tmp_path / "ckpt", RUN) is None
    assert read_fingerprint(tmp_path / "ckpt") == RUN


def test_the_same_run_resumes_its_newest_checkpoint(tmp_path: Path) -> None:
    choose_resume_checkpoint(tmp_path, RUN)
    make_checkpoint(tmp_path, 10)
    newest = make_checkpoint(tmp_path, 20)
    assert choose_resume_checkpoint(tmp_path, dict(RUN)) == str(newest)


def test_another_run_is_refused_with_both_ways_out(tmp_path: Path) -> None:
    choose_resume_checkpoint(tmp_path, RUN)
    checkpoint = make_checkpoint(tmp_path, 10)
    other = {**RUN, "label_names": ["a", "b", "c"], "learning_rate": 1e-4}
    with pytest.raises(CheckpointConflictError) as refused:
        choose_resume_checkpoint(tmp_path, other)
    message = str(refused.value)
    assert str(tmp_path) in message and "checkpoint-10" in message
    assert "label_names, learning_rate" in message  # what differs, named
    assert "--overwrite_output_dir" in message and "--output_dir" in message
    assert read_fingerprint(tmp_path) == RUN  # the owner is unchanged
    assert (checkpoint / "model.safetensors").is_file()


def test_checkpoints_without_an_owner_are_refused(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 10)
    with pytest.raises(CheckpointConflictError, match=FINGERPRINT_FILE):
        choose_resume_checkpoint(tmp_path, RUN)


def test_overwrite_deletes_the_old_run_and_an_explicit_checkpoint_wins(tmp_path: Path) -> None:
    choose_resume_checkpoint(tmp_path, RUN)
    make_checkpoint(tmp_path, 10)
    other = {**RUN, "learning_rate": 1e-4}
    assert choose_resume_checkpoint(tmp_path, other, overwrite=True) is None
    assert not (tmp_path / "checkpoint-10").exists()
    assert read_fingerprint(tmp_path) == other
    explicit = make_checkpoint(tmp_path / "elsewhere", 5)
    assert choose_resume_checkpoint(tmp_path, RUN, requested=str(explicit)) == str(explicit)


CORRUPTIONS = {
    "truncated weights": lambda p: truncate(p / "model.safetensors"),
    "truncated optimizer": lambda p: truncate(p / "optimizer.pt"),
    "truncated rng state": lambda p: truncate(p / "rng_state.pth"),
    "missing weights": lambda p: (p / "model.safetensors").unlink(),
    "empty trainer state": lambda p: (p / "trainer_state.json").write_text(""),
    "no trainer state (cut short)": lambda p: (p / "trainer_state.json").unlink(),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_an_unreadable_newest_checkpoint_is_set_aside_for_the_previous_one(
    tmp_path: Path, corrupt, caplog: pytest.LogCaptureFixture
) -> None:
    choose_resume_checkpoint(tmp_path, RUN)
    good = make_checkpoint(tmp_path, 10)
    bad = make_checkpoint(tmp_path, 20)
    corrupt(bad)
    assert checkpoint_problem(bad) is not None
    assert choose_resume_checkpoint(tmp_path, RUN) == str(good)
    assert not bad.exists() and (tmp_path / "corrupt-checkpoint-20").is_dir()  # kept, out of Trainer's way
    assert "checkpoint-20 is unusable" in caplog.text


def test_with_no_good_checkpoint_left_the_run_starts_afresh(tmp_path: Path) -> None:
    choose_resume_checkpoint(tmp_path, RUN)
    truncate(make_checkpoint(tmp_path, 10) / "model.safetensors")
    assert choose_resume_checkpoint(tmp_path, RUN) is None
    assert checkpoint_problem(make_checkpoint(tmp_path, 30)) is None


def test_a_finished_run_removes_its_checkpoints_but_not_set_aside_ones(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    choose_resume_checkpoint(root, RUN)  # writes the fingerprint
    for step in (10, 20):
        make_checkpoint(root, step)
    (root / "corrupt-checkpoint-30").mkdir()
    sizes = sum(p.stat().st_size for p in root.glob("checkpoint-*/*"))
    assert remove_finished_checkpoints(root) == sizes
    assert sorted(p.name for p in root.iterdir()) == ["corrupt-checkpoint-30"], "kept for inspection"
    (root / "corrupt-checkpoint-30").rmdir()
    make_checkpoint(root, 40)
    remove_finished_checkpoints(root)
    assert not root.exists(), "a folder left empty goes too"


@pytest.mark.slow
def test_a_local_run_deletes_its_checkpoints_once_the_model_is_saved(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Locally they are deleted after success (kept with --keep_checkpoints True, and on
    SageMaker: tests/test_train_e2e.py, tests/test_resume_and_ddp.py)."""
    data = tmp_path / "small"
    for split, rows in (("train", 64), ("validation", 32)):
        write_csv(data / f"{split}.csv", [list(r.values()) for r in read_csv(DATA / f"{split}.csv")[:rows]])
    result = run_train(
        [
            f"--model_name_or_path={tiny_model}",
            f"--train_file={data / 'train.csv'}",
            f"--validation_file={data / 'validation.csv'}",
            f"--model_dir={tmp_path / 'model'}",
            f"--output_data_dir={tmp_path / 'data'}",
            f"--output_dir={tmp_path / 'checkpoints'}",
            "--num_train_epochs=2",
            *FAST_ARGS,
        ],
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert not (tmp_path / "checkpoints").exists()
    assert "removed 2 checkpoint(s) (" in log and "--keep_checkpoints True keeps them" in log
