"""SageMaker: train with the Hugging Face estimator, deploy, predict, batch, clean up.

Runs where the user is (a laptop or a notebook kernel), so it imports the SageMaker SDK
and boto3 but never torch or transformers. launch.py is its command line, and the
launch notebook calls the same functions.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from multilabel.job_source import stage_job_source
from multilabel.metric_names import metric_definitions
from multilabel.run_paths import SAGEMAKER_CHECKPOINT_DIR
from multilabel.schema import DEFAULT_ENCODING, ColumnSpec, validate_files

logger = logging.getLogger(__name__)

ROLE_ENV = "SAGEMAKER_ROLE"
BUCKET_ENV = "SAGEMAKER_BUCKET"


class LaunchError(RuntimeError):
    """A problem the user can fix, with the fix in the message."""


# ---------------------------------------------------------------- sessions and checks


def make_session(
    region: str | None = None, bucket: str | None = None, boto_session: boto3.Session | None = None
):
    """A SageMaker session on an explicit bucket (the SDK's default bucket needs STS)."""
    import sagemaker

    boto_session = boto_session or boto3.Session(region_name=region or os.environ.get("AWS_DEFAULT_REGION"))
    if boto_session.region_name is None:
        raise LaunchError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
    bucket = bucket or os.environ.get(BUCKET_ENV)
    if not bucket:
        raise LaunchError(f"no S3 bucket: pass --bucket or set {BUCKET_ENV}")
    return sagemaker.Session(
        boto_session=boto_session, default_bucket=bucket, sagemaker_config=sdk_config_without_telemetry()
    )


def sdk_config_without_telemetry() -> dict:
    """The user's SageMaker SDK defaults (config.yaml), with telemetry switched off:
    the SDK would otherwise call an AWS host of its own on every job."""
    from sagemaker.config import load_sagemaker_config

    config = load_sagemaker_config() or {}
    config.setdefault("SchemaVersion", "1.0")
    modules = config.setdefault("SageMaker", {}).setdefault("PythonSDK", {}).setdefault("Modules", {})
    modules["TelemetryOptOut"] = True
    return config


def check_credentials(session) -> None:
    if session.boto_session.get_credentials() is None:
        raise LaunchError(
            "no AWS credentials found: run `aws configure` (or `aws sso login`), or set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )


def resolve_role(role: str | None) -> str:
    role = role or os.environ.get(ROLE_ENV)
    if not role:
        raise LaunchError(
            f"no execution role: pass --role arn:aws:iam::<account>:role/<name> or set {ROLE_ENV}; "
            "the role needs SageMaker and S3 access"
        )
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/.+", role):
        raise LaunchError(
            f"role {role!r} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)"
        )
    return role


def check_bucket(session) -> None:
    """The bucket exists and sits in the session's region (SageMaker needs both)."""
    s3 = session.boto_session.client("s3")
    # Not session.default_bucket(): it creates a missing bucket instead of saying so.
    # The SDK (pinned to 2.x) keeps the name it was given here.
    bucket = session._default_bucket_name_override
    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code in ("NoSuchBucket", "404"):
            raise LaunchError(
                f"bucket {bucket} does not exist; create it in {session.boto_region_name}"
            ) from None
        raise
    if location != session.boto_region_name:
        raise LaunchError(
            f"bucket {bucket} is in {location}, but the session is in {session.boto_region_name}; "
            f"use a bucket in {session.boto_region_name} or pass --region {location}"
        )


def check_instance_type(session, instance_type: str, shape: str) -> None:
    """Against the SageMaker API's own list of instance types (`shape` names the list)."""
    if instance_type.startswith("local"):
        return
    allowed = session.sagemaker_client.meta.service_model.shape_for(shape).enum
    if instance_type not in allowed:
        close = [t for t in allowed if t.split(".")[1:2] == instance_type.split(".")[1:2]][:6]
        hint = f"; for example {close}" if close else ""
        raise LaunchError(f"instance type {instance_type!r} does not exist for this use{hint}")


# ---------------------------------------------------------------- container versions


@dataclass(frozen=True)
class ContainerVersions:
    transformers: str
    pytorch: str
    python: str


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def container_versions(
    scope: str, transformers: str | None = None, pytorch: str | None = None, python: str | None = None
) -> ContainerVersions:
    """The newest Hugging Face container the installed SDK knows for `scope`
    ("training" or "inference"), or the requested one, checked to exist."""
    from sagemaker import image_uris

    versions = image_uris.config_for_framework("huggingface")[scope]["versions"]
    transformers = transformers or max(versions, key=_version_key)
    if transformers not in versions:
        raise LaunchError(
            f"no Hugging Face {scope} container for transformers {transformers}; "
            f"the installed SDK knows {sorted(versions, key=_version_key)[-6:]} (newest last)"
        )
    entry = versions[transformers]
    frameworks = sorted(
        (k.removeprefix("pytorch") for k in entry if k.startswith("pytorch")), key=_version_key
    )
    full = {
        k.removeprefix("pytorch"): v.removeprefix("pytorch")
        for k, v in entry.get("version_aliases", {}).items()
    }
    pytorch = full.get(pytorch, pytorch) if pytorch else (frameworks[-1] if frameworks else None)
    if pytorch not in frameworks:
        raise LaunchError(
            f"transformers {transformers} has no {scope} container with PyTorch {pytorch}; choose from {frameworks}"
        )
    py_versions = entry[f"pytorch{pytorch}"]["py_versions"]
    python = python or py_versions[-1]
    if python not in py_versions:
        raise LaunchError(
            f"transformers {transformers} / PyTorch {pytorch} has no {python} {scope} image; choose from {py_versions}"
        )
    return ContainerVersions(transformers, pytorch, python)


def container_kwargs(scope: str, config) -> dict[str, Any]:
    """Estimator / model arguments naming the container: versions, and a custom image if any.

    The SDK wants the versions even with a custom image; they then only label the job.
    """
    versions = container_versions(
        scope, config.transformers_version, config.pytorch_version, config.py_version
    )
    kwargs: dict[str, Any] = {
        "transformers_version": versions.transformers,
        "pytorch_version": versions.pytorch,
        "py_version": versions.python,
    }
    if config.image_uri:
        kwargs["image_uri"] = config.image_uri
    return kwargs


# ---------------------------------------------------------------- data


def validate_local_data(files: Mapping[str, str | None], spec: ColumnSpec, label_format: str):
    """train.py's validation, on the local files, before anything is uploaded."""
    local = {split: where for split, where in files.items() if where and not str(where).startswith("s3://")}
    if "train" not in local:
        logger.info("training data is already in S3: validated by the training job itself")
        return None
    return validate_files(local, spec, label_format)


def upload_data(session, files: Mapping[str, str | None], prefix: str) -> dict[str, str]:
    """Channel name -> S3 URI; local files and directories are uploaded under `prefix`."""
    channels = {}
    for split, where in files.items():
        if not where:
            continue
        if str(where).startswith("s3://"):
            channels[split] = str(where)
        else:
            channels[split] = session.upload_data(
                str(where), bucket=session.default_bucket(), key_prefix=f"{prefix}/data/{split}"
            )
            logger.info("uploaded %s to %s", where, channels[split])
    return channels


# ---------------------------------------------------------------- training


@dataclass
class TrainConfig:
    """Everything a training job needs; launch.py's `train` flags map onto it."""

    files: dict[str, str | None]
    role: str | None = None
    instance_type: str = "ml.g5.2xlarge"
    instance_count: int = 1
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    text_column_names: str = "casePart1,casePart2"
    label_column_names: str | None = None
    label_format: str = "auto"
    spot: bool = False
    max_run: int = 24 * 3600
    max_wait: int | None = None
    distributed: bool = False
    output_path: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    subnets: list[str] = field(default_factory=list)
    security_group_ids: list[str] = field(default_factory=list)
    volume_kms_key: str | None = None
    output_kms_key: str | None = None
    image_uri: str | None = None
    transformers_version: str | None = None
    pytorch_version: str | None = None
    py_version: str | None = None
    base_job_name: str = "multilabel"
    wait: bool = True

    def column_spec(self) -> ColumnSpec:
        """The columns to validate, and the encoding that train.py gets as `--hp encoding=...`."""
        encoding = str(self.hyperparameters.get("encoding", DEFAULT_ENCODING))
        return ColumnSpec.from_flags(self.text_column_names, self.label_column_names, encoding)


def run_prefix(base_job_name: str) -> str:
    return f"{base_job_name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def build_estimator(session, config: TrainConfig, source_dir: str, prefix: str, label_names: Sequence[str]):
    """The HuggingFace estimator for train.py, with every setting of `config`."""
    from sagemaker.huggingface import HuggingFace

    bucket = session.default_bucket()
    hyperparameters = {
        "text_column_names": config.text_column_names,
        "label_format": config.label_format,
        **({"label_column_names": config.label_column_names} if config.label_column_names else {}),
        **config.hyperparameters,
    }
    kwargs = container_kwargs("training", config)
    if config.spot:
        kwargs.update(
            use_spot_instances=True,
            max_wait=config.max_wait or 2 * config.max_run,
            checkpoint_s3_uri=f"s3://{bucket}/{prefix}/checkpoints",
            checkpoint_local_path=SAGEMAKER_CHECKPOINT_DIR,
        )
    if config.distributed:
        kwargs["distribution"] = {"torch_distributed": {"enabled": True}}
    return HuggingFace(
        entry_point="train.py",
        source_dir=source_dir,
        role=resolve_role(config.role),
        instance_type=config.instance_type,
        instance_count=config.instance_count,
        hyperparameters=hyperparameters,
        metric_definitions=metric_definitions(label_names, test=bool(config.files.get("test"))),
        output_path=config.output_path or f"s3://{bucket}/{prefix}/output",
        code_location=f"s3://{bucket}/{prefix}/code",
        base_job_name=config.base_job_name,
        max_run=config.max_run,
        tags=[{"Key": k, "Value": v} for k, v in config.tags.items()] or None,
        subnets=config.subnets or None,
        security_group_ids=config.security_group_ids or None,
        volume_kms_key=config.volume_kms_key,
        output_kms_key=config.output_kms_key,
        sagemaker_session=session,
        disable_profiler=True,
        **kwargs,
    )


def train(session, config: TrainConfig) -> str:
    """Validate locally, upload, start the job (and stream its logs when `wait`); returns its name."""
    schema = validate_local_data(config.files, config.column_spec(), config.label_format)
    check_instance_type(session, config.instance_type, "TrainingInstanceType")
    resolve_role(config.role)
    check_credentials(session)
    check_bucket(session)
    prefix = run_prefix(config.base_job_name)
    channels = upload_data(session, config.files, prefix)
    with tempfile.TemporaryDirectory() as source_dir:
        stage_job_source(source_dir)
        estimator = build_estimator(session, config, source_dir, prefix, schema.label_names if schema else ())
        estimator.fit(
            inputs=channels, wait=config.wait, logs="All" if config.wait else "None", job_name=prefix
        )
    logger.info("training job %s started", estimator.latest_training_job.name)
    return estimator.latest_training_job.name


@contextmanager
def dry_run(boto_session: boto3.Session, bucket: str, captured: dict[str, Any]) -> Iterator[None]:
    """Answer every AWS call locally instead of sending it; keep CreateTrainingJob's request.

    botocore lets a `before-call` handler supply the response, so nothing leaves the
    machine and no credentials are needed.
    """
    import datetime

    answers = {
        "CreateTrainingJob": {"TrainingJobArn": "arn:aws:sagemaker:dry-run"},
        "GetBucketLocation": {"LocationConstraint": boto_session.region_name},
        "ListBuckets": {
            "Buckets": [{"Name": bucket, "CreationDate": datetime.datetime.now(datetime.timezone.utc)}]
        },
    }

    def capture(params, **_):
        captured["CreateTrainingJob"] = json.loads(json.dumps(params, default=str))

    def answer(model, **_):
        return AWSResponse("https://dry-run", 200, {}, None), answers.get(model.name, {"ETag": '"dry-run"'})

    boto_session.events.register("provide-client-params.sagemaker.CreateTrainingJob", capture)
    boto_session.events.register("before-call", answer)
    try:
        yield
    finally:
        boto_session.events.unregister("before-call", answer)
        boto_session.events.unregister("provide-client-params.sagemaker.CreateTrainingJob", capture)


def dry_run_request(config: TrainConfig, region: str, bucket: str) -> dict[str, Any]:
    """The exact CreateTrainingJob request `train` would send, without calling AWS."""
    boto_session = boto3.Session(region_name=region)
    if boto_session.get_credentials() is None:  # nothing is signed or sent, but boto3 wants some
        boto_session = boto3.Session(
            region_name=region, aws_access_key_id="dry-run", aws_secret_access_key="dry-run"
        )
    captured: dict[str, Any] = {}
    with dry_run(boto_session, bucket, captured):
        session = make_session(bucket=bucket, boto_session=boto_session)
        train(session, TrainConfig(**{**config.__dict__, "wait": False}))
    return captured["CreateTrainingJob"]


# ---------------------------------------------------------------- deploy, predict, batch, delete


def model_data_of(session, training_job_or_uri: str) -> str:
    """A `model.tar.gz` URI, given one or a training job's name."""
    if training_job_or_uri.startswith("s3://"):
        return training_job_or_uri
    try:
        description = session.describe_training_job(training_job_or_uri)
    except ClientError as err:
        raise LaunchError(
            f"training job {training_job_or_uri} not found ({err.response['Error'].get('Message', '')}); "
            "pass a job name from `launch.py train` or an s3:// URI of a model.tar.gz"
        ) from None
    status = description["TrainingJobStatus"]
    if status != "Completed":
        raise LaunchError(
            f"training job {training_job_or_uri} is {status}, not Completed: nothing to deploy yet"
        )
    return description["ModelArtifacts"]["S3ModelArtifacts"]


@dataclass
class DeployConfig:
    model: str  # training job name or s3:// URI of model.tar.gz
    role: str | None = None
    endpoint_name: str | None = None
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    serverless_memory_mb: int | None = None  # set to deploy serverless
    serverless_max_concurrency: int = 5
    transformers_version: str | None = None
    pytorch_version: str | None = None
    py_version: str | None = None
    image_uri: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    wait: bool = True
    smoke_record: dict[str, str] | None = None


def deploy(session, config: DeployConfig):
    """A real-time or serverless endpoint for the model, on the newest inference container.

    The training container's version has no inference image, so the inference
    container is chosen on its own. The model's `code/inference.py` is the handler.
    Returns the predictor.
    """
    from sagemaker.huggingface import HuggingFaceModel
    from sagemaker.serverless import ServerlessInferenceConfig

    model_data = model_data_of(session, config.model)
    kwargs = container_kwargs("inference", config)
    with tempfile.TemporaryDirectory() as source_dir:
        stage_job_source(source_dir)
        (Path(source_dir) / "requirements.txt").unlink(missing_ok=True)  # the endpoint needs nothing more
        (Path(source_dir) / "train.py").unlink(missing_ok=True)
        model = HuggingFaceModel(
            model_data=model_data,
            role=resolve_role(config.role),
            entry_point="inference.py",
            source_dir=source_dir,
            env=config.env or None,
            sagemaker_session=session,
            **kwargs,
        )
        deploy_kwargs: dict[str, Any] = {"endpoint_name": config.endpoint_name, "wait": config.wait}
        if config.serverless_memory_mb:
            deploy_kwargs["serverless_inference_config"] = ServerlessInferenceConfig(
                memory_size_in_mb=config.serverless_memory_mb,
                max_concurrency=config.serverless_max_concurrency,
            )
        else:
            check_instance_type(session, config.instance_type, "ProductionVariantInstanceType")
            deploy_kwargs.update(
                instance_type=config.instance_type, initial_instance_count=config.instance_count
            )
        predictor = model.deploy(**deploy_kwargs)
    logger.info("endpoint %s created", predictor.endpoint_name)
    if config.wait and config.smoke_record:
        logger.info("smoke prediction: %s", predict(session, predictor.endpoint_name, [config.smoke_record]))
    return predictor


def predict(
    session,
    endpoint_name: str,
    records: Sequence[Mapping[str, str]],
    parameters: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Send records to the endpoint (in requests of at most 256) and return its results."""
    runtime = session.boto_session.client("sagemaker-runtime")
    results: list[dict] = []
    for start in range(0, len(records), 256):
        body = {
            "inputs": list(records[start : start + 256]),
            **({"parameters": dict(parameters)} if parameters else {}),
        }
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name,
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps(body),
        )
        results += json.loads(response["Body"].read())
    return results


def batch_transform(
    session,
    model_name: str,
    input_uri: str,
    output_uri: str,
    instance_type: str = "ml.m5.xlarge",
    wait: bool = True,
) -> str:
    """A Batch Transform job over JSON Lines in S3 (one record a line, one result a line)."""
    from sagemaker.transformer import Transformer

    check_instance_type(session, instance_type, "TransformInstanceType")
    transformer = Transformer(
        model_name=model_name,
        instance_count=1,
        instance_type=instance_type,
        output_path=output_uri,
        accept="application/jsonlines",
        assemble_with="Line",
        strategy="MultiRecord",
        max_payload=6,
        sagemaker_session=session,
    )
    transformer.transform(
        input_uri, content_type="application/jsonlines", split_type="Line", wait=wait, logs=False
    )
    return transformer.latest_transform_job.name


def delete(session, endpoint_name: str) -> list[str]:
    """Delete the endpoint, its config and its models; returns what was deleted."""
    client = session.sagemaker_client
    deleted = []
    try:
        endpoint = client.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as err:
        raise LaunchError(
            f"endpoint {endpoint_name} not found: {err.response['Error'].get('Message', '')}"
        ) from None
    config_name = endpoint["EndpointConfigName"]
    config = client.describe_endpoint_config(EndpointConfigName=config_name)
    client.delete_endpoint(EndpointName=endpoint_name)
    deleted.append(f"endpoint {endpoint_name}")
    client.delete_endpoint_config(EndpointConfigName=config_name)
    deleted.append(f"endpoint config {config_name}")
    for variant in config["ProductionVariants"]:
        client.delete_model(ModelName=variant["ModelName"])
        deleted.append(f"model {variant['ModelName']}")
    logger.info("deleted %s", ", ".join(deleted))
    return deleted


def training_metrics(session, job_name: str) -> dict[str, list[tuple[float, float]]]:
    """The job's metrics from CloudWatch: name -> [(seconds since start, value)]."""
    from sagemaker.analytics import TrainingJobAnalytics

    frame = TrainingJobAnalytics(job_name, sagemaker_session=session).dataframe()
    series: dict[str, list[tuple[float, float]]] = {}
    for row in frame.itertuples():
        series.setdefault(row.metric_name, []).append((float(row.timestamp), float(row.value)))
    return series


# ---------------------------------------------------------------- for the notebook


def plot_training_metrics(
    series: Mapping[str, list[tuple[float, float]]],
    names: Sequence[str] = ("loss", "eval_loss", "eval_micro_f1", "eval_macro_f1"),
):
    """A matplotlib figure of the named metrics over the job's time; None when there are none yet."""
    import matplotlib.pyplot as plt

    present = [n for n in names if series.get(n)]
    if not present:
        logger.info("no metrics recorded for this job yet")
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3), squeeze=False)
    for ax, name in zip(axes[0], present, strict=False):
        points = sorted(series[name])
        ax.plot([t / 60 for t, _ in points], [v for _, v in points], marker="o")
        ax.set_title(name)
        ax.set_xlabel("minutes")
    fig.tight_layout()
    return fig


def results_table(
    records: Sequence[Mapping[str, str]], results: Sequence[Mapping[str, Any]], text_column: str = "casePart1"
) -> list[dict[str, Any]]:
    """One row per record: its text (shortened), predicted labels, and the top scores."""
    rows = []
    for record, result in zip(records, results, strict=False):
        scores = result.get("scores", {})
        top = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
        rows.append(
            {
                "text": record.get(text_column, "")[:60],
                "labels": ", ".join(result["labels"]),
                "top scores": ", ".join(f"{k} {v:.2f}" for k, v in top),
            }
        )
    return rows
