"""Staged outputs: swapped in whole, or entry by entry where the folder cannot be renamed."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from multilabel import staging


def staged_with(target: Path, files: dict[str, str]) -> Path:
    folder = staging.staging_dir(target)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_the_staged_folder_replaces_the_old_one_whole(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging.replace_dir(staged_with(target, {"new.txt": "new"}), target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging or old folder left


def test_a_folder_that_cannot_be_renamed_gets_its_entries_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a bind-mounted /opt/ml/model in a container: rename fails with EBUSY."""
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staged = staged_with(target, {"new.txt": "new"})
    rename = Path.rename

    def busy(self, destination):
        if self == target:
            raise OSError(errno.EBUSY, "Device or resource busy")
        return rename(self, destination)

    monkeypatch.setattr(Path, "rename", busy)
    staging.replace_dir(staged, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert (target / "new.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_output_location_under_a_file_is_refused_without_a_trace(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(staging.OutputLocationError, match="is a file, not a folder"):
        staging.check_writable(blocker / "data", "--output_data_dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
