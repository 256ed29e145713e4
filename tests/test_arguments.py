"""train.py's arguments as SageMaker passes them: defaults, types, and refusals that name the flag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from multilabel.core.errors import ArgumentError
from multilabel.core.metric_names import BEST_METRIC
from multilabel.data.schema import ColumnSpec
from multilabel.training.arguments import TRAINING_DEFAULTS, parse_arguments
from tests.helpers import ROOT, clean_env


def test_sagemaker_style_arguments_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    model_args, data_args, training_args = parse_arguments(
        [
            "--group_by_length",
            "False",
            "--overwrite_output_dir",
            "True",
            "--load_best_model_at_end",
            "False",
            "--learning_rate",
            "3e-05",
            "--text_column_names",
            "title, body",
            "--label_column_names",
            "a,b",
        ]
    )
    assert training_args.group_by_length is False
    assert training_args.overwrite_output_dir is True
    assert training_args.load_best_model_at_end is False
    assert training_args.learning_rate == 3e-5
    assert data_args.column_spec() == ColumnSpec(text_columns=("title", "body"), label_columns=("a", "b"))
    assert model_args.model_name_or_path == "roberta-base"
    assert training_args.output_dir == "outputs/checkpoints"
    assert training_args.metric_for_best_model == "macro_average_precision"


def test_defaults_group_by_length_and_start_the_head_at_the_prior(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    model_args, _, training_args = parse_arguments([])
    assert training_args.group_by_length is True
    assert model_args.head_bias_init == "prior" and model_args.pos_weight == "sqrt"
    assert training_args.eval_strategy == "epoch" and training_args.report_to == []
    assert TRAINING_DEFAULTS["metric_for_best_model"] == BEST_METRIC, "the best checkpoint's metric"


def test_argument_errors_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ArgumentError, match="--max_seq_length: expected at least 8, found 4"):
        parse_arguments(["--max_seq_length", "4"])
    with pytest.raises(SystemExit) as refused:
        parse_arguments(["--pos_weight", "sometimes"])
    assert refused.value.code == 2
    message = capsys.readouterr().err
    assert "argument --pos_weight" in message and "invalid choice: 'sometimes'" in message


def test_an_unknown_or_abbreviated_flag_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--learning_rat=1e-3", "--no_such_flag=1"):
        with pytest.raises(SystemExit) as refused:
            parse_arguments([flag])
        assert refused.value.code == 2, flag
        assert flag.split("=")[0] in capsys.readouterr().err, f"the message must name {flag}"


def test_every_argument_problem_is_reported_at_once() -> None:
    with pytest.raises(ArgumentError) as info:
        parse_arguments(
            [
                "--max_pos_weight=0.5",
                "--max_seq_length=0",
                "--validation_split_size=1.5",
                "--preprocessing_num_workers=0",
                "--encoding=klingon",
                "--text_column_names=label3,label3",
                "--label_column_names=label1,label1,label3",
                "--save_strategy=steps",  # TrainingArguments' own check: best model needs matching strategies
            ]
        )
    assert str(info.value).startswith("9 problem(s) in the arguments:\n  - --max_pos_weight")
    assert info.value.problems[:8] == [
        "--max_pos_weight: expected a number >= 1 (1 means no extra weight), found 0.5",
        "--max_seq_length: expected at least 8, found 0",
        "--validation_split_size: expected a fraction between 0 and 1 (exclusive), found 1.5",
        "--preprocessing_num_workers: expected at least 1, found 0; leave it out to tokenise in the "
        "main process",
        "--text_column_names: column 'label3' is listed more than once; list it once",
        "--label_column_names: column 'label1' is listed more than once; list it once",
        "column 'label3' is in both --text_column_names and --label_column_names; a column is either "
        "text or a label",
        "--encoding: unknown text encoding 'klingon'; for example utf-8, cp1252 or latin-1",
    ]
    assert info.value.problems[8].startswith("--load_best_model_at_end requires the save and eval strategy")
    with pytest.raises(ArgumentError, match="--label_column_names: no column name given"):
        parse_arguments(["--label_column_names", ","])
    with pytest.raises(ArgumentError, match=r"--max_pos_weight: expected a number >= 1 .*found nan"):
        parse_arguments(["--max_pos_weight", "nan"])


@pytest.mark.slow
def test_parsing_arguments_imports_no_scikit_learn_datasets_or_trainer() -> None:
    """train.py reports argument errors before the heavy imports (a fresh interpreter)."""
    code = (
        "import sys, multilabel.training.arguments; "
        "print(sorted(m for m in ('sklearn', 'datasets', 'multilabel.training.metrics', 'multilabel.training.pipeline') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"imported by multilabel.training.arguments: {result.stdout}"


def test_help_shows_the_project_options_first_and_the_trainer_options_on_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        parse_arguments(["--help"])
    assert done.value.code == 0
    short = capsys.readouterr().out
    assert short.startswith("usage: train.py [options]")
    assert (
        short.index("--model_name_or_path")
        < short.index("--label_display_names")
        < short.index("--num_train_epochs")
    )
    assert "--help-all" in short and "--adam_beta1" not in short
    assert len(short.splitlines()) < 180, (
        "the project's options and the common Trainer ones: one page, not 741 lines"
    )
    with pytest.raises(SystemExit) as done:
        parse_arguments(["--help-all"])
    assert done.value.code == 0
    everything = capsys.readouterr().out
    assert "--adam_beta1" in everything and "--label_display_names" in everything


def test_a_misspelt_flag_gets_a_suggestion_and_a_short_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        parse_arguments(["--learning_rat=1e-3", "--num_train_epoch", "3", "--zzzz"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "--learning_rat: did you mean --learning_rate?" in err
    assert "--num_train_epoch: did you mean --num_train_epochs?" in err
    assert "--zzzz: did you mean" not in err
    assert len(err.splitlines()) <= 5, err


def test_the_progress_bar_is_off_without_a_terminal_and_on_sagemaker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from multilabel.training import arguments

    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    monkeypatch.delenv("SM_TRAINING_ENV", raising=False)
    assert parse_arguments([])[2].disable_tqdm is True  # pytest captures stdout: no terminal
    assert parse_arguments(["--disable_tqdm=False"])[2].disable_tqdm is False
    monkeypatch.setattr(arguments, "show_progress_bar", lambda on_sagemaker: not on_sagemaker)
    assert parse_arguments([])[2].disable_tqdm is False
    monkeypatch.setenv("SM_TRAINING_ENV", "{}")
    monkeypatch.setenv("SM_CHECKPOINT_DIR", "outputs/checkpoints")
    assert parse_arguments([])[2].disable_tqdm is True


def test_label_display_names_are_checked_when_parsed(tmp_path: Path) -> None:
    _, data_args, _ = parse_arguments(["--label_display_names", "label1=role::program, label2=c"])
    assert data_args.column_spec().display_names == (("label1", "role::program"), ("label2", "c"))
    _, data_args, _ = parse_arguments([f"--label_display_names={ROOT / 'data' / 'labels.json'}"])
    assert dict(data_args.column_spec().display_names)["label10"] == "works-with::text"
    with pytest.raises(ArgumentError) as info:
        parse_arguments(["--label_display_names", "label1=a,label2=a,label1=b,label3"])
    assert info.value.problems == [
        "--label_display_names: expected column=name pairs separated by commas, found 'label3'; "
        "for example label1=role::program,label2=works-with::text, or a JSON file"
    ]
    with pytest.raises(ArgumentError) as info:
        parse_arguments(["--label_display_names", "label1=a,label2=a,label1=b,label4="])
    assert info.value.problems == [
        "--label_display_names: column 'label4' has an empty name",
        "--label_display_names: column 'label1' is named more than once",
        "--label_display_names: the name 'a' is given to several columns ['label1', 'label2']; "
        "each label needs its own name",
    ]
    bad = tmp_path / "names.json"
    bad.write_text('["not", "an", "object"]')
    with pytest.raises(ArgumentError, match=r"names.json must be a JSON object of label column -> name"):
        parse_arguments([f"--label_display_names={bad}"])
    with pytest.raises(ArgumentError, match=r"cannot read .*missing.json"):
        parse_arguments([f"--label_display_names={tmp_path / 'missing.json'}"])


def test_the_window_overlap_bound_is_the_one_the_saved_config_checks() -> None:
    _, data_args, _ = parse_arguments(
        ["--max_seq_length", "64", "--max_windows", "3", "--window_overlap", "31"]
    )
    assert data_args.window_overlap == 31
    with pytest.raises(ArgumentError, match=r"--window_overlap: expected 0 to 31 tokens .* found 32"):
        parse_arguments(["--max_seq_length", "64", "--max_windows", "3", "--window_overlap", "32"])
