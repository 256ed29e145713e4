"""A trained model on SageMaker: deploy it to an endpoint, send it records, run Batch
Transform over records in S3, and delete the endpoint with its config and model.

`DeployConfig`'s fields are `launch.py deploy`'s flags: each field's metadata holds its help.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from multilabel.artifact import HANDLER, copy_serving_code
from multilabel.request_codec import DEFAULT_MAX_RECORDS, JSON, JSONLINES, MAX_RECORDS_ENV
from multilabel.sagemaker_session import (
    ROLE_FLAG,
    ContainerChoice,
    LaunchError,
    check_instance_type,
    container_kwargs,
    resolve_role,
)

logger = logging.getLogger(__name__)

INFERENCE_INSTANCE_TYPE = "ml.m5.xlarge"  # real-time endpoints and Batch Transform


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


def predict(
    session,
    endpoint_name: str,
    records: Sequence[Mapping[str, str]],
    parameters: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Send records to the endpoint, in requests as large as it takes by default, and return
    its results."""
    runtime = session.boto_session.client("sagemaker-runtime")
    results: list[dict] = []
    for start in range(0, len(records), DEFAULT_MAX_RECORDS):
        body = {
            "inputs": list(records[start : start + DEFAULT_MAX_RECORDS]),
            **({"parameters": dict(parameters)} if parameters else {}),
        }
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name,
            ContentType=JSON,
            Accept=JSON,
            Body=json.dumps(body),
        )
        results += json.loads(response["Body"].read())
    return results


def batch_transform(
    session,
    model_name: str,
    input_uri: str,
    output_uri: str,
    instance_type: str = INFERENCE_INSTANCE_TYPE,
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
        accept=JSONLINES,
        assemble_with="Line",
        strategy="MultiRecord",
        max_payload=6,
        sagemaker_session=session,
    )
    transformer.transform(input_uri, content_type=JSONLINES, split_type="Line", wait=wait, logs=False)
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
