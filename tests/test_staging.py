"""Staged outputs: swapped in whole, or entry by entry where the folder cannot be renamed."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from multilabel.training import staging


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
    with pytest.raises(
        staging.OutputLocationError, match=r"holds files that train\.py did not write \(notes\.txt\)"
    ):
        staging.check_output_locations(str(model), data_files={}, **outside)
    (model / "notes.txt").unlink()
    for name in (
        "config.json",
        "classifier_config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.json",
    ):
        (model / name).write_text("{}")
    (model / "code").mkdir()
    staging.check_output_locations(str(model), data_files={"train": str(tmp_path / "t.csv")}, **outside)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "the checks leave no trace"


def test_a_folder_train_py_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    """A project folder with a config.json, notes and sources was once replaced whole."""
    outside = {"output_data_dir": str(tmp_path / "data"), "checkpoint_dir": str(tmp_path / "ckpt")}
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text("{}")
    (project / "notes.txt").write_text("mine")
    with pytest.raises(staging.OutputLocationError) as refused:
        staging.check_output_locations(str(project), data_files={}, **outside)
    assert (
        f"--model_dir {project} holds files that train.py did not write (config.json, notes.txt, src)"
        in str(refused.value)
    )
    # A model folder with the user's file added is refused too, naming only that file.
    (project / "classifier_config.json").write_text("{}")
    (project / "config.json").write_text("{}")
    with pytest.raises(staging.OutputLocationError, match=r"\(notes\.txt, src\)"):
        staging.check_output_locations(str(project), data_files={}, **outside)
    assert sorted(p.name for p in project.iterdir()) == [
        "classifier_config.json",
        "config.json",
        "notes.txt",
        "src",
    ]


def test_the_model_folder_may_not_overlap_the_model_it_starts_from(tmp_path: Path) -> None:
    outside = {"output_data_dir": str(tmp_path / "data"), "checkpoint_dir": str(tmp_path / "ckpt")}
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)
    for model_dir in (base, base / "fine-tuned", base.parent):
        with pytest.raises(
            staging.OutputLocationError, match="overlap: the run would replace the model it starts from"
        ):
            staging.check_output_locations(
                str(model_dir), data_files={}, model_name_or_path=str(base), **outside
            )
    with pytest.raises(staging.OutputLocationError, match="--tokenizer_name"):
        staging.check_output_locations(
            str(base), data_files={}, model_name_or_path="roberta-base", tokenizer_name=str(base), **outside
        )
    # A Hub name is no folder here: nothing to overlap.
    staging.check_output_locations(
        str(tmp_path / "new"), data_files={}, model_name_or_path="roberta-base", **outside
    )


def test_results_are_replaced_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "test_results.json").write_text("old run")
    (data / "validation_predictions.csv").write_text("old run")
    owned = ["test_results.json", "test_predictions.csv", "validation_predictions.csv"]
    # A folder of the user's at one of the names: refused before anything moves.
    (data / "test_predictions.csv").mkdir()
    (data / "test_predictions.csv" / "keep.txt").write_text("mine")
    staged = staged_with(data, {"test_results.json": "new", "test_predictions.csv": "new"})
    with pytest.raises(staging.OutputLocationError, match=r"holds folder\(s\) \['test_predictions\.csv'\]"):
        staging.replace_files(staged, data, owned)
    assert (data / "test_predictions.csv" / "keep.txt").read_text() == "mine"
    assert (data / "test_results.json").read_text() == "old run"
    (data / "test_predictions.csv" / "keep.txt").unlink()
    (data / "test_predictions.csv").rmdir()
    # A failure halfway (the file system refuses the second new file; simulated, as root
    # passes every permission check here) puts every old file back.
    rename = staging.os.rename

    def refuse_second(source, destination):
        if Path(source).name == "test_results.json" and Path(source).parent == staged:
            raise OSError(errno.EACCES, "Permission denied", str(destination))
        return rename(source, destination)

    monkeypatch.setattr(staging.os, "rename", refuse_second)
    with pytest.raises(staging.OutputLocationError, match="keeps the previous results, unchanged"):
        staging.replace_files(staged, data, owned)
    assert sorted(p.name for p in data.iterdir()) == ["test_results.json", "validation_predictions.csv"]
    assert {p.read_text() for p in data.iterdir()} == {"old run"}
    monkeypatch.undo()
    staging.replace_files(staged, data, owned)
    assert sorted(p.name for p in data.iterdir()) == ["test_predictions.csv", "test_results.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"], "no staging or backup folder left"


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

    with pytest.raises(
        staging.OutputLocationError, match=r"\(No space left on device\); what was there is unchanged"
    ):
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
