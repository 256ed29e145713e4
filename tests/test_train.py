"""train.py's entry point, in-process: every refusal is logged, names its flag or file, and exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

import multilabel.training.pipeline  # noqa: F401  # imported by train.main; loaded at collection, not in a test
import train
from tests.helpers import DATA, HEADER, write_csv


@pytest.fixture(autouse=True)
def keep_pytest_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """train.main reconfigures the root logger; caplog needs pytest's handlers kept."""
    monkeypatch.setattr(train, "configure_logging", lambda *args, **kwargs: None)


def test_train_main_exits_2_on_bad_arguments_and_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert train.main(["--max_seq_length=0", "--validation_split_size=0"]) == 2
    assert "2 problem(s) in the arguments:\n  - --max_seq_length: expected at least 8" in caplog.text
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes((",".join(HEADER) + "\ncaf\xe9,pair" + ",1" * 10 + "\n").encode("latin-1"))
    outputs = [f"--model_dir={tmp_path / 'm'}", f"--output_data_dir={tmp_path / 'o'}"]
    code = train.main([f"--train_file={latin1}", *outputs, f"--output_dir={tmp_path / 'c'}"])
    assert code == 2
    assert f"{latin1}, line 2: byte 0xe9 (byte 4 of the line) is not valid utf-8" in caplog.text


def test_every_argument_problem_is_logged_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert train.main(["--max_seq_length=0", "--validation_split_size=2"]) == 2
    assert "--max_seq_length: expected at least 8, found 0" in caplog.text
    assert (
        "--validation_split_size: expected a fraction between 0 and 1 (exclusive), found 2.0" in caplog.text
    )
    assert "Traceback" not in caplog.text


def test_checkpoints_inside_model_dir_are_refused(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = train.main(
        [
            f"--model_name_or_path={tiny_model}",
            f"--train_file={DATA / 'train.csv'}",
            f"--model_dir={tmp_path / 'model'}",
            f"--output_dir={tmp_path / 'model' / 'ckpt'}",
            f"--output_data_dir={tmp_path / 'data'}",
        ]
    )
    assert code == 2
    assert f"--output_dir (checkpoints) {tmp_path / 'model' / 'ckpt'} is inside --model_dir" in caplog.text
    assert not (tmp_path / "model").exists(), "refused before anything was written"


def test_zero_training_steps_are_refused(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = train.main(
        [
            f"--model_name_or_path={tiny_model}",
            f"--train_file={DATA / 'train.csv'}",
            f"--model_dir={tmp_path / 'model'}",
            f"--output_dir={tmp_path / 'ckpt'}",
            f"--output_data_dir={tmp_path / 'data'}",
            "--num_train_epochs=0",
        ]
    )
    assert code == 2
    assert "--num_train_epochs 0.0 with --max_steps -1 gives 0 training steps" in caplog.text
    assert not (tmp_path / "model").exists()


def test_a_truncation_mode_that_cannot_fit_a_row_is_refused(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [[f"short text {i}", "a pair", *([1, 0] * 5)] for i in range(12)]
    rows[4][0] = "a very long first text " * 40  # only_second can cut only the pair
    data = write_csv(tmp_path / "train.csv", rows)
    validation = write_csv(tmp_path / "validation.csv", rows[:4])
    code = train.main(
        [
            f"--model_name_or_path={tiny_model}",
            f"--train_file={data}",
            f"--validation_file={validation}",
            f"--model_dir={tmp_path / 'model'}",
            f"--output_dir={tmp_path / 'ckpt'}",
            f"--output_data_dir={tmp_path / 'data'}",
            "--truncation=only_second",
            "--max_seq_length=32",
        ]
    )
    assert code == 2
    assert "train data: --truncation only_second cannot fit 1 row(s) into 32 tokens (rows 5)" in caplog.text
    assert "Use --truncation longest_first" in caplog.text, "the fix is named"
    assert not (tmp_path / "model").exists()
