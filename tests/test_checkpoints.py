"""Which checkpoint a run resumes from: ownership by fingerprint, and unreadable checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from multilabel.checkpoints import (
    FINGERPRINT_FILE,
    CheckpointConflictError,
    checkpoint_problem,
    choose_resume_checkpoint,
    read_fingerprint,
)

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
