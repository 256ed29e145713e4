"""multilabel.sagemaker.training_job through the real SageMaker SDK and boto3, against the moto
AWS API emulator running as a server on 127.0.0.1 (the dry run needs none)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pytest

from multilabel.core.errors import DataValidationError
from multilabel.core.metric_names import metric_definitions
from multilabel.sagemaker.session import LaunchError, make_session
from multilabel.sagemaker.training_job import (
    TrainConfig,
    dry_run_request,
    job_hyperparameters,
    train,
    validate_local_data,
)
from tests.conftest import SageMakerRun
from tests.helpers import DATA, LABELS, write_csv
from tests.model_server import free_port
from tests.moto_aws import (
    AWS_ENV,
    BUCKET,
    REGION,
    ROLE,
    TRAINING_IMAGE,
    capturing_session,
    s3_keys,
    tar_names,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def full_config(**overrides) -> TrainConfig:
    config = TrainConfig(
        files={
            "train": str(DATA / "train.csv"),
            "validation": str(DATA / "validation.csv"),
            "test": str(DATA / "test.csv"),
        },
        role=ROLE,
        instance_type="ml.g5.2xlarge",
        instance_count=2,
        hyperparameters={"num_train_epochs": 3, "learning_rate": 3e-5, "group_by_length": True},
        spot=True,
        max_run=3600,
        distributed=True,
        tags={"project": "tags"},
        subnets=["subnet-0abc"],
        security_group_ids=["sg-0abc"],
        volume_kms_key="arn:aws:kms:us-east-1:123456789012:key/volume",
        output_kms_key="arn:aws:kms:us-east-1:123456789012:key/output",
        wait=False,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.mark.usefixtures("aws")
def test_train_uploads_and_sends_the_complete_request() -> None:
    captured: dict = {}
    name = train(capturing_session(captured), full_config())
    request = captured["CreateTrainingJob"]
    assert request["TrainingJobName"] == name
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith(TRAINING_IMAGE)
    hps = {k: json.loads(v) for k, v in request["HyperParameters"].items()}
    assert hps["num_train_epochs"] == 3 and hps["learning_rate"] == 3e-5 and hps["group_by_length"] is True
    assert hps["text_column_names"] == "casePart1,casePart2" and hps["sagemaker_program"] == "train.py"
    assert hps["sagemaker_torch_distributed_enabled"] is True
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }
    assert set(channels) == {"train", "validation", "test"}
    assert channels["train"] == f"s3://{BUCKET}/{name}/data/train/train.csv"
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/{name}/checkpoints",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert request["VpcConfig"] == {"Subnets": ["subnet-0abc"], "SecurityGroupIds": ["sg-0abc"]}
    assert request["ResourceConfig"]["VolumeKmsKeyId"].endswith("key/volume")
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert request["OutputDataConfig"]["KmsKeyId"].endswith("key/output")
    assert {"Key": "project", "Value": "tags"} in request["Tags"]
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions(LABELS, test=True)

    # The data and only the job's own source landed in S3.
    keys = s3_keys(name)
    assert f"{name}/data/train/train.csv" in keys and f"{name}/data/test/test.csv" in keys
    source_key = json.loads(request["HyperParameters"]["sagemaker_submit_directory"]).split(f"{BUCKET}/", 1)[
        1
    ]
    names = tar_names(source_key)
    package = {n for n in names if n.startswith("multilabel/")}
    assert names - package == {"train.py", "inference.py", "requirements.txt"}
    assert package and all(n.endswith(".py") for n in package)


def test_metric_definitions_match_the_real_training_log(sm_run: SageMakerRun) -> None:
    """Each regex finds its number in the log train.py wrote in this session."""
    log = sm_run.stdout
    for definition in metric_definitions(LABELS, test=True):
        values = re.findall(definition["Regex"], log)
        assert values, f"{definition['Name']} never matched"
        float(values[-1])
    # ' loss=' is the training loss, not eval_loss or train_loss.
    assert all(
        re.search(r"step=\d+ loss=", line) for line in log.splitlines() if re.search(" loss=[0-9]", line)
    )


@pytest.mark.usefixtures("aws")
def test_custom_image_replaces_the_hugging_face_one() -> None:
    captured: dict = {}
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/multilabel:0.1.0"
    train(capturing_session(captured), full_config(image_uri=image, spot=False, distributed=False))
    assert captured["CreateTrainingJob"]["AlgorithmSpecification"]["TrainingImage"] == image
    assert "CheckpointConfig" not in captured["CreateTrainingJob"]


@pytest.mark.usefixtures("aws")
def test_user_errors_say_how_to_fix_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = capturing_session({})
    with pytest.raises(LaunchError, match=r"no execution role: pass --role"):
        train(session, full_config(role=None))
    with pytest.raises(LaunchError, match=r"role 'admin' is not an IAM role ARN"):
        train(session, full_config(role="admin"))
    with pytest.raises(
        LaunchError, match=r"instance type 'ml.g5.huge' does not exist for this use; for example \['ml.g5"
    ):
        train(session, full_config(instance_type="ml.g5.huge"))

    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket="far-away", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    far = make_session(bucket="far-away", boto_session=boto3.Session(region_name=REGION))
    with pytest.raises(
        LaunchError, match=r"bucket far-away is in eu-west-1, but the session is in us-east-1"
    ):
        train(far, full_config())
    missing = make_session(bucket="no-such-bucket", boto_session=boto3.Session(region_name=REGION))
    with pytest.raises(LaunchError, match=r"bucket no-such-bucket does not exist"):
        train(missing, full_config())

    bad = write_csv(tmp_path / "bad.csv", [["text", "pair", 2, *[0] * 9]])
    with pytest.raises(DataValidationError, match=r"column 'label1', row 1 \(1 in all\): expected 0/1"):
        train(session, full_config(files={"train": str(bad)}))
    assert s3_keys() == []  # nothing was uploaded

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    no_credentials = make_session(bucket=BUCKET, boto_session=boto3.Session(region_name=REGION))
    with pytest.raises(LaunchError, match=r"no AWS credentials found: run `aws configure`"):
        train(no_credentials, full_config())


def test_dry_run_request_is_what_train_would_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials, every AWS address a closed port: the request is still complete."""
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    config = full_config(wait=True)
    request = dry_run_request(config, REGION, "dry-run-bucket")
    assert config.wait is True  # the dry run waits for nothing, and leaves the config as it was
    assert request["RoleArn"] == ROLE
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith(TRAINING_IMAGE)
    assert request["EnableManagedSpotTraining"] is True
    name = request["TrainingJobName"]
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://dry-run-bucket/{name}/checkpoints"
    channels = {c["ChannelName"] for c in request["InputDataConfig"]}
    assert channels == {"train", "validation", "test"}


def test_display_names_from_a_local_file_travel_inline_and_name_the_metrics(tmp_path: Path) -> None:
    names = tmp_path / "labels.json"
    names.write_text('{"label1": "works-with::text", "label2": "role::program"}', encoding="utf-8")
    config = TrainConfig(
        files={"train": str(DATA / "train.csv")}, hyperparameters={"label_display_names": str(names)}
    )
    sent = job_hyperparameters(config)["label_display_names"]
    assert json.loads(sent) == {"label1": "works-with::text", "label2": "role::program"}, (
        "the job cannot read a local file: the names must travel inline"
    )
    schema = validate_local_data(config.files, config.column_spec(), config.label_format)
    assert schema is not None and schema.label_names[:2] == ("works-with::text", "role::program"), (
        "the metric definitions are built from these label names"
    )
