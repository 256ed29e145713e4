"""A trained model on SageMaker: deploy it to an endpoint, send it records, run Batch
Transform over records in S3, and delete the endpoint with its config and model.

`DeployConfig`'s fields are `launch.py deploy`'s flags: each field's metadata holds its help.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from multilabel.core.artifact import HANDLER, copy_serving_code
from multilabel.data.schema import DEFAULT_TEXT_COLUMNS
from multilabel.sagemaker.session import (
    ROLE_FLAG,
    ContainerChoice,
    LaunchError,
    check_instance_type,
    container_kwargs,
    resolve_role,
)
from multilabel.serving.request_codec import (
    DEFAULT_MAX_RECORDS,
    JSON,
    JSONLINES,
    MAX_RECORDS_ENV,
    MAX_TOKENS_ENV,
)

logger = logging.getLogger(__name__)

INFERENCE_INSTANCE_TYPE = "ml.m5.xlarge"  # real-time endpoints and Batch Transform

# ---------------------------------------------------------------- Batch Transform limits
#
# With SplitType=Line and BatchStrategy=MultiRecord, Batch Transform packs as many whole
# lines into one request as fit in MaxPayloadInMB, whatever their length: 6 MB of short
# lines is tens of thousands of records, far beyond what the endpoint's defaults take.
# So the transform job gets its own endpoint settings, derived from the payload, under
# which every request the service can build is served:
#
# - records: the shortest JSON Lines record, `{"a":""}` and its newline, is 9 bytes, so a
#   payload of P bytes holds at most P // 9 + 1 records (the + 1: the last line may
#   lack its newline).
# - tokens: the handler counts tokens after truncation, special tokens included. Every
#   other token stands for at least one byte of the record's text, and the text is part
#   of the payload (JSON escapes only make it longer); a record adds at most
#   SPECIAL_TOKENS_PER_RECORD more: the specials of a text pair (4 for RoBERTa, 3 for
#   BERT) and a SentencePiece word-start token before each of its two texts, with room
#   to spare. So a request holds at most P + SPECIAL_TOKENS_PER_RECORD x (records) tokens.
# - time: such a request is long work on a CPU (a 1 MiB payload of texts cut to 256
#   tokens is about 4,000 records); the model server's response timeout (the inference
#   toolkit's default is 60 s) and the job's invocation timeout go to the service's
#   maximum, one hour.
TRANSFORM_MAX_PAYLOAD_MB = 1
SHORTEST_JSONLINES_RECORD = len(b'{"a":""}\n')  # 9 bytes
SPECIAL_TOKENS_PER_RECORD = 8
TRANSFORM_TIMEOUT_SECONDS = 3600  # InvocationsTimeoutInSeconds' maximum
MODEL_SERVER_TIMEOUT_ENV = "SAGEMAKER_MODEL_SERVER_TIMEOUT"  # sagemaker_inference.parameters


@dataclass(frozen=True)
class TransformLimits:
    """What a Batch Transform job sends per request, and the endpoint settings that serve it."""

    max_payload_mb: int
    environment: dict[str, str]
    invocations_timeout_s: int


def transform_limits(max_payload_mb: int = TRANSFORM_MAX_PAYLOAD_MB) -> TransformLimits:
    """The endpoint settings under which any request of `max_payload_mb` MiB is served
    (see the derivation above)."""
    payload = max_payload_mb * 1024 * 1024
    records = payload // SHORTEST_JSONLINES_RECORD + 1
    tokens = payload + SPECIAL_TOKENS_PER_RECORD * records
    return TransformLimits(
        max_payload_mb=max_payload_mb,
        environment={
            MAX_RECORDS_ENV: str(records),
            MAX_TOKENS_ENV: str(tokens),
            MODEL_SERVER_TIMEOUT_ENV: str(TRANSFORM_TIMEOUT_SECONDS),
        },
        invocations_timeout_s=TRANSFORM_TIMEOUT_SECONDS,
    )


def jsonpath_of(names: Sequence[str]) -> str:
    """`$['a','b']`: the JSONPath that keeps the named fields of a JSON object."""
    for name in names:
        if "'" in name or not name:
            raise LaunchError(f"field name {name!r}: Batch Transform filters cannot name it")
    return "$[" + ",".join(f"'{name}'" for name in names) + "]"


def data_processing(id_field: str | None, text_columns: Sequence[str]) -> dict[str, str]:
    """Batch Transform's data processing that carries `id_field` from each input line to its
    output line: the model sees only its text columns (InputFilter), each result is joined
    to its input (JoinSource=Input, under "SageMakerOutput"), and the output keeps the id
    and the result (OutputFilter). No id field: no data processing."""
    if not id_field:
        return {}
    if id_field in text_columns:
        raise LaunchError(
            f"--id-field {id_field}: that is a text column; name a field the model does not read"
        )
    return {
        "input_filter": jsonpath_of(text_columns),
        "join_source": "Input",
        "output_filter": jsonpath_of([id_field, "SageMakerOutput"]),
    }


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
class DeployConfig(ContainerChoice):
    """Everything an endpoint needs. A field with a `help` is a `launch.py deploy` flag
    (`flag` names it where the field's name does not)."""

    model: str = field(metadata={"help": "training job name, or s3:// URI of a model.tar.gz"})
    role: str | None = field(default=None, metadata=ROLE_FLAG)
    endpoint_name: str | None = field(
        default=None, metadata={"help": "the endpoint's name (default: one SageMaker makes up)"}
    )
    instance_type: str = field(
        default=INFERENCE_INSTANCE_TYPE, metadata={"help": "real-time endpoint instance type"}
    )
    instance_count: int = field(default=1, metadata={"help": "real-time endpoint instances"})
    serverless_memory_mb: int | None = field(  # set to deploy serverless
        default=None,
        metadata={
            "flag": "--serverless-memory",
            "metavar": "MB",
            "help": "deploy serverless with this much memory",
        },
    )
    serverless_max_concurrency: int = field(
        default=5,
        metadata={
            "flag": "--serverless-concurrency",
            "help": "concurrent requests a serverless endpoint serves",
        },
    )
    env: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": f"an endpoint setting, e.g. {MAX_RECORDS_ENV}=64 (repeat for more)"},
    )
    wait: bool = field(default=True, metadata={"help": "wait until the endpoint is in service"})
    smoke_record: dict[str, str] | None = None  # predicted once the endpoint is up


def deploy(session, config: DeployConfig):
    """A real-time or serverless endpoint for the model, on the newest inference container.

    The training container's version has no inference image, so the inference
    container is chosen on its own. `code/inference.py` is the handler; the SDK repacks
    the model with this checkout's handler and the modules it imports.
    Returns the predictor.
    """
    from sagemaker.huggingface import HuggingFaceModel
    from sagemaker.serverless import ServerlessInferenceConfig

    model_data = model_data_of(session, config.model)
    kwargs = container_kwargs("inference", config)
    with tempfile.TemporaryDirectory() as staging:
        # The SDK repacks the model with source_dir as its code/: the same handler and
        # modules that training puts there, and nothing else.
        if not copy_serving_code(staging):
            raise LaunchError(f"no {HANDLER} beside the multilabel package: nothing to serve the model with")
        model = HuggingFaceModel(
            model_data=model_data,
            role=resolve_role(config.role),
            entry_point=HANDLER,
            source_dir=str(Path(staging) / "code"),
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


@contextmanager
def deployed(session, config: DeployConfig) -> Iterator[Any]:
    """`deploy`, then `delete` when the block ends, however it ends: the endpoint bills
    every hour it exists, so a failure between deploying and cleaning up must not keep it."""
    name = config.endpoint_name
    try:
        predictor = deploy(session, config)
        name = predictor.endpoint_name
        yield predictor
    finally:
        if name:
            try:
                delete(session, name)
            except LaunchError as err:  # never created (deploy failed before): nothing bills
                logger.info("nothing to clean up: %s", err)


def predict(
    session,
    endpoint_name: str,
    records: Sequence[Mapping[str, str]],
    parameters: Mapping[str, Any] | None = None,
    max_records: int = DEFAULT_MAX_RECORDS,
) -> list[dict]:
    """Send records to the endpoint, at most `max_records` a request (the endpoint's
    MULTILABEL_MAX_RECORDS), and return its results.

    A request the endpoint refuses for its size raises `LaunchError` saying which
    `max_records` to pass.
    """
    if max_records < 1:
        raise LaunchError(f"--max-records must be at least 1, found {max_records}")
    runtime = session.boto_session.client("sagemaker-runtime")
    results: list[dict] = []
    for start in range(0, len(records), max_records):
        body = {
            "inputs": list(records[start : start + max_records]),
            **({"parameters": dict(parameters)} if parameters else {}),
        }
        try:
            response = runtime.invoke_endpoint(
                EndpointName=endpoint_name,
                ContentType=JSON,
                Accept=JSON,
                Body=json.dumps(body),
            )
        except ClientError as err:
            refused = _request_size_error(err, endpoint_name, max_records)
            if refused is None:
                raise
            raise refused from None
        results += json.loads(response["Body"].read())
    return results


def _request_size_error(err: ClientError, endpoint_name: str, sent: int) -> LaunchError | None:
    """A LaunchError naming the `--max-records` to pass, if the endpoint refused a request for
    its record count or its token budget (HTTP 400 from the model); else None."""
    message = err.response.get("Error", {}).get("Message", "")
    too_many = re.search(r"too many records: \d+, at most (\d+) per request", message)
    if too_many:
        limit = int(too_many.group(1))
        return LaunchError(
            f"endpoint {endpoint_name} takes at most {limit} records a request "
            f"({MAX_RECORDS_ENV}={limit}), {sent} were sent: pass --max-records {limit}"
        )
    too_large = re.search(r"request too large: .* split it into requests of about (\d+) records", message)
    if too_large:
        fits = int(too_large.group(1))
        return LaunchError(
            f"endpoint {endpoint_name} refused {sent} records a request for its token budget "
            f"({MAX_TOKENS_ENV}): pass --max-records {fits} (or less)"
        )
    return None


def batch_transform(
    session,
    model_name: str,
    input_uri: str,
    output_uri: str,
    instance_type: str = INFERENCE_INSTANCE_TYPE,
    wait: bool = True,
    id_field: str | None = None,
    text_columns: Sequence[str] = DEFAULT_TEXT_COLUMNS,
) -> str:
    """A Batch Transform job over JSON Lines in S3 (one record a line, one result a line).

    Requests are packed up to `TRANSFORM_MAX_PAYLOAD_MB`, and the job's container gets
    the settings that serve any such request (`transform_limits`). With `id_field`, each
    output line is `{"<id_field>": ..., "SageMakerOutput": {"labels": ..., "scores": ...}}`
    (`data_processing`); without, it is the result alone, in input order.
    """
    from sagemaker.transformer import Transformer

    check_instance_type(session, instance_type, "TransformInstanceType")
    limits = transform_limits()
    transformer = Transformer(
        model_name=model_name,
        instance_count=1,
        instance_type=instance_type,
        output_path=output_uri,
        accept=JSONLINES,
        assemble_with="Line",
        strategy="MultiRecord",
        max_payload=limits.max_payload_mb,
        env=limits.environment,
        sagemaker_session=session,
    )
    transformer.transform(
        input_uri,
        content_type=JSONLINES,
        split_type="Line",
        wait=wait,
        logs=False,
        # One retry: a mini-batch may hold a worker for up to an hour, and a refused one (4xx)
        # fails the same way every time.
        model_client_config={
            "InvocationsTimeoutInSeconds": limits.invocations_timeout_s,
            "InvocationsMaxRetries": 1,
        },
        **data_processing(id_field, list(text_columns)),
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
