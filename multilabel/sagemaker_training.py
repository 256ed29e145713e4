"""A SageMaker training job: validate the data locally, upload it, start the Hugging Face
estimator on train.py; or print the request it would send (dry run); then its metrics.

`TrainConfig`'s fields are `launch.py train`'s flags: each field's metadata holds its help.
"""

from __future__ import annotations

import datetime
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from multilabel.job_source import stage_job_source
from multilabel.metric_names import metric_definitions
from multilabel.run_paths import SAGEMAKER_CHECKPOINT_DIR
from multilabel.sagemaker_session import (
    ROLE_FLAG,
    ContainerChoice,
    check_bucket,
    check_credentials,
    check_instance_type,
    container_kwargs,
    make_session,
    resolve_role,
)
from multilabel.schema import (
    AUTO_FORMAT,
    DEFAULT_ENCODING,
    DEFAULT_TEXT_COLUMNS,
    LABEL_FORMATS,
    ColumnSpec,
    LabelSchema,
    validate_files,
)

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- data


def validate_local_data(
    files: Mapping[str, str | None], spec: ColumnSpec, label_format: str
) -> LabelSchema | None:
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


# ---------------------------------------------------------------- the job


@dataclass
class TrainConfig(ContainerChoice):
    """Everything a training job needs. A field with a `help` is a `launch.py train` flag
    (`flag` names it where the field's name does not)."""

    files: dict[str, str | None]  # split -> local file or directory, or s3:// URI (--train ...)
    role: str | None = field(default=None, metadata=ROLE_FLAG)
    instance_type: str = field(default="ml.g5.2xlarge", metadata={"help": "training instance type"})
    instance_count: int = field(default=1, metadata={"help": "instances; more than one needs --distributed"})
    hyperparameters: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "flag": "--hp",
            "help": "a train.py argument, e.g. learning_rate=3e-5 (repeat for more)",
        },
    )
    text_column_names: str = field(
        default=",".join(DEFAULT_TEXT_COLUMNS),
        metadata={"help": "the text column, or text and text-pair columns, comma-separated"},
    )
    label_column_names: str | None = field(
        default=None,
        metadata={"help": "the label columns, comma-separated (default: every column named label*)"},
    )
    label_format: str = field(
        default=AUTO_FORMAT,
        metadata={
            "help": "0/1 indicator columns, or columns holding label names (auto: told by the data)",
            "choices": LABEL_FORMATS,
        },
    )
    spot: bool = field(default=False, metadata={"help": "managed spot training, resumed from S3 checkpoints"})
    max_run: int = field(default=24 * 3600, metadata={"help": "the job's time limit, in seconds"})
    max_wait: int | None = field(
        default=None, metadata={"help": "seconds, with --spot (default: 2 x max-run)"}
    )
    distributed: bool = field(
        default=False, metadata={"help": "torch_distributed over all GPUs and instances"}
    )
    output_path: str | None = field(
        default=None,
        metadata={"help": "s3:// prefix for model.tar.gz (default: under the run prefix)"},
    )
    tags: dict[str, str] = field(
        default_factory=dict, metadata={"flag": "--tag", "help": "a tag of the job (repeat for more)"}
    )
    subnets: list[str] = field(
        default_factory=list,
        metadata={"flag": "--subnet", "help": "a VPC subnet ID to run in (repeat for more)"},
    )
    security_group_ids: list[str] = field(
        default_factory=list,
        metadata={
            "flag": "--security-group",
            "help": "a VPC security group ID, with --subnet (repeat for more)",
        },
    )
    volume_kms_key: str | None = field(
        default=None, metadata={"help": "KMS key for the instances' storage volumes"}
    )
    output_kms_key: str | None = field(default=None, metadata={"help": "KMS key for the model artifact"})
    base_job_name: str = "multilabel"
    wait: bool = field(default=True, metadata={"help": "stream the job's logs until it ends"})

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


# ---------------------------------------------------------------- dry run


@contextmanager
def dry_run(boto_session: boto3.Session, bucket: str, captured: dict[str, Any]) -> Iterator[None]:
    """Answer every AWS call locally instead of sending it; keep CreateTrainingJob's request.

    botocore lets a `before-call` handler supply the response, so nothing leaves the
    machine and no credentials are needed.
    """
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
        train(session, replace(config, wait=False))
    return captured["CreateTrainingJob"]


# ---------------------------------------------------------------- its metrics


def training_metrics(session, job_name: str) -> dict[str, list[tuple[float, float]]]:
    """The job's metrics from CloudWatch (its metric definitions): name -> [(seconds since start, value)]."""
    from sagemaker.analytics import TrainingJobAnalytics

    frame = TrainingJobAnalytics(job_name, sagemaker_session=session).dataframe()
    series: dict[str, list[tuple[float, float]]] = {}
    for row in frame.itertuples():
        series.setdefault(row.metric_name, []).append((float(row.timestamp), float(row.value)))
    return series
