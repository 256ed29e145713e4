"""A user's own CSV as it is: an id column, a subject that is often empty, a body, and one
`tags` column of labels joined by '|' (data/tickets/). It trains, scores, predicts through
the Python API, serves locally and dry-runs on SageMaker with no reshaping, and its ids
reach every output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from multilabel.classifier import Classifier, Options  # the public path
from multilabel.serving import serve
from multilabel.serving.request_codec import RequestError
from tests.helpers import DATA, FAST_ARGS, ROOT, clean_env, read_csv, run_train, write_csv
from tests.model_server import free_port, post

TICKETS = DATA / "tickets"
TICKET_FLAGS = [
    "--text_column_names=subject,body",
    "--label_column_names=tags",
    "--label_separator=|",
    "--id_column=ticket_id",
]
TAGS = sorted(
    {
        t
        for f in ("train", "validation")
        for r in read_csv(TICKETS / f"{f}.csv")
        for t in r["tags"].split("|")
        if t
    }
)


def ticket_run(model: Path, base: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_train(
        [
            f"--model_name_or_path={model}",
            f"--train_file={TICKETS / 'train.csv'}",
            f"--test_file={TICKETS / 'test.csv'}",
            f"--model_dir={base / 'model'}",
            f"--output_data_dir={base / 'data'}",
            f"--output_dir={base / 'checkpoints'}",
            "--num_train_epochs=1",
            *FAST_ARGS,
            *TICKET_FLAGS,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def tickets_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One training run on the tickets, validation split off train automatically."""
    base = tmp_path_factory.mktemp("tickets")
    result = ticket_run(tiny_model, base)
    assert result.returncode == 0, result.stderr[-4000:]
    return base, result.stderr


def test_the_ticket_files_are_what_the_script_writes(tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(DATA, copy, ignore=shutil.ignore_patterns("tickets"))
    shutil.copy(ROOT / "scripts" / "make_tickets.py", tmp_path / "make_tickets.py")
    (tmp_path / "make_tickets.py").write_text(
        (tmp_path / "make_tickets.py")
        .read_text()
        .replace("Path(__file__).resolve().parent.parent", "Path(__file__).parent")
    )
    subprocess.run([sys.executable, str(tmp_path / "make_tickets.py")], check=True, timeout=60)
    for split in ("train", "validation", "test"):
        assert (copy / "tickets" / f"{split}.csv").read_bytes() == (TICKETS / f"{split}.csv").read_bytes(), (
            split
        )


@pytest.mark.slow
def test_tickets_train_with_tags_and_ids_in_every_prediction_file(tickets_run: tuple[Path, str]) -> None:
    base, _ = tickets_run
    config = json.loads((base / "model" / "config.json").read_text())
    assert sorted(config["id2label"].values()) == TAGS, "one label per tag, never one per combination"
    saved = json.loads((base / "model" / "classifier_config.json").read_text())
    assert (saved["label_separator"], saved["id_column"], saved["text_columns"]) == (
        "|",
        "ticket_id",
        ["subject", "body"],
    )
    test_rows = read_csv(TICKETS / "test.csv")
    predictions = read_csv(base / "data" / "test_predictions.csv")
    assert list(predictions[0])[:4] == ["row", "ticket_id", "predicted_labels", "true_labels"]
    assert [p["ticket_id"] for p in predictions] == [r["ticket_id"] for r in test_rows]
    assert [set(p["true_labels"].split("|")) - {""} for p in predictions] == [
        set(r["tags"].split("|")) - {""} for r in test_rows
    ]
    # The automatic validation split keeps each row's id, traceable to the training file.
    train_ids = {r["ticket_id"]: r["tags"] for r in read_csv(TICKETS / "train.csv")}
    validation = read_csv(base / "data" / "validation_predictions.csv")
    assert len(validation) >= 20 and all(
        set(v["true_labels"].split("|")) - {""} == set(train_ids[v["ticket_id"]].split("|")) - {""}
        for v in validation
    )


@pytest.mark.slow
def test_scoring_a_ticket_file_carries_the_ids_and_the_true_labels(
    tickets_run: tuple[Path, str], tmp_path: Path
) -> None:
    base, _ = tickets_run
    rows = read_csv(TICKETS / "test.csv")[:12]
    header = ["ticket_id", "subject", "body"]
    unlabelled = write_csv(tmp_path / "new.csv", [[r[c] for c in header] for r in rows], header)
    result = run_train(
        [
            "--do_train=False",
            "--do_predict=True",
            f"--model_name_or_path={base / 'model'}",
            f"--test_file={unlabelled}",
            f"--output_data_dir={tmp_path / 'scored'}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scored = read_csv(tmp_path / "scored" / "test_predictions.csv")
    assert list(scored[0])[:3] == ["row", "ticket_id", "predicted_labels"], (
        "no labels in the file: no true_labels"
    )
    assert [s["ticket_id"] for s in scored] == [r["ticket_id"] for r in rows]


@pytest.mark.slow
def test_the_python_api_carries_ids_and_accepts_a_missing_subject(tickets_run: tuple[Path, str]) -> None:
    base, _ = tickets_run
    classifier = Classifier.load(base / "model", device="cpu")
    rows = read_csv(TICKETS / "test.csv")[:6]
    results = classifier.predict([{"ticket_id": r["ticket_id"], "body": r["body"]} for r in rows])
    assert [r["ticket_id"] for r in results] == [r["ticket_id"] for r in rows]
    assert all(set(r["labels"]) <= set(TAGS) for r in results)
    assert "ticket_id" not in classifier.predict([{"body": "no id"}])[0], "a record without an id gets none"
    # Options are checked by the endpoint's rules: one threshold for ten labels once broadcast.
    with pytest.raises(RequestError, match=r"Options.thresholds: expected 10 thresholds, one per label"):
        classifier.predict([{"body": "x"}], Options([0.3]))
    with pytest.raises(RequestError, match=r"parameter 'top_k' must be a positive integer, found -1"):
        classifier.predict([{"body": "x"}], Options([0.5] * 10, top_k=-1))
    assert len(classifier.predict([{"body": "x"}], {"threshold": 0.0})[0]["labels"]) == 10
    with pytest.raises(
        RequestError,
        match=r"unknown field\(s\) \['id'\]; the model reads \['subject', 'body'\] and the id field 'ticket_id'",
    ):
        classifier.predict([{"id": 1, "body": "x"}])


@pytest.fixture
def lite_server(tickets_run: tuple[Path, str]) -> Iterator[str]:
    base, _ = tickets_run
    server = serve.make_lite_server(base / "model", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_the_lite_local_server_answers_as_the_endpoint(lite_server: str) -> None:
    body = json.dumps(
        {"inputs": [{"ticket_id": "T-9", "body": "a perl module"}, {"ticket_id": 10, "subject": "font"}]}
    )
    status, answer = post(f"{lite_server}/invocations", body.encode(), "application/json")
    assert status == 200, answer
    results = json.loads(answer)
    assert [r["ticket_id"] for r in results] == ["T-9", 10]
    status, answer = post(f"{lite_server}/invocations", b'{"inputs": {"title": "x"}}', "application/json")
    assert status == 400
    assert json.loads(answer) == {
        "code": 400,
        "type": "BadRequest",
        "message": "inputs: unknown field(s) ['title']; the model reads ['subject', 'body'] and the id field 'ticket_id'",
    }


@pytest.mark.slow
def test_retraining_names_the_model_it_replaces_and_never_overwrites_its_base(
    tickets_run: tuple[Path, str], tiny_model: Path, tmp_path: Path
) -> None:
    base, _ = tickets_run
    again = tmp_path / "again"
    shutil.copytree(base, again)
    # Continuing from the trained model into a new folder: allowed, and the old folder stays.
    result = ticket_run(again / "model", tmp_path / "continued", "--max_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "continuing from a model trained on the same 10 labels: its head is kept" in result.stdout
    # On other labels, continuing would map the trained head onto them: refused.
    more = [[r["ticket_id"], r["subject"], r["body"], r["tags"]] for r in read_csv(TICKETS / "train.csv")]
    more[0][3] += "|a-new-tag"
    more = write_csv(tmp_path / "more.csv", more, ["ticket_id", "subject", "body", "tags"])
    result = ticket_run(again / "model", tmp_path / "other-labels", f"--train_file={more}")
    assert result.returncode == 2
    assert (
        "must be the same, in the same order; to train on other labels, start from the base encoder"
        in result.stdout
    )
    # Into the folder it starts from: refused before anything is read.
    result = ticket_run(again / "model", again)
    assert result.returncode == 2
    assert (
        f"--model_dir {again / 'model'} and --model_name_or_path {again / 'model'} overlap"
        in result.stdout + result.stderr
    )
    # The same folder again, from the base model: replaced, and the log says which model went.
    result = ticket_run(tiny_model, again, "--max_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"replacing the model in {again / 'model'} (trained " in result.stdout + result.stderr


@pytest.mark.slow
def test_launch_dry_runs_the_tickets_and_checks_hp_column_settings_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--hp label_format / text_column_names / label_column_names once skipped the local check."""
    import launch
    from tests.model_server import free_port
    from tests.moto_aws import AWS_ENV, BUCKET, ROLE

    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing answers: a dry run
    argv = ["train", "--train", str(TICKETS / "train.csv"), "--role", ROLE, "--bucket", BUCKET, "--dry-run"]
    flags = [
        "--text-column-names",
        "subject,body",
        "--label-column-names",
        "tags",
        "--id-column",
        "ticket_id",
    ]
    assert launch.main([*argv, *flags, "--label-separator", "|"]) == 0
    assert launch.main([*argv, *flags]) == 2, "a tags column without its separator"
    assert launch.main([*argv, *flags, "--hp", "label_separator=|"]) == 0, "the separator given as --hp"
    assert launch.main([*argv, *flags, "--label-separator", "|", "--hp", "label_format=indicator"]) == 2
    assert launch.main([*argv, *flags, "--label-separator", "|", "--hp", "text_column_names=title"]) == 2
    assert launch.main([*argv, *flags, "--label-separator", "|", "--hp", "label_column_names=labels"]) == 2


@pytest.mark.slow
@pytest.mark.integration
def test_the_serve_command_runs_the_real_model_server(tickets_run: tuple[Path, str], tmp_path: Path) -> None:
    """`python -m multilabel.serve MODEL_DIR`: Multi Model Server with the toolkit, over the model
    folder as it is (linked, not copied), answering as the endpoint does; Ctrl-C stops it."""
    base, _ = tickets_run
    port, management = free_port(), free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multilabel.serve",
            str(base / "model"),
            "--port",
            str(port),
            "--management-port",
            str(management),
        ],
        cwd=ROOT,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/invocations"
    body = json.dumps({"inputs": [{"ticket_id": "T-1", "body": "a perl module"}, {"subject": "fonts"}]})
    try:
        deadline = time.monotonic() + 240
        status, answer = 0, b""
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, answer = post(url, body.encode(), "application/json", timeout=10)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert status == 200, (tmp_path / "serve.log").read_text()[-3000:]
        results = json.loads(answer)
        assert results[0]["ticket_id"] == "T-1" and "ticket_id" not in results[1]
        status, answer = post(url, b'{"inputs": {"title": "x"}}', "application/json")
        assert status == 400 and "unknown field(s) ['title']" in json.loads(answer)["message"]
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
