"""A trained model used without an endpoint: `train.py --do_train False` and `Classifier.predict`.

The refusals run in-process on a hand-written model directory (they come before any
weights are read); the rest score the session's trained tiny model (`sm_run`) and compare
with what its training run wrote.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

import multilabel.training.pipeline  # noqa: F401  # imported by train.main; loaded at collection, not in a test
import train
from multilabel.core.artifact import ClassifierConfig
from tests.conftest import SageMakerRun
from tests.helpers import DATA, HEADER, LABELS, files_under, read_csv, run_train, write_csv

TEXT = ("casePart1", "casePart2")


@pytest.fixture(autouse=True)
def keep_pytest_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """train.main reconfigures the root logger; caplog needs pytest's handlers kept."""
    monkeypatch.setattr(train, "configure_logging", lambda *args, **kwargs: None)


def checksums(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def without_labels(path: Path, rows: int | None = None) -> Path:
    """test.csv with its text columns only: data to predict, not to score."""
    out = path / "unlabelled.csv"
    return write_csv(out, [[r[c] for c in TEXT] for r in read_csv(DATA / "test.csv")[:rows]], header=TEXT)


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    """The files a refusal reads: config.json and classifier_config.json (no weights)."""
    root = tmp_path / "model"
    root.mkdir()
    config = {"problem_type": "multi_label_classification", "id2label": dict(enumerate(LABELS))}
    (root / "config.json").write_text(json.dumps(config))
    ClassifierConfig(TEXT, dict.fromkeys(LABELS, 0.5), 64, "longest_first", "indicator", tuple(LABELS)).save(
        root
    )
    return root


def test_a_folder_that_is_not_a_trained_model_is_refused(
    tmp_path: Path, fake_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    common = [
        "--do_train=False",
        f"--validation_file={DATA / 'validation.csv'}",
        f"--output_data_dir={tmp_path / 'o'}",
    ]
    assert train.main(common) == 2  # --model_name_or_path defaults to roberta-base
    assert "--model_name_or_path must be the --model_dir that train.py wrote" in caplog.text
    assert "roberta-base is not a directory" in caplog.text
    (fake_model / "classifier_config.json").unlink()
    assert train.main([*common, f"--model_name_or_path={fake_model}"]) == 2
    assert "classifier_config.json: missing; this model directory was not written by train.py" in caplog.text
    assert not (tmp_path / "o").exists()


def test_nothing_to_do_and_a_missing_test_file_are_refused(
    tmp_path: Path, fake_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = ["--do_train=False", f"--model_name_or_path={fake_model}", f"--output_data_dir={tmp_path / 'o'}"]
    assert train.main(args) == 2
    assert "--do_train False: nothing to do; pass --do_eval with --validation_file" in caplog.text
    assert train.main([*args, "--do_predict"]) == 2
    assert "--do_predict: no test file; pass --test_file" in caplog.text


def test_files_whose_columns_do_not_match_the_model_exit_2_naming_the_column(
    tmp_path: Path, fake_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    renamed = write_csv(tmp_path / "renamed.csv", [["a", "b", *[0] * 10]], header=["title", *HEADER[1:]])
    some_labels = write_csv(tmp_path / "some.csv", [["a", "b", 1]], header=[*TEXT, "label1"])
    args = ["--do_train=False", f"--model_name_or_path={fake_model}", f"--output_data_dir={tmp_path / 'o'}"]
    assert train.main([*args, f"--validation_file={renamed}"]) == 2
    assert f"{renamed}: missing column(s) ['casePart1']: the model in {fake_model} reads" in caplog.text
    assert train.main([*args, "--do_predict", f"--test_file={some_labels}"]) == 2
    assert f"{some_labels}: missing label column(s) ['label2'," in caplog.text
    assert train.main([*args, "--text_column_names=title,body", f"--validation_file={renamed}"]) == 2
    assert "--text_column_names title,body: the model in" in caplog.text
    assert not (tmp_path / "o").exists(), "refused before anything was written"


def test_scoring_into_a_training_runs_results_is_refused_and_keeps_them(
    tmp_path: Path, fake_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Training and scoring share the local default `outputs/data`: a prediction run must
    not silently delete what the training run measured there."""
    out = tmp_path / "data"
    out.mkdir()
    kept = {"train_results.json": "{}", "eval_results.json": "{}", "validation_predictions.csv": "row\n"}
    for name, text in kept.items():
        (out / name).write_text(text)
    (out / "notes.txt").write_text("mine")
    args = [
        "--do_train=False",
        f"--model_name_or_path={fake_model}",
        "--do_predict",
        f"--test_file={DATA / 'test.csv'}",
        f"--output_data_dir={out}",
    ]
    assert train.main(args) == 2
    assert (
        f"--output_data_dir {out} holds a training run's results (eval_results.json, train_results.json, "
        "validation_predictions.csv), which this run would replace; choose another --output_data_dir"
    ) in caplog.text
    assert "or pass --overwrite_output_dir to replace them" in caplog.text
    assert {p.name: p.read_text() for p in out.iterdir()} == {**kept, "notes.txt": "mine"}


def test_keep_checkpoints_flag() -> None:
    from multilabel.training.arguments import parse_arguments

    assert parse_arguments([])[1].keep_checkpoints is None  # local: removed, SageMaker: kept
    assert parse_arguments(["--keep_checkpoints", "True"])[1].keep_checkpoints is True
    assert parse_arguments(["--keep_checkpoints", "False"])[1].keep_checkpoints is False
    assert parse_arguments([])[2].do_train, "train.py trains unless --do_train False"


@pytest.mark.slow
def test_eval_and_predict_through_the_cli_reproduce_the_training_run(
    sm_run: SageMakerRun, tmp_path: Path
) -> None:
    """Saved thresholds, head as trained: the training run's eval results and test
    probabilities, from a test file without labels; the model folder byte for byte as it was."""
    before = checksums(sm_run.model_dir)
    test = without_labels(tmp_path)
    out = tmp_path / "scored"
    result = run_train(
        [
            "--do_train=False",
            f"--model_name_or_path={sm_run.model_dir}",
            f"--validation_file={DATA / 'validation.csv'}",
            "--do_predict",
            f"--test_file={test}",
            f"--output_data_dir={out}",
        ],
        cwd=tmp_path,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert files_under(out) == {
        "all_results.json",
        "eval_results.json",
        "validation_predictions.csv",
        "test_predictions.csv",
        "label_report.md",
        "label_report.png",
    }, "no test metrics without test labels"
    trained = json.loads((sm_run.output_data_dir / "eval_results.json").read_text())
    assert json.loads((out / "eval_results.json").read_text()) == trained
    # The training run's per-row test predictions, probabilities and decided labels alike; the
    # training run's file also holds the true labels, which this unlabelled file cannot give.
    trained_rows = read_csv(sm_run.output_data_dir / "test_predictions.csv")
    assert all(row.pop("true_labels") is not None for row in trained_rows)
    assert read_csv(out / "test_predictions.csv") == trained_rows
    assert checksums(sm_run.model_dir) == before
    assert not (tmp_path / "outputs").exists(), "no checkpoints, no model written"
    assert "Training" not in log and "classification bias initialised" not in log


@pytest.mark.slow
def test_predict_on_a_labelled_test_file_writes_its_metrics(
    sm_run: SageMakerRun, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "scored"
    out.mkdir()
    args = [
        "--do_train=False",
        f"--model_name_or_path={sm_run.model_dir}",
        "--do_predict",
        f"--test_file={DATA / 'test.csv'}",
        f"--output_data_dir={out}",
        f"--output_dir={tmp_path / 'checkpoints'}",
        f"--model_dir={tmp_path / 'model'}",
    ]
    # An earlier scoring run's results: replaced, not mixed with these.
    (out / "validation_predictions.csv").write_text("row\n")
    assert train.main(args) == 0, caplog.text[-3000:]
    assert not (out / "validation_predictions.csv").exists()
    # A training run's: replaced only as --overwrite_output_dir asks, and the log says so.
    (out / "train_results.json").write_text("{}")
    code = train.main([*args, "--overwrite_output_dir"])
    assert code == 0, caplog.text[-3000:]
    assert f"--overwrite_output_dir: replacing a training run's results in {out}: " in caplog.text
    assert files_under(out) == {
        "all_results.json",
        "test_results.json",
        "test_predictions.csv",
        "label_report.md",
        "label_report.png",
    }
    trained = json.loads((sm_run.output_data_dir / "test_results.json").read_text())
    assert json.loads((out / "test_results.json").read_text()) == trained
    assert "on the test set (100 rows)" in (out / "label_report.md").read_text()
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "model").exists()
    assert f"--model_dir {tmp_path / 'model'} is not used with --do_train False" in caplog.text


@pytest.mark.slow
def test_the_training_run_saved_how_its_labels_read(sm_run: SageMakerRun) -> None:
    config = ClassifierConfig.load(sm_run.model_dir)
    assert (config.label_format, config.label_columns) == ("indicator", tuple(LABELS))


@pytest.mark.slow
def test_classifier_predict_takes_texts_or_records_checked_as_the_endpoint_does(
    sm_run: SageMakerRun, tmp_path: Path
) -> None:
    from multilabel.serving.classifier import Classifier
    from multilabel.serving.request_codec import RequestError

    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    texts = [r["casePart1"] for r in read_csv(DATA / "test.csv")[:5]]
    from_texts = classifier.predict(texts)
    assert from_texts == classifier.predict([{"casePart1": t} for t in texts])
    assert from_texts == classifier.predict([{"casePart1": t, "casePart2": ""} for t in texts])
    assert set(from_texts[0]) == {"labels", "scores"} and list(from_texts[0]["scores"]) == LABELS
    assert classifier.predict([]) == []
    with pytest.raises(TypeError, match="wrap a single one in a list"):
        classifier.predict("one text")
    with pytest.raises(RequestError, match=r"^inputs\[1\]: unknown field\(s\) \['title'\]; the model reads"):
        classifier.predict(["fine", {"casePart1": "x", "title": "y"}])
    with pytest.raises(RequestError, match=r"^inputs\[0\]: field 'casePart1' must be a string, found int"):
        classifier.predict([{"casePart1": 3}])

    # A title,body model refuses the other model's field instead of scoring empty text.
    pair = Path(shutil.copytree(sm_run.model_dir, tmp_path / "title-body"))
    config = json.loads((pair / "classifier_config.json").read_text())
    (pair / "classifier_config.json").write_text(json.dumps({**config, "text_columns": ["title", "body"]}))
    titled = Classifier.load(pair, device="cpu")
    with pytest.raises(
        RequestError, match=r"unknown field\(s\) \['casePart1'\]; the model reads \['title', 'body'\]"
    ):
        titled.predict([{"casePart1": "Perl module"}])
    assert titled.predict(["Perl module"]) == titled.predict([{"title": "Perl module", "body": ""}])
