"""launch.py and multilabel.sagemaker_job through the real SageMaker SDK and boto3,
against the moto AWS API emulator running as a server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

import launch
from multilabel import sagemaker_job as job
from multilabel.artifact import pack_model
from multilabel.metric_names import metric_definitions
from multilabel.schema import DataValidationError
from tests.conftest import SageMakerRun
from tests.helpers import DATA, LABELS, read_csv, write_csv
from tests.model_server import free_port

pytestmark = pytest.mark.integration

REGION = "us-east-1"
BUCKET = "multilabel-test-bucket"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",  # never look for instance credentials off this machine
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
}
TRAINING_IMAGE = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/huggingface-pytorch-training:2.8.0-transformers4.56.2-gpu-py312"
INFERENCE_IMAGE = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/huggingface-pytorch-inference:2.6.0-transformers4.51.3-cpu-py312"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**AWS_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def aws(moto_url: str) -> Iterator[str]:
    """A fresh emulated account with the test bucket."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"))
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    yield moto_url


def capturing_session(captured: dict) -> object:
    """A SageMaker session whose client hands each request's parameters to `captured`."""
    boto_session = boto3.Session(region_name=REGION)

    def keep(params, model, **_):
        captured[model.name] = json.loads(json.dumps(params, default=str))

    boto_session.events.register("provide-client-params.sagemaker.*", keep)
    return job.make_session(bucket=BUCKET, boto_session=boto_session)


def s3_keys(prefix: str = "") -> list[str]:
    response = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in response.get("Contents", []))


def tar_names(key: str) -> set[str]:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


def upload_model(sm_run: SageMakerRun, tmp_path: Path, key: str) -> str:
    """The session's trained model, packed as model.tar.gz, at s3://BUCKET/key."""
    archive = pack_model(sm_run.model_dir, tmp_path / "model.tar.gz")
    boto3.client("s3", region_name=REGION).upload_file(str(archive), BUCKET, key)
    return f"s3://{BUCKET}/{key}"


def queue_endpoint_answer(moto_url: str, results: list) -> None:
    """moto answers the next invocation with this body (its endpoints run no model)."""
    queue = {"results": [{"Body": json.dumps(results), "ContentType": "application/json"}]}
    request = urllib.request.Request(
        f"{moto_url}/moto-api/static/sagemaker/endpoint-results",
        data=json.dumps(queue).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request)


def full_config(**overrides) -> job.TrainConfig:
    config = job.TrainConfig(
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


def test_train_uploads_and_sends_the_complete_request(aws: str) -> None:
    captured: dict = {}
    name = job.train(capturing_session(captured), full_config())
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


def test_requested_versions_are_checked() -> None:
    assert job.container_versions("training") == job.ContainerVersions("4.56.2", "2.8.0", "py312")
    assert job.container_versions("inference") == job.ContainerVersions("4.51.3", "2.6.0", "py312")
    with pytest.raises(job.LaunchError, match=r"no Hugging Face training container for transformers 9.9.9"):
        job.container_versions("training", "9.9.9")
    with pytest.raises(
        job.LaunchError, match=r"transformers 4.56.2 has no training container with PyTorch 2.1.0"
    ):
        job.container_versions("training", "4.56.2", "2.1.0")
    with pytest.raises(job.LaunchError, match=r"has no py310 training image"):
        job.container_versions("training", "4.56.2", "2.8", "py310")


def test_custom_image_replaces_the_hugging_face_one(aws: str) -> None:
    captured: dict = {}
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/multilabel:0.1.0"
    job.train(capturing_session(captured), full_config(image_uri=image, spot=False, distributed=False))
    assert captured["CreateTrainingJob"]["AlgorithmSpecification"]["TrainingImage"] == image
    assert "CheckpointConfig" not in captured["CreateTrainingJob"]


def test_deploy_predict_delete(aws: str, sm_run: SageMakerRun, tmp_path: Path) -> None:
    upload_model(sm_run, tmp_path, "trained/model.tar.gz")
    captured: dict = {}
    session = capturing_session(captured)
    predictor = job.deploy(
        session,
        job.DeployConfig(
            model=f"s3://{BUCKET}/trained/model.tar.gz", role=ROLE, endpoint_name="tags", wait=False
        ),
    )
    assert predictor.endpoint_name == "tags"
    sm = boto3.client("sagemaker", region_name=REGION)
    endpoint = sm.describe_endpoint(EndpointName="tags")
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model_name = config["ProductionVariants"][0]["ModelName"]
    container = sm.describe_model(ModelName=model_name)["PrimaryContainer"]
    assert container["Image"].startswith(INFERENCE_IMAGE)
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.xlarge"
    # The repacked artifact carries the handler at code/inference.py, with its package.
    repacked = container["ModelDataUrl"].split(f"{BUCKET}/", 1)[1]
    names = tar_names(repacked)
    assert {"code/inference.py", "code/multilabel/serving.py", "config.json", "model.safetensors"} <= names
    assert "code/train.py" not in names and "code/requirements.txt" not in names

    # predict: moto returns what is queued for the endpoint; here, real handler output.
    from multilabel.serving import Classifier

    records = [{"casePart1": "Perl module for parsing CSV files", "casePart2": ""}]
    expected = Classifier.load(sm_run.model_dir, device="cpu").predict(records)
    queue_endpoint_answer(aws, expected)
    assert job.predict(session, "tags", records) == expected

    assert job.delete(session, "tags") == [
        "endpoint tags",
        f"endpoint config {endpoint['EndpointConfigName']}",
        f"model {model_name}",
    ]
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
    with pytest.raises(job.LaunchError, match="endpoint tags not found"):
        job.delete(session, "tags")


def test_serverless_deploy(aws: str, sm_run: SageMakerRun, tmp_path: Path) -> None:
    upload_model(sm_run, tmp_path, "m/model.tar.gz")
    job.deploy(
        capturing_session({}),
        job.DeployConfig(
            model=f"s3://{BUCKET}/m/model.tar.gz",
            role=ROLE,
            endpoint_name="sl",
            serverless_memory_mb=4096,
            wait=False,
        ),
    )
    sm = boto3.client("sagemaker", region_name=REGION)
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName="sl")["EndpointConfigName"]
    )
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": 4096,
        "MaxConcurrency": 5,
    }


def test_user_errors_say_how_to_fix_them(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = capturing_session({})
    with pytest.raises(job.LaunchError, match=r"no execution role: pass --role"):
        job.train(session, full_config(role=None))
    with pytest.raises(job.LaunchError, match=r"role 'admin' is not an IAM role ARN"):
        job.train(session, full_config(role="admin"))
    with pytest.raises(
        job.LaunchError, match=r"instance type 'ml.g5.huge' does not exist for this use; for example \['ml.g5"
    ):
        job.train(session, full_config(instance_type="ml.g5.huge"))

    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket="far-away", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    far = job.make_session(bucket="far-away", boto_session=boto3.Session(region_name=REGION))
    with pytest.raises(
        job.LaunchError, match=r"bucket far-away is in eu-west-1, but the session is in us-east-1"
    ):
        job.train(far, full_config())
    missing = job.make_session(bucket="no-such-bucket", boto_session=boto3.Session(region_name=REGION))
    with pytest.raises(job.LaunchError, match=r"bucket no-such-bucket does not exist"):
        job.train(missing, full_config())

    bad = write_csv(tmp_path / "bad.csv", [["text", "pair", 2, *[0] * 9]])
    with pytest.raises(DataValidationError, match=r"column 'label1', row 1 \(1 in all\): expected 0/1"):
        job.train(session, full_config(files={"train": str(bad)}))
    assert s3_keys() == []  # nothing was uploaded

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    no_credentials = job.make_session(bucket=BUCKET, boto_session=boto3.Session(region_name=REGION))
    with pytest.raises(job.LaunchError, match=r"no AWS credentials found: run `aws configure`"):
        job.train(no_credentials, full_config())


def test_cli_reports_errors_and_exits_2(
    aws: str, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    code = launch.main(["train", "--train", str(DATA / "train.csv"), "--bucket", BUCKET, "--no-wait"])
    assert code == 2
    assert "no execution role" in caplog.text
    assert (
        launch.main(["deploy", "--model", "job-that-does-not-exist", "--role", ROLE, "--bucket", BUCKET]) != 0
    )


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


def test_batch_transform_job(aws: str, sm_run: SageMakerRun, tmp_path: Path) -> None:
    upload_model(sm_run, tmp_path, "m/model.tar.gz")
    captured: dict = {}
    session = capturing_session(captured)
    job.deploy(
        session,
        job.DeployConfig(model=f"s3://{BUCKET}/m/model.tar.gz", role=ROLE, endpoint_name="b", wait=False),
    )
    model_name = captured["CreateModel"]["ModelName"]
    name = job.batch_transform(
        session, model_name, f"s3://{BUCKET}/in/records.jsonl", f"s3://{BUCKET}/out/", wait=False
    )
    request = captured["CreateTransformJob"]
    assert request["TransformJobName"] == name and request["ModelName"] == model_name
    assert request["TransformInput"]["ContentType"] == "application/jsonlines"
    assert request["TransformInput"]["SplitType"] == "Line"
    assert request["TransformOutput"] == {
        "S3OutputPath": f"s3://{BUCKET}/out/",
        "Accept": "application/jsonlines",
        "AssembleWith": "Line",
    }
    assert request["BatchStrategy"] == "MultiRecord"


def test_launch_imports_without_torch_or_transformers() -> None:
    import subprocess
    import sys

    code = "import sys; sys.modules.update(torch=None, transformers=None); import launch; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(launch.__file__).parent
    )
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


NOTEBOOK = Path(launch.__file__).parent / "notebooks" / "launch.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_runs_top_to_bottom(aws: str, sm_run: SageMakerRun, tmp_path: Path) -> None:
    """The launch notebook, executed by a real kernel against the emulated AWS account."""
    import nbformat
    from nbclient import NotebookClient

    from multilabel.serving import Classifier

    upload_model(sm_run, tmp_path, "m/model.tar.gz")
    # The emulated endpoint answers with what the real handler says about the same rows.
    records = [
        {"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in read_csv(DATA / "test.csv")[:5]
    ]
    results = Classifier.load(sm_run.model_dir, device="cpu").predict(records)
    queue_endpoint_answer(aws, results)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source += (
        f"\nROLE = {ROLE!r}\nBUCKET = {BUCKET!r}\nREGION = {REGION!r}\nDATA_DIR = {str(DATA)!r}\n"
        f"WAIT = False\nMODEL_DATA = 's3://{BUCKET}/m/model.tar.gz'\n"
    )
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()

    def text_of(cell) -> str:
        return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs)

    outputs = [text_of(c) for c in notebook.cells if c.cell_type == "code"]
    assert "indicator format, 10 labels: label1, label2" in outputs[2]
    assert "multilabel-" in outputs[3]  # the training job's name
    assert "'multilabel-demo'" in outputs[5]
    table = outputs[6]
    assert all(r["labels"][0] in table for r in results if r["labels"])
    assert "endpoint multilabel-demo" in outputs[7]
    assert boto3.client("sagemaker", region_name=REGION).list_endpoints()["Endpoints"] == []
