"""launch.py, the command line: its flags (built from the configuration dataclasses), its
exit codes and messages, the dry run, and each verb through the real SageMaker SDK and
boto3 against the moto AWS API emulator on 127.0.0.1."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

import launch
from multilabel.data.schema import DEFAULT_TEXT_COLUMNS, LABEL_FORMATS
from multilabel.sagemaker.endpoint import DeployConfig
from multilabel.sagemaker.session import BUCKET_ENV
from multilabel.sagemaker.training_job import TrainConfig
from tests.helpers import DATA, LABELS, ROOT
from tests.model_server import free_port
from tests.moto_aws import AWS_ENV, BUCKET, REGION, ROLE, TRAINING_IMAGE, queue_endpoint_answer

# ---------------------------------------------------------------- the flags


def verb_parsers() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in launch.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_flag_has_help_and_the_help_shows_its_default() -> None:
    parsers = verb_parsers()
    assert list(parsers) == ["train", "deploy", "predict", "batch", "delete"]
    for verb, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[0]
            assert action.help, f"{verb} {flag} has no help"
            if action.default not in (None, False, [], {}):
                assert f"(default: {action.default})" in action.help, f"{verb} {flag}: {action.help}"
    train_help, deploy_help, batch_help = (
        " ".join(parsers[verb].format_help().split()) for verb in ("train", "deploy", "batch")
    )
    assert "(default: casePart1,casePart2)" in train_help and "(default: 86400)" in train_help
    assert "{auto,indicator,names}" in train_help and "(default: ml.g5.2xlarge)" in train_help
    assert "(default: ml.m5.xlarge)" in deploy_help and "(default: ml.m5.xlarge)" in batch_help


def test_each_verb_takes_only_the_flags_it_uses(capsys: pytest.CaptureFixture) -> None:
    flags = {
        verb: {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
        for verb, parser in verb_parsers().items()
    }
    assert "--bucket" in flags["train"] and "--bucket" in flags["deploy"]
    assert "--dry-run" in flags["train"] and "--dry-run" not in flags["deploy"]
    assert flags["delete"] == {"--help", "--region", "--endpoint-name"}
    assert flags["predict"] == {
        "--help",
        "--region",
        "--endpoint-name",
        "--file",
        "--text",
        "--pair",
        "--text-column-names",
        "--id-column",
        "--threshold",
        "--top-k",
        "--max-records",
    }
    assert flags["batch"] == {
        "--help",
        "--region",
        "--model-name",
        "--input",
        "--output",
        "--instance-type",
        "--id-field",
        "--text-column-names",
        "--wait",
        "--no-wait",
    }
    for argv in (["delete", "--endpoint-name", "x"], ["predict", "--endpoint-name", "x"]):
        with pytest.raises(SystemExit) as exit_info:
            launch.build_parser().parse_args([*argv, "--bucket", "b"])
        assert exit_info.value.code == 2
        assert "unrecognized arguments: --bucket b" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        launch.build_parser().parse_args(["delete"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: --endpoint-name" in capsys.readouterr().err


def test_train_flags_map_onto_the_training_config() -> None:
    parse = launch.build_parser().parse_args
    assert launch.train_config(parse(["train"])) == TrainConfig(
        files=dict.fromkeys(("train", "validation", "test"))
    )
    config = launch.train_config(
        parse(
            [
                "train",
                "--train",
                "a.csv",
                "--test",
                "s3://b/test.csv",
                "--role",
                ROLE,
                "--instance-type",
                "ml.p4d.24xlarge",
                "--instance-count",
                "2",
                "--hp",
                "learning_rate=3e-5",
                "--hp",
                "group_by_length=true",
                "--hp",
                "model_name_or_path=roberta-large",
                "--text-column-names",
                "title,body",
                "--label-column-names",
                "tags",
                "--label-format",
                "names",
                "--spot",
                "--max-run",
                "3600",
                "--max-wait",
                "7200",
                "--distributed",
                "--output-path",
                "s3://b/out",
                "--tag",
                "project=tags",
                "--tag",
                "cost=1",
                "--subnet",
                "subnet-1",
                "--subnet",
                "subnet-2",
                "--security-group",
                "sg-1",
                "--volume-kms-key",
                "kv",
                "--output-kms-key",
                "ko",
                "--image-uri",
                "img",
                "--transformers-version",
                "4.56.2",
                "--pytorch-version",
                "2.8",
                "--py-version",
                "py312",
                "--no-wait",
            ]
        )
    )
    assert config == TrainConfig(
        files={"train": "a.csv", "validation": None, "test": "s3://b/test.csv"},
        role=ROLE,
        instance_type="ml.p4d.24xlarge",
        instance_count=2,
        hyperparameters={
            "learning_rate": 3e-5,
            "group_by_length": True,
            "model_name_or_path": "roberta-large",
        },
        text_column_names="title,body",
        label_column_names="tags",
        label_format="names",
        spot=True,
        max_run=3600,
        max_wait=7200,
        distributed=True,
        output_path="s3://b/out",
        tags={"project": "tags", "cost": "1"},  # tags are strings
        subnets=["subnet-1", "subnet-2"],
        security_group_ids=["sg-1"],
        volume_kms_key="kv",
        output_kms_key="ko",
        image_uri="img",
        transformers_version="4.56.2",
        pytorch_version="2.8",
        py_version="py312",
        wait=False,
    )
    # The defaults are the configuration's own, written once.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert defaults["text_column_names"] == ",".join(DEFAULT_TEXT_COLUMNS)
    assert defaults["max_run"] == 24 * 3600
    (label_format,) = [a for a in verb_parsers()["train"]._actions if a.dest == "label_format"]
    assert tuple(label_format.choices) == LABEL_FORMATS


def test_deploy_flags_map_onto_the_endpoint_config() -> None:
    args = launch.build_parser().parse_args(
        [
            "deploy",
            "--model",
            "s3://b/model.tar.gz",
            "--serverless-memory",
            "4096",
            "--serverless-concurrency",
            "2",
            "--env",
            "MULTILABEL_MAX_RECORDS=64",
            "--no-wait",
        ]
    )
    assert launch.config_from(args, DeployConfig) == DeployConfig(
        model="s3://b/model.tar.gz",
        serverless_memory_mb=4096,
        serverless_max_concurrency=2,
        env={"MULTILABEL_MAX_RECORDS": "64"},  # a string, as the container's environment needs
        wait=False,
    )


def test_a_malformed_key_value_flag_exits_2_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    assert launch.main(["train", "--hp", "learning_rate", "--dry-run"]) == 2
    assert "--hp 'learning_rate': expected key=value" in caplog.text
    args = launch.build_parser().parse_args(["deploy", "--model", "m", "--env", "=1"])
    with pytest.raises(launch.LaunchError, match=r"--env '=1': expected key=value"):
        launch.config_from(args, DeployConfig)


def test_predict_reads_records_from_a_file_or_the_flags(tmp_path: Path) -> None:
    parse = launch.build_parser().parse_args
    flags = launch.config_from(
        parse(["predict", "--endpoint-name", "e", "--file", str(DATA / "test.csv")]), launch.PredictFlags
    )
    records = flags.records()
    assert records[0].keys() == {"casePart1", "casePart2"} and len(records) > 1  # text columns only
    lines = tmp_path / "records.jsonl"
    lines.write_text('{"t": "a", "other": 1}\n\n{"t": "b"}\n')
    flags = launch.config_from(
        parse(["predict", "--endpoint-name", "e", "--file", str(lines), "--text-column-names", "t"]),
        launch.PredictFlags,
    )
    assert flags.records() == [{"t": "a"}, {"t": "b"}]
    ticket_file = str(DATA / "tickets" / "test.csv")
    tickets = parse(
        [
            *(
                "predict",
                "--endpoint-name",
                "e",
                "--file",
                ticket_file,
                "--text-column-names",
                "subject,body",
            ),
            *("--id-column", "ticket_id"),
        ]
    )
    records = launch.config_from(tickets, launch.PredictFlags).records()
    assert records[0].keys() == {"subject", "body", "ticket_id"} and records[0]["ticket_id"] == "T-00401"
    flags = launch.config_from(
        parse(["predict", "--endpoint-name", "e", "--text", "x", "--pair", "y", "--threshold", "0.3"]),
        launch.PredictFlags,
    )
    assert flags.records() == [{"casePart1": "x", "casePart2": "y"}]
    assert flags.parameters() == {"threshold": 0.3}
    with pytest.raises(launch.LaunchError, match="predict needs --file or --text"):
        launch.config_from(parse(["predict", "--endpoint-name", "e"]), launch.PredictFlags).records()


# ---------------------------------------------------------------- against the emulator


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_cli_reports_errors_and_exits_2(
    capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    code = launch.main(["train", "--train", str(DATA / "train.csv"), "--bucket", BUCKET, "--no-wait"])
    assert code == 2
    assert "no execution role" in caplog.text
    caplog.clear()
    code = launch.main(["deploy", "--model", "job-that-does-not-exist", "--role", ROLE, "--bucket", BUCKET])
    assert code == 2
    assert "training job job-that-does-not-exist not found" in caplog.text
    assert "pass a job name from `launch.py train` or an s3:// URI of a model.tar.gz" in caplog.text
    assert "Traceback" not in capsys.readouterr().err


def create_endpoint(name: str) -> str:
    """An endpoint in the emulated account (moto runs no model behind it); returns its model's name."""
    sm = boto3.client("sagemaker", region_name=REGION)
    image = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/huggingface-pytorch-inference:2.6.0-cpu"
    sm.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": image, "ModelDataUrl": f"s3://{BUCKET}/m/model.tar.gz"},
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{name}-model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
            }
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
    return f"{name}-model"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_predict_batch_and_delete_need_no_bucket(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With SAGEMAKER_BUCKET unset, the verbs that upload nothing run, and make no bucket."""
    monkeypatch.delenv(BUCKET_ENV, raising=False)
    model_name = create_endpoint("tags")
    capsys.readouterr()

    answer = [{"labels": ["label3"], "scores": {"label3": 0.9}}]
    queue_endpoint_answer(answer)
    assert launch.main(["predict", "--endpoint-name", "tags", "--text", "a text", "--top-k", "1"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == answer

    argv = ["batch", "--model-name", model_name, "--input", f"s3://{BUCKET}/in/records.jsonl"]
    assert launch.main([*argv, "--output", f"s3://{BUCKET}/out/", "--no-wait"]) == 0
    assert capsys.readouterr().out.startswith("transform job: ")

    assert launch.main(["delete", "--endpoint-name", "tags"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "deleted endpoint tags",
        "deleted endpoint config tags-config",
        f"deleted model {model_name}",
    ]
    assert launch.main(["delete", "--endpoint-name", "tags"]) == 2
    assert "endpoint tags not found" in caplog.text and "no S3 bucket" not in caplog.text

    buckets = boto3.client("s3", region_name=REGION).list_buckets()["Buckets"]
    assert [b["Name"] for b in buckets] == [BUCKET]  # the SDK made no default bucket of its own


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_train_and_deploy_still_need_a_bucket(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(BUCKET_ENV, raising=False)
    assert launch.main(["train", "--train", str(DATA / "train.csv"), "--role", ROLE, "--no-wait"]) == 2
    assert f"no S3 bucket: pass --bucket or set {BUCKET_ENV}" in caplog.text
    caplog.clear()
    assert launch.main(["deploy", "--model", f"s3://{BUCKET}/m/model.tar.gz", "--role", ROLE]) == 2
    assert f"no S3 bucket: pass --bucket or set {BUCKET_ENV}" in caplog.text


# ---------------------------------------------------------------- the dry run


@pytest.mark.slow
def test_dry_run_calls_no_aws_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """With every AWS address pointing at a closed port, the request is still printed."""
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    code = launch.main(
        [
            "train",
            "--train",
            str(DATA / "train.csv"),
            "--role",
            ROLE,
            "--bucket",
            BUCKET,
            "--hp",
            "num_train_epochs=2",
            "--spot",
            "--dry-run",
        ]
    )
    assert code == 0
    request = json.loads(capsys.readouterr().out)
    assert request["RoleArn"] == ROLE
    assert request["HyperParameters"]["num_train_epochs"] == "2"
    assert request["EnableManagedSpotTraining"] is True
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith(TRAINING_IMAGE)


@pytest.mark.slow
def test_dry_run_of_an_undecodable_file_exits_2_with_the_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Latin-1 file: exit 2, the file, line and fix in the log, no traceback; --hp encoding reads it."""
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(
        (",".join(["casePart1", "casePart2", *LABELS]) + "\ncaf\xe9,pair" + ",1" * 10 + "\n").encode(
            "latin-1"
        )
    )
    argv = ["train", "--train", str(latin1), "--role", ROLE, "--bucket", BUCKET, "--dry-run"]
    assert launch.main(argv) == 2
    assert f"{latin1}, line 2: byte 0xe9 (byte 4 of the line) is not valid utf-8" in caplog.text
    assert "--encoding" in caplog.text
    assert "Traceback" not in capsys.readouterr().err
    assert launch.main([*argv, "--hp", "encoding=klingon"]) == 2
    assert "--encoding: unknown text encoding 'klingon'" in caplog.text
    assert launch.main([*argv, "--hp", "encoding=latin-1"]) == 0
    out = capsys.readouterr().out  # the SDK prints its config lines on first import
    assert json.loads(out[out.index("{") :])["HyperParameters"]["encoding"] == '"latin-1"'


@pytest.mark.slow
def test_launch_imports_without_torch_or_transformers() -> None:
    code = (
        "import sys; sys.modules.update(torch=None, transformers=None); "
        "import launch, multilabel.sagemaker.notebook_views; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_help_shows_the_examples() -> None:
    result = subprocess.run(
        [sys.executable, "launch.py", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "examples:" in result.stdout
    assert "python launch.py batch --model-name <model>" in result.stdout and "--id-field id" in result.stdout
    assert "python launch.py delete --endpoint-name tags" in result.stdout


# ---------------------------------------------------------------- no surprises, through the real CLI


def launch_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch.py", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def offline_env(**extra: str) -> dict[str, str]:
    """Dummy credentials, every AWS address at a closed port of 127.0.0.1."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    return {**env, **AWS_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", **extra}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_a_misspelt_hyperparameter_exits_2_with_a_suggestion_before_any_upload() -> None:
    from tests.moto_aws import s3_keys

    argv = ["train", "--train", str(DATA / "train.csv"), "--role", ROLE, "--bucket", BUCKET, "--no-wait"]
    result = launch_cli(*argv, "--hp", "num_train_epoch=5")
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        "--hp num_train_epoch: train.py has no argument --num_train_epoch; did you mean num_train_epochs?"
        in (result.stderr)
    )
    result = launch_cli(*argv, "--hp", "learning_rate=fast", "--hp", "num_train_epochs=1")
    assert result.returncode == 2
    assert "argument --learning_rate/--learning-rate: invalid float value: 'fast'" in result.stderr
    result = launch_cli(*argv, "--hp", "max_seq_length=4")
    assert result.returncode == 2
    assert "--max_seq_length: expected at least 8, found 4" in result.stderr
    assert "Traceback" not in result.stderr
    assert s3_keys() == []  # nothing was uploaded
    assert boto3.client("sagemaker", region_name=REGION).list_training_jobs()["TrainingJobSummaries"] == []


@pytest.mark.slow
def test_gpu_only_hyperparameters_pass_for_a_gpu_instance_and_not_for_a_cpu_one() -> None:
    from multilabel.sagemaker.training_job import check_hyperparameters

    before = dict(os.environ)
    check_hyperparameters({"bf16": True, "tf32": True}, ["train"], "ml.g5.2xlarge")
    assert dict(os.environ) == before, (
        "parsing bf16 must not leave this process (and every later training subprocess) in bf16"
    )
    with pytest.raises(launch.LaunchError, match=r"(?s)on ml\.m5\.xlarge: .*bf16"):
        check_hyperparameters({"bf16": True}, ["train"], "ml.m5.xlarge")


@pytest.mark.slow
def test_the_dry_run_says_what_it_would_do_and_shows_no_sdk_notices() -> None:
    env = offline_env()
    argv = ["train", "--train", str(DATA / "train.csv"), "--role", ROLE, "--bucket", BUCKET, "--dry-run"]
    result = launch_cli(*argv, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["RoleArn"] == ROLE  # stdout is the request alone
    assert f"would upload {DATA / 'train.csv'} to s3://{BUCKET}/multilabel-" in result.stderr
    assert "dry run: would start training job multilabel-" in result.stderr
    assert " uploaded " not in result.stderr and "started" not in result.stderr
    output = result.stdout + result.stderr
    for notice in ("sagemaker.config", "telemetry", "Found credentials", "image_uri is not presented"):
        assert notice not in output
    assert len(result.stderr.splitlines()) <= 6, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--train", str(DATA / "train.csv"), "--role", ROLE, "--bucket", BUCKET, "--no-wait"],
        ["predict", "--endpoint-name", "tags", "--text", "a text"],
        ["delete", "--endpoint-name", "tags"],
    ],
    ids=["train", "predict", "delete"],
)
def test_an_unreachable_aws_is_one_line_and_exit_1(argv: list[str]) -> None:
    env = offline_env()
    result = launch_cli(*argv, env=env)
    assert result.returncode == 1, result.stderr[-3000:]
    (error,) = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert f"cannot reach AWS at {env['AWS_ENDPOINT_URL']}" in error and "check the network" in error
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.slow
def test_no_credentials_is_one_line_with_the_fix() -> None:
    env = offline_env()
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    for argv in (["delete", "--endpoint-name", "tags"], ["predict", "--endpoint-name", "t", "--text", "x"]):
        result = launch_cli(*argv, env=env)
        assert result.returncode == 1, result.stderr[-3000:]
        (error,) = [line for line in result.stderr.splitlines() if " ERROR " in line]
        assert "no usable AWS credentials" in error and "aws configure" in error
        assert "Traceback" not in result.stderr
    result = launch_cli(
        "train", "--train", str(DATA / "train.csv"), "--role", ROLE, "--bucket", BUCKET, env=env
    )
    assert result.returncode == 2 and "no AWS credentials found: run `aws configure`" in result.stderr


def test_expired_and_refused_credentials_read_as_one_line() -> None:
    from botocore.exceptions import ClientError

    from multilabel.sagemaker.session import aws_failure_message

    def client_error(code: str, message: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeEndpoint")

    expired = aws_failure_message(client_error("ExpiredTokenException", "The security token expired"))
    assert expired.startswith("AWS credentials have expired (ExpiredTokenException): refresh them")
    invalid = aws_failure_message(client_error("UnrecognizedClientException", "bad token"))
    assert "AWS refused the credentials" in invalid and "aws configure" in invalid
    denied = aws_failure_message(client_error("AccessDeniedException", "not allowed"))
    assert denied.startswith("access denied to DescribeEndpoint (not allowed)")
    try:  # a wrapped error is found in the chain, as boto3's S3 transfers wrap them
        try:
            raise client_error("ExpiredToken", "expired")
        except ClientError as err:
            raise RuntimeError("upload failed") from err
    except RuntimeError as outer:
        assert aws_failure_message(outer).startswith("AWS credentials have expired")
    assert aws_failure_message(ValueError("x")) is None
    assert all("\n" not in m for m in (expired, invalid, denied))


# ---------------------------------------------------------------- predict follows the endpoint's limit


def test_predict_sends_max_records_a_request_and_names_the_endpoint_limit() -> None:
    from types import SimpleNamespace

    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from multilabel.sagemaker.endpoint import predict

    runtime = boto3.client(
        "sagemaker-runtime", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    session = SimpleNamespace(boto_session=SimpleNamespace(client=lambda name: runtime))
    records = [{"casePart1": f"t{i}"} for i in range(5)]
    with Stubber(runtime) as stub:
        for start, stop in ((0, 2), (2, 4), (4, 5)):
            answer = json.dumps([{"labels": []}] * (stop - start)).encode()
            stub.add_response(
                "invoke_endpoint",
                {"Body": StreamingBody(io.BytesIO(answer), len(answer))},
                {
                    "EndpointName": "tags",
                    "ContentType": "application/json",
                    "Accept": "application/json",
                    "Body": json.dumps({"inputs": records[start:stop]}),
                },
            )
        assert len(predict(session, "tags", records, max_records=2)) == 5
    message = (
        'Received client error (400) from primary with message "{"code": 400, "type": '
        '"InternalServerException", "message": "too many records: 256, at most 64 per request '
        '(set MULTILABEL_MAX_RECORDS on the endpoint to change it)"}"'
    )
    with Stubber(runtime) as stub:
        stub.add_client_error("invoke_endpoint", "ModelError", message, http_status_code=424)
        with pytest.raises(
            launch.LaunchError, match=r"at most 64 records a request .* pass --max-records 64"
        ):
            predict(session, "tags", records * 60)
