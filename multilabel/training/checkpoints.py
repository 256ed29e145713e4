"""Which checkpoint a run may resume from, if any.

A checkpoint directory (`--output_dir`, `/opt/ml/checkpoints` on SageMaker) is resumed
only by the run that wrote it: `run_fingerprint.json`, written beside the checkpoints
when a run starts, records the content hashes of the data files and everything that
shapes the model and its schedule. The same command again (a spot restart, a re-run)
resumes; another run refuses, naming the folder and the two ways out.

A checkpoint is resumed only if it can be: weights, trainer state, optimizer, scheduler
and RNG state are each read before `Trainer.train` sees them. A checkpoint that fails is
moved aside (renamed `corrupt-checkpoint-N`, so Trainer no longer sees it, and kept for
inspection) and the next newest is tried; with none left the run starts afresh.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from multilabel.core.errors import UsageError

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "run_fingerprint.json"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
CORRUPT_PREFIX = "corrupt-"
TRAINER_STATE = "trainer_state.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# Files that Trainer loads with torch.load when it resumes, if they exist.
TORCH_STATES = ("optimizer.pt", "scheduler.pt", "scaler.pt")


class CheckpointConflictError(UsageError):
    """The checkpoint directory belongs to another run."""


def write_fingerprint(checkpoint_dir: str | Path, fingerprint: Mapping[str, Any]) -> None:
    """Record which run owns `checkpoint_dir`."""
    root = Path(checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / FINGERPRINT_FILE).write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")


def read_fingerprint(checkpoint_dir: str | Path) -> dict[str, Any] | None:
    """The recorded fingerprint, or None if there is none (or it cannot be read)."""
    path = Path(checkpoint_dir) / FINGERPRINT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def list_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """The `checkpoint-N` folders, newest (highest N) first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def fingerprint_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The keys on which two fingerprints differ, sorted."""
    return sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))


def checkpoint_problem(path: Path) -> str | None:
    """Why Trainer could not resume from `path`, or None if every state file reads back."""
    import torch
    from safetensors.torch import load_file

    state_file = path / TRAINER_STATE
    if not state_file.is_file():
        return f"no {TRAINER_STATE} (the checkpoint was cut short while being written)"
    try:
        state = json.loads(state_file.read_text())
        int(state["global_step"])
    except (ValueError, KeyError, TypeError) as err:
        return f"{TRAINER_STATE} cannot be read: {err}"
    weights = next((path / name for name in WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        return f"no model weights ({' or '.join(WEIGHTS)})"
    readers = []
    if weights.name == "model.safetensors":
        readers.append((weights, load_file))
    elif weights.name == "pytorch_model.bin":
        readers.append((weights, lambda p: torch.load(p, map_location="cpu", weights_only=True)))
    # The RNG states hold numpy arrays, which weights_only refuses; these are our own files.
    readers += [
        (p, lambda p: torch.load(p, map_location="cpu", weights_only=False))
        for p in [*(path / n for n in TORCH_STATES), *path.glob("rng_state*.pth")]
        if p.is_file()
    ]
    for file, read in readers:
        try:
            read(str(file))
        except Exception as err:  # any failure to read means Trainer would fail too
            return f"{file.name} cannot be read ({type(err).__name__}: {str(err)[:200]})"
    return None


def set_aside(path: Path, reason: str) -> Path:
    """Rename a checkpoint Trainer must not use to `corrupt-checkpoint-N` (or -N.2, ...)."""
    target = path.with_name(CORRUPT_PREFIX + path.name)
    suffix = 1
    while target.exists():
        suffix += 1
        target = path.with_name(f"{CORRUPT_PREFIX}{path.name}.{suffix}")
    path.rename(target)
    logger.warning("checkpoint %s is unusable: %s; moved to %s", path, reason, target.name)
    return target


def newest_good_checkpoint(checkpoint_dir: str | Path) -> str | None:
    """The newest checkpoint that reads back; unusable newer ones are set aside."""
    for path in list_checkpoints(checkpoint_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        set_aside(path, problem)
    return None


def clear_checkpoints(checkpoint_dir: str | Path) -> None:
    """Delete the `checkpoint-N` folders and the fingerprint (`--overwrite_output_dir`)."""
    removed = list_checkpoints(checkpoint_dir)
    for path in removed:
        shutil.rmtree(path)
    (Path(checkpoint_dir) / FINGERPRINT_FILE).unlink(missing_ok=True)
    if removed:
        logger.info(
            "--overwrite_output_dir: deleted %d old checkpoint(s) in %s", len(removed), checkpoint_dir
        )


def choose_resume_checkpoint(
    checkpoint_dir: str | Path,
    fingerprint: Mapping[str, Any],
    requested: str | None = None,
    overwrite: bool = False,
) -> str | None:
    """The checkpoint to resume from (None: start afresh), after recording this run as the owner.

    `requested` (`--resume_from_checkpoint`) wins and is used as given. Otherwise the
    folder's checkpoints are resumed only if the recorded fingerprint equals this run's;
    `overwrite` (`--overwrite_output_dir`) deletes them instead. Raises
    `CheckpointConflictError` for checkpoints of another run.
    """
    if requested:
        write_fingerprint(checkpoint_dir, fingerprint)
        return requested
    if overwrite:
        clear_checkpoints(checkpoint_dir)
    existing = list_checkpoints(checkpoint_dir)
    if existing:
        recorded = read_fingerprint(checkpoint_dir)
        if recorded is None:
            differs = f"it has no readable {FINGERPRINT_FILE}, so they cannot be told to be this run's"
        else:
            keys = fingerprint_differences(recorded, fingerprint)
            differs = f"they belong to another run (it differs in {', '.join(keys)})" if keys else ""
        if differs:
            raise CheckpointConflictError(
                f"{checkpoint_dir} holds checkpoints ({existing[0].name}, ...) and {differs}. "
                "Pass --overwrite_output_dir to delete them and start afresh, or choose "
                "another --output_dir for this run (or --resume_from_checkpoint to resume one "
                "on purpose)."
            )
    write_fingerprint(checkpoint_dir, fingerprint)
    return newest_good_checkpoint(checkpoint_dir)


def folder_bytes(path: Path) -> int:
    """The size of the files under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def remove_finished_checkpoints(checkpoint_dir: str | Path) -> int:
    """After a finished run, delete its `checkpoint-N` folders and fingerprint; returns the bytes freed.

    Checkpoints only serve resuming an interrupted run: each holds the weights, the
    optimizer's state (two moments per weight, twice the weights' size) and the
    scheduler's and RNG states, about 3x the model. Folders set aside as unusable
    (`corrupt-checkpoint-N`) and any other file stay; the folder goes when left empty.
    """
    root = Path(checkpoint_dir)
    removed = list_checkpoints(root)
    freed = sum(folder_bytes(path) for path in removed)
    for path in removed:
        shutil.rmtree(path)
    (root / FINGERPRINT_FILE).unlink(missing_ok=True)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    if removed:
        logger.info(
            "removed %d checkpoint(s) (%.1f MB) from %s: the run finished, and they only serve "
            "resuming an interrupted run (--keep_checkpoints True keeps them)",
            len(removed),
            freed / 1e6,
            root,
        )
    return freed
