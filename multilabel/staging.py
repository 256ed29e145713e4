"""Outputs that appear whole or not at all.

A run writes its model directory and its results into sibling staging folders and
swaps them into place only at the end, so a run that fails at any point leaves what
was there before untouched: a good model is never replaced by a half-written one.
Standard library only.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from multilabel.errors import UsageError

logger = logging.getLogger(__name__)


class OutputLocationError(UsageError):
    """An output location that cannot be written, or that would destroy something."""


def check_writable(path: str | Path, what: str) -> None:
    """Prove that `path` (a folder) and a staging folder beside it can be written.

    Leaves no trace: the test file goes into the nearest folder that already exists.
    """
    target = Path(path).resolve()
    existing = target if target.exists() else target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputLocationError(f"{what} {path} cannot be written: {existing} is a file, not a folder")
    try:
        for folder in {f for f in (existing, target.parent) if f.is_dir()}:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                pass
    except OSError as err:
        raise OutputLocationError(f"{what} {path} cannot be written: {err.strerror or err}") from None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_locations(
    model_dir: str, output_data_dir: str, checkpoint_dir: str, data_files: Mapping[str, str | None]
) -> None:
    """Every output location is writable, and replacing the model folder destroys nothing else.

    The model folder is replaced whole at the end of a run, so checkpoints, results and
    input files must not live inside it, and an existing folder must be a model folder.
    """
    model = Path(model_dir).resolve()
    for path, what in (
        (checkpoint_dir, "--output_dir (checkpoints)"),
        (output_data_dir, "--output_data_dir"),
    ):
        if _inside(Path(path).resolve(), model):
            raise OutputLocationError(
                f"{what} {path} is inside --model_dir {model_dir}, which becomes model.tar.gz "
                "and is replaced whole at the end of the run; choose a folder outside it."
            )
    for split, where in data_files.items():
        if where and _inside(Path(where).resolve(), model):
            raise OutputLocationError(
                f"the {split} data {where} is inside --model_dir {model_dir}, which is replaced "
                "at the end of the run; move the data or choose another --model_dir."
            )
    if model.is_dir() and any(model.iterdir()) and not (model / "config.json").is_file():
        raise OutputLocationError(
            f"--model_dir {model_dir} holds files but no config.json: it is not a model folder, and "
            "the run would replace it. Choose a new or empty folder."
        )
    check_writable(model_dir, "--model_dir")
    check_writable(output_data_dir, "--output_data_dir")
    check_writable(checkpoint_dir, "--output_dir (checkpoints)")


def staging_dir(target: str | Path) -> Path:
    """A fresh empty folder beside `target`, on the same file system."""
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))


def replace_dir(staged: Path, target: str | Path) -> None:
    """Put the staged folder at `target`, replacing whatever was there.

    Two renames on one file system: at every moment either the old or the new folder is
    at `target` (briefly neither, never a mix). A mount point cannot be renamed (EBUSY;
    a bind mount such as SageMaker's /opt/ml/model is not always detectable beforehand),
    so then its entries are replaced one by one instead.
    """
    target = Path(target).resolve()
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        old.rmdir()
        try:
            target.rename(old)
        except OSError as err:
            logger.info("%s cannot be renamed (%s); replacing its entries one by one", target, err.strerror)
            _replace_entries(staged, target)
            return
    staged.rename(target)
    if old is not None:
        _remove(old)


def _replace_entries(staged: Path, target: Path) -> None:
    """Empty `target`, then move every staged entry into it."""
    for entry in target.iterdir():
        _remove(entry)
    for entry in staged.iterdir():
        shutil.move(str(entry), target / entry.name)
    staged.rmdir()


def replace_files(staged: Path, target: str | Path, owned: Iterable[str]) -> None:
    """Move every staged file into `target`, and delete the `owned` names not staged.

    For a results folder that may hold the user's other files: only the names this
    program writes (`owned`) are ever deleted, so a previous run's results never
    linger beside this run's.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    new = {entry.name for entry in staged.iterdir()}
    for name in set(owned) - new:
        _remove(target / name)
    for name in sorted(new):
        os.replace(staged / name, target / name)
    staged.rmdir()


def publish(
    model_dir: str | Path,
    output_data_dir: str | Path,
    write_model: Callable[[Path], None],
    write_data: Callable[[Path], None],
    data_files: Iterable[str],
) -> None:
    """Write the model and the results into staging folders, then swap both into place.

    Nothing that was at `model_dir` changes unless every file of the new model was
    written; results go first (`data_files` names every file a run owns there), the
    model last, so a failure leaves the old model.
    """
    staged_model = staged_data = None
    try:
        staged_model = staging_dir(model_dir)
        staged_data = staging_dir(output_data_dir)
        write_model(staged_model)
        write_data(staged_data)
        replace_files(staged_data, output_data_dir, data_files)
        staged_data = None
        replace_dir(staged_model, model_dir)
        staged_model = None
    finally:
        discard(staged_model)
        discard(staged_data)


def discard(staged: Path | None) -> None:
    """Remove a staging folder left by a failed run."""
    if staged is not None and staged.exists():
        shutil.rmtree(staged, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
