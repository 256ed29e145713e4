"""A SageMaker training job: validate the data locally, upload it, start the Hugging Face
estimator on train.py; or print the request it would send (dry run); then its metrics.

`TrainConfig`'s fields are `launch.py train`'s flags: each field's metadata holds its help.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import importlib.util
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from multilabel.core.job_source import stage_job_source
from multilabel.core.metric_names import metric_definitions
from multilabel.core.run_paths import LABEL_REPORT, SAGEMAKER_CHECKPOINT_DIR, results_file
from multilabel.data.schema import (
    AUTO_FORMAT,
    DEFAULT_ENCODING,
    DEFAULT_TEXT_COLUMNS,
    LABEL_FORMATS,
    ColumnSpec,
    LabelSchema,
    validate_files,
)
from multilabel.sagemaker.session import (
    ROLE_FLAG,
    ContainerChoice,
    LaunchError,
    check_bucket,
    check_credentials,
    check_instance_type,
    container_kwargs,
    make_session,
    resolve_role,
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


def upload_data(
    session, files: Mapping[str, str | None], prefix: str, *, dry_run: bool = False
) -> dict[str, str]:
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
            logger.info("%s %s to %s", "would upload" if dry_run else "uploaded", where, channels[split])
    return channels


# ---------------------------------------------------------------- hyperparameters

SAGEMAKER_CHANNEL_DIR = "/opt/ml/input/data"  # where the job finds each channel
GPU_INSTANCE_FAMILIES = ("g", "p")  # ml.g5..., ml.p4d...: the families with NVIDIA GPUs


def hyperparameter_argv(hyperparameters: Mapping[str, Any]) -> list[str]:
    """The command line the training toolkit gives train.py for these hyperparameters:
    `--key value`, keys sorted; the SDK JSON-encodes each value and the toolkit decodes
    it back to Python and writes `str(value)` (so booleans arrive as True/False)."""
    argv = []
    for key in sorted(hyperparameters):
        value = json.loads(json.dumps(hyperparameters[key]))  # what survives the JSON trip
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        argv += [f"--{key}", "" if value is None else str(value)]
    return argv


def _train_py_flags() -> list[str]:
    """Every flag name train.py takes (its three argument dataclasses), without dashes."""
    from dataclasses import fields

    from transformers import TrainingArguments

    from multilabel.training.arguments import DataArguments, ModelArguments

    names = []
    for dtype in (ModelArguments, DataArguments, TrainingArguments):
        for f in fields(dtype):
            if not f.init:
                continue
            names.append(f.name)
            if f.default is True:  # HfArgumentParser adds --no_<name> for switches on by default
                names.append(f"no_{f.name}")
    return names


@contextmanager
def _as_on_instance(instance_type: str) -> Iterator[None]:
    """transformers checks bf16 and tf32 against this machine's GPU; the job runs them on the
    instance's. On a GPU instance type, those checks pass here as they would there.

    Parsing also sets process-wide state (`TrainingArguments` exports
    ACCELERATE_MIXED_PRECISION for bf16): the environment is restored afterwards, so that
    whatever this process runs next (a notebook's own training, a test) is not affected.
    """
    import transformers.training_args as training_args

    environment = dict(os.environ)
    saved = {
        name: getattr(training_args, name)
        for name in ("is_torch_bf16_gpu_available", "is_torch_tf32_available")
    }
    on_gpu = bool(instance_type.split(".")[1:2]) and instance_type.split(".")[1][:1] in GPU_INSTANCE_FAMILIES
    try:
        if on_gpu:
            for name in saved:
                setattr(training_args, name, lambda: True)
        yield
    finally:
        for name, value in saved.items():
            setattr(training_args, name, value)
        os.environ.clear()
        os.environ.update(environment)


def check_hyperparameters(
    hyperparameters: Mapping[str, Any], channels: Sequence[str], instance_type: str
) -> None:
    """Parse the hyperparameters with train.py's own parser, as the job will, before anything
    is uploaded: a misspelt key or a bad value raises `LaunchError` naming it.

    The job gets `--key value` for each hyperparameter and a data directory for each
    channel, so the check passes the same. Needs transformers (train.py's parser is built
    on it); where it is not installed, the job checks them itself.
    """
    if not all(importlib.util.find_spec(m) for m in ("torch", "transformers")):
        logger.warning(
            "transformers is not installed here: the training job checks its hyperparameters itself"
        )
        return
    from multilabel.core.errors import InputError
    from multilabel.training.arguments import parse_arguments

    known = _train_py_flags()
    for key in hyperparameters:
        name = str(key).removeprefix("--")
        if name in known or name.replace("-", "_") in known:
            continue
        close = difflib.get_close_matches(name.replace("-", "_"), known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; `python train.py --help` lists them"
        raise LaunchError(f"--hp {key}: train.py has no argument --{name}{hint}")
    data = [arg for split in channels for arg in (f"--{split}_file", f"{SAGEMAKER_CHANNEL_DIR}/{split}")]
    argv = [*data, *hyperparameter_argv(hyperparameters)]
    stderr = io.StringIO()
    try:
        with _as_on_instance(instance_type), contextlib.redirect_stderr(stderr):
            parse_arguments(argv)
    except SystemExit:  # argparse: a value of the wrong type or outside its choices
        lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
        error = lines[-1].split("error: ", 1)[-1] if lines else "invalid arguments"
        raise LaunchError(f"--hp: train.py would refuse these hyperparameters: {error}") from None
    except InputError as err:  # train.py's own checks, each naming its flag
        raise LaunchError(
            f"--hp: train.py would refuse these hyperparameters on {instance_type}: {err}"
        ) from None


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
    label_separator: str | None = field(
        default=None,
        metadata={"help": "what joins several label names in one cell, e.g. '|' for 'billing|refund'"},
    )
    id_column: str | None = field(
        default=None,
        metadata={"help": "a column of row ids, carried to every prediction and never read by the model"},
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

    def data_settings(self) -> dict[str, str]:
        """How train.py will read the data: launch's own column and label flags, each replaced
        by the same setting given with `--hp` (`--hp label_format=names`). The one place that
        decides them: the local check and the job both read it."""
        settings = {
            "text_column_names": self.text_column_names,
            "label_column_names": self.label_column_names,
            "label_format": self.label_format,
            "label_separator": self.label_separator,
            "id_column": self.id_column,
        }
        for key, value in self.hyperparameters.items():
            if hyperparameter_name(key) in DATA_SETTINGS:
                settings[hyperparameter_name(key)] = None if value is None else str(value)
        return {key: value for key, value in settings.items() if value is not None}

    def column_spec(self) -> ColumnSpec:
        """The columns to validate, and the encoding, as train.py will read them (`data_settings`)."""
        settings = self.data_settings()
        return ColumnSpec.from_flags(
            settings["text_column_names"],
            settings.get("label_column_names"),
            settings.get("encoding", DEFAULT_ENCODING),
            settings.get("label_display_names"),
            settings.get("label_separator"),
            settings.get("id_column"),
        )

    def label_format_setting(self) -> str:
        """The label format train.py will be told (`--label-format`, or `--hp label_format`)."""
        return self.data_settings().get("label_format", AUTO_FORMAT)


# train.py's settings of how the CSV files read: checked locally before anything is uploaded.
DATA_SETTINGS = (
    "text_column_names",
    "label_column_names",
    "label_format",
    "label_separator",
    "id_column",
    "encoding",
    "label_display_names",
)


def hyperparameter_name(key: object) -> str:
    """A `--hp` key as train.py's argument name: `--label-format` -> `label_format`."""
    return str(key).removeprefix("--").replace("-", "_")


def run_prefix(base_job_name: str) -> str:
    return f"{base_job_name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def job_hyperparameters(config: TrainConfig) -> dict[str, Any]:
    """train.py's arguments for the job: the data settings (`TrainConfig.data_settings`), then
    the user's other `--hp`.

    `label_display_names` given as a local JSON file is sent as its content: the file does
    not travel to the training instance.
    """
    settings = config.data_settings()
    if settings.get("label_display_names"):
        names = dict(config.column_spec().display_names)
        settings["label_display_names"] = json.dumps(names, ensure_ascii=False)
    others = {k: v for k, v in config.hyperparameters.items() if hyperparameter_name(k) not in DATA_SETTINGS}
    return {**settings, **others}


def build_estimator(session, config: TrainConfig, source_dir: str, prefix: str, label_names: Sequence[str]):
    """The HuggingFace estimator for train.py, with every setting of `config`."""
    from sagemaker.huggingface import HuggingFace

    bucket = session.default_bucket()
    hyperparameters = job_hyperparameters(config)
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


def train(session, config: TrainConfig, *, dry_run: bool = False) -> str:
    """Check the hyperparameters and the data locally, upload, start the job (and stream its
    logs when `wait`); returns its name. `dry_run`: the session answers every call locally
    (see `dry_run_request`), and the log says what would be uploaded and started."""
    channels = [split for split, where in config.files.items() if where]
    check_hyperparameters(job_hyperparameters(config), channels, config.instance_type)
    schema = validate_local_data(config.files, config.column_spec(), config.label_format_setting())
    check_instance_type(session, config.instance_type, "TrainingInstanceType")
    resolve_role(config.role)
    check_credentials(session)
    check_bucket(session)
    prefix = run_prefix(config.base_job_name)
    inputs = upload_data(session, config.files, prefix, dry_run=dry_run)
    with tempfile.TemporaryDirectory() as source_dir:
        stage_job_source(source_dir)
        estimator = build_estimator(session, config, source_dir, prefix, schema.label_names if schema else ())
        estimator.fit(inputs=inputs, wait=config.wait, logs="All" if config.wait else "None", job_name=prefix)
    name = estimator.latest_training_job.name
    if dry_run:
        logger.info("dry run: would start training job %s; nothing was sent to AWS", name)
    else:
        logger.info("training job %s started", name)
    return name


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
        train(session, replace(config, wait=False), dry_run=True)
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


# ---------------------------------------------------------------- its results

JOB_RESULT_FILES = (results_file("test"), LABEL_REPORT)  # what the notebook shows of the job's output


def job_output_files(session, job_name: str, names: Sequence[str] = JOB_RESULT_FILES) -> dict[str, str]:
    """Files of the job's output data (train.py's SM_OUTPUT_DATA_DIR, which SageMaker uploads as
    `<output path>/<job>/output/output.tar.gz`): name -> text, for those of `names` it holds."""
    import io
    import tarfile

    description = session.describe_training_job(job_name)
    status = description["TrainingJobStatus"]
    if status != "Completed":
        raise LaunchError(
            f"training job {job_name} is {status}: its results are in output.tar.gz once it has "
            "completed; run this again then"
        )
    uri = f"{description['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job_name}/output/output.tar.gz"
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3 = session.boto_session.client("s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        raise LaunchError(f"no output data at {uri} ({err.response['Error'].get('Code')})") from None
    files = {}
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./")
            if member.isfile() and name in names:
                files[name] = tar.extractfile(member).read().decode("utf-8")
    return files
