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

from multilabel.core.artifact import CLASSIFIER_CONFIG, foreign_entries
from multilabel.core.errors import UsageError

logger = logging.getLogger(__name__)

_LISTED = 10  # entries named in a refusal


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
    model_dir: str,
    output_data_dir: str,
    checkpoint_dir: str,
    data_files: Mapping[str, str | None],
    model_name_or_path: str | None = None,
    tokenizer_name: str | None = None,
) -> None:
    """Every output location is writable, and replacing the model folder destroys nothing else.

    The model folder is replaced whole at the end of a run, so checkpoints, results, input
    files and the model the run starts from must not live inside it (nor it inside the
    model), and an existing folder must be one that train.py wrote (`foreign_entries`).
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
    for path, what in ((model_name_or_path, "--model_name_or_path"), (tokenizer_name, "--tokenizer_name")):
        source = Path(path).resolve() if path and Path(path).exists() else None
        if source is not None and (_inside(source, model) or _inside(model, source)):
            raise OutputLocationError(
                f"--model_dir {model_dir} and {what} {path} overlap: the run would replace the model "
                "it starts from. Write the new model to another folder (to continue from a trained "
                f"model, keep {what} and choose a new --model_dir)."
            )
    if model.is_dir():
        foreign = foreign_entries(model)
        if foreign:
            shown = ", ".join(foreign[:_LISTED]) + (
                f" and {len(foreign) - _LISTED} more" if len(foreign) > _LISTED else ""
            )
            raise OutputLocationError(
                f"--model_dir {model_dir} holds files that train.py did not write ({shown}); the run "
                "replaces its model folder whole, so it would delete them. Choose a new or empty "
                f"folder, or move them out (a model folder holds {CLASSIFIER_CONFIG})."
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
    """Move every staged file into `target`, and remove the `owned` names not staged: all or nothing.

    For a results folder that may hold the user's other files: only the names this
    program writes (`owned`) are ever touched, so a previous run's results never linger
    beside this run's. A folder (not a file) at one of those names is the user's and is
    refused before anything moves; any other failure puts the old files back, so the
    folder never mixes two runs' results.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    new = sorted(entry.name for entry in staged.iterdir())
    old = sorted(n for n in set(owned) | set(new) if (target / n).exists() or (target / n).is_symlink())
    folders = [n for n in old if (target / n).is_dir() and not (target / n).is_symlink()]
    if folders:
        raise OutputLocationError(
            f"{target} holds folder(s) {folders} where this run writes files of those names; "
            "move them, or choose another --output_data_dir. Nothing in the folder was changed."
        )
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=staged.parent))
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for name in old:
            os.rename(target / name, backup / name)
            moved_out.append(name)
        for name in new:
            os.rename(staged / name, target / name)
            moved_in.append(name)
    except OSError as err:
        for name in moved_in:
            os.rename(target / name, staged / name)
        for name in moved_out:
            os.rename(backup / name, target / name)
        backup.rmdir()
        raise OutputLocationError(
            f"{target}: cannot replace {err.filename or target} ({err.strerror or err}); "
            "the folder keeps the previous results, unchanged"
        ) from None
    shutil.rmtree(backup)
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
    written (a failure to write becomes an `OutputLocationError`); results go first (`data_files` names every file a run owns there), the
    model last, so a failure leaves the old model.
    """
    staged_model = staged_data = None
    try:
        staged_model = staging_dir(model_dir)
        staged_data = staging_dir(output_data_dir)
        try:
            write_model(staged_model)
            write_data(staged_data)
        except OSError as err:  # a full disk, a quota: the user's to fix, and nothing was replaced
            raise OutputLocationError(
                f"the model and results could not be written beside {model_dir} and {output_data_dir} "
                f"({err.strerror or err}); what was there is unchanged. Free space and run again."
            ) from err
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
