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


def test_outputs_inside_the_model_folder_or_a_non_model_folder_are_refused(tmp_path: Path) -> None:
    model = tmp_path / "model"
    outside = {"output_data_dir": str(tmp_path / "data"), "checkpoint_dir": str(tmp_path / "ckpt")}
    cases = {
        "--output_dir (checkpoints)": {**outside, "checkpoint_dir": str(model / "ckpt")},
        "--output_data_dir": {**outside, "output_data_dir": str(model)},
    }
    for flag, dirs in cases.items():
        with pytest.raises(staging.OutputLocationError) as refused:
            staging.check_output_locations(str(model), data_files={}, **dirs)
        assert str(refused.value).startswith(f"{flag} "), f"the message must name {flag}"
        assert f"is inside --model_dir {model}" in str(refused.value)
    with pytest.raises(staging.OutputLocationError, match=r"the train data .* is inside --model_dir"):
        staging.check_output_locations(str(model), data_files={"train": str(model / "t.csv")}, **outside)
    model.mkdir()
    (model / "notes.txt").write_text("not a model")
    with pytest.raises(staging.OutputLocationError, match=r"holds files but no config\.json"):
        staging.check_output_locations(str(model), data_files={}, **outside)
    (model / "config.json").write_text("{}")
    staging.check_output_locations(str(model), data_files={"train": str(tmp_path / "t.csv")}, **outside)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "the checks leave no trace"


def test_publish_swaps_results_then_the_model_and_a_failure_keeps_the_old_ones(tmp_path: Path) -> None:
    model, data = tmp_path / "model", tmp_path / "data"
    model.mkdir()
    (model / "weights").write_text("old")
    data.mkdir()
    (data / "notes.txt").write_text("the user's")
    (data / "test_results.json").write_text("old run")

    def write_model(folder: Path) -> None:
        (folder / "weights").write_text("new")

    def write_data(folder: Path) -> None:
        (folder / "all_results.json").write_text("new run")

    def fail(folder: Path) -> None:
        (folder / "weights").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        staging.publish(model, data, fail, write_data, ["all_results.json", "test_results.json"])
    assert (model / "weights").read_text() == "old"
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt", "test_results.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model"], "no staging folder left"

    staging.publish(model, data, write_model, write_data, ["all_results.json", "test_results.json"])
    assert (model / "weights").read_text() == "new"
    assert sorted(p.name for p in data.iterdir()) == ["all_results.json", "notes.txt"], (
        "the old run's results go, the user's file stays"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model"]
