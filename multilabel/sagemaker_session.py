"""SageMaker sessions and the checks every job makes first: credentials, role, bucket,
instance type, and the Hugging Face container versions the installed SDK knows.

Runs where the user is (a laptop or a notebook kernel), so it imports the SageMaker SDK
and boto3 but never torch or transformers. `sagemaker_training` and `sagemaker_endpoint`
build on it; launch.py is their command line, and the launch notebook calls the same
functions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")  # before the SDK's first import

import boto3
from botocore.exceptions import ClientError

REGION_ENV = "AWS_DEFAULT_REGION"
ROLE_ENV = "SAGEMAKER_ROLE"
BUCKET_ENV = "SAGEMAKER_BUCKET"
# The `role` field's flag, shared by the training and the endpoint configurations.
ROLE_FLAG = {"help": f"execution role ARN, with SageMaker and S3 access (default: ${ROLE_ENV})"}


class LaunchError(RuntimeError):
    """A problem the user can fix, with the fix in the message."""


# ---------------------------------------------------------------- sessions and checks


def make_session(
    region: str | None = None,
    bucket: str | None = None,
    boto_session: boto3.Session | None = None,
    *,
    need_bucket: bool = True,
):
    """A SageMaker session on an explicit bucket (the SDK's default bucket needs STS).

    `need_bucket=False` for what works on existing resources only (predict, batch, delete):
    the session then has no bucket, and asks for none.
    """
    boto_session = boto_session or boto3.Session(region_name=region or os.environ.get(REGION_ENV))
    if boto_session.region_name is None:
        raise LaunchError(f"no AWS region: pass --region or set {REGION_ENV}")
    bucket = bucket or os.environ.get(BUCKET_ENV)
    if need_bucket and not bucket:
        raise LaunchError(f"no S3 bucket: pass --bucket or set {BUCKET_ENV}")
    import sagemaker  # seconds to import: after the checks, so that a refusal comes at once

    return sagemaker.Session(
        boto_session=boto_session,
        default_bucket=bucket or None,
        sagemaker_config=sdk_config_without_telemetry(),
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


@dataclass(kw_only=True)
class ContainerChoice:
    """Which container a job runs in; the training and endpoint configurations extend it."""

    image_uri: str | None = field(
        default=None,
        metadata={"help": "a custom container image (see the Dockerfile) instead of the Hugging Face one"},
    )
    transformers_version: str | None = field(
        default=None,
        metadata={
            "help": "transformers version of the Hugging Face container (default: the newest the installed SDK knows)"
        },
    )
    pytorch_version: str | None = field(
        default=None,
        metadata={"help": "PyTorch version of that container (default: its newest)"},
    )
    py_version: str | None = field(
        default=None,
        metadata={"help": "Python version of that container, e.g. py312 (default: its newest)"},
    )


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


def container_kwargs(scope: str, config: ContainerChoice) -> dict[str, Any]:
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
