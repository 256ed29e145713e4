"""SageMaker sessions and the checks every job makes first: credentials, role, bucket,
instance type, and the Hugging Face container versions the installed SDK knows.

Runs where the user is (a laptop or a notebook kernel), so it imports the SageMaker SDK
and boto3 but never torch or transformers. `sagemaker_training` and `sagemaker_endpoint`
build on it; launch.py is their command line, and the launch notebook calls the same
functions.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")  # before the SDK's first import

import boto3
from botocore.exceptions import (
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
    TokenRetrievalError,
)

# Notices the SDK logs on every call, whatever the user does: which config files it did
# not find, and that it "will collect telemetry" (logged even when opted out, as
# make_session does). Levels set before the SDK's first import, which keeps a set level.
SDK_NOTICE_LOGGERS = ("sagemaker.config", "sagemaker.telemetry", "sagemaker.image_uris")
for _name in SDK_NOTICE_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)

REGION_ENV = "AWS_DEFAULT_REGION"
ROLE_ENV = "SAGEMAKER_ROLE"
BUCKET_ENV = "SAGEMAKER_BUCKET"
# The `role` field's flag, shared by the training and the endpoint configurations.
ROLE_FLAG = {"help": f"execution role ARN, with SageMaker and S3 access (default: ${ROLE_ENV})"}


class LaunchError(RuntimeError):
    """A problem the user can fix, with the fix in the message."""


def quiet_sdk_logs(cli: bool = False) -> None:
    """No SDK notices; on the command line (`cli`), no SDK or botocore INFO lines at all
    (where credentials were found, each request the SDK makes): our own lines say what happens."""
    for name in SDK_NOTICE_LOGGERS + (("sagemaker", "botocore", "boto3", "urllib3") if cli else ()):
        logging.getLogger(name).setLevel(logging.WARNING)


CREDENTIALS_FIX = (
    "run `aws configure` (or `aws sso login` for an SSO profile), or set AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials)"
)
EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
INVALID_CREDENTIAL_CODES = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "AuthFailure",
}
DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


def _exception_chain(error: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while error is not None and all(error is not seen for seen in chain):
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def aws_failure_message(error: BaseException) -> str | None:
    """One line saying why AWS could not be used, and the fix; None if `error` is no such
    failure. The SDK and boto3's S3 transfers wrap botocore's errors: the whole chain is read."""
    for err in _exception_chain(error):
        if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
            return f"no usable AWS credentials ({err}): {CREDENTIALS_FIX}"
        if isinstance(err, TokenRetrievalError):
            return f"AWS SSO token could not be refreshed ({err}): run `aws sso login`"
        if isinstance(err, NoRegionError):
            return f"no AWS region: pass --region or set {REGION_ENV}"
        if isinstance(err, (EndpointConnectionError, ConnectionError, ReadTimeoutError)):
            url = getattr(err, "kwargs", {}).get("endpoint_url", "")
            custom = os.environ.get("AWS_ENDPOINT_URL")
            where = f" (AWS_ENDPOINT_URL={custom})" if custom else ""
            return (
                f"cannot reach AWS at {url or 'its endpoint'}{where}: check the network connection, "
                f"proxy (HTTPS_PROXY) and region, then run the command again"
            )
        if isinstance(err, ClientError):
            info = err.response.get("Error", {})
            code, message = info.get("Code", ""), info.get("Message", "")
            operation = getattr(err, "operation_name", "a request")
            if code in EXPIRED_CODES:
                return f"AWS credentials have expired ({code}): refresh them; {CREDENTIALS_FIX}"
            if code in INVALID_CREDENTIAL_CODES:
                return f"AWS refused the credentials ({code}: {message}): {CREDENTIALS_FIX}"
            if code in DENIED_CODES:
                return (
                    f"access denied to {operation} ({message}): the credentials' user or role needs "
                    "permission for it (SageMaker and S3 access)"
                )
            return f"AWS refused {operation}: {code}: {message}"
    return None


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


# Present on SageMaker notebook instances and in SageMaker Studio, where the notebook's
# own role is the one to use.
SAGEMAKER_NOTEBOOK_METADATA = "/opt/ml/metadata/resource-metadata.json"


def execution_role(session=None, role: str | None = None) -> str:
    """The role a notebook's jobs run as: `role` if given; inside SageMaker (a notebook
    instance or Studio) the notebook's own (`sagemaker.get_execution_role()`); elsewhere
    `$SAGEMAKER_ROLE`. Raises `LaunchError` saying how to give one."""
    if role:
        return resolve_role(role)
    if os.path.exists(SAGEMAKER_NOTEBOOK_METADATA):
        import sagemaker

        try:
            return sagemaker.get_execution_role(session)
        except ValueError as err:  # the SDK's "could not retrieve the role" (a user profile, not a role)
            raise LaunchError(
                f"cannot tell this notebook's execution role ({err}); set ROLE in the parameters cell "
                f"or {ROLE_ENV} to arn:aws:iam::<account>:role/<name>"
            ) from None
    if not os.environ.get(ROLE_ENV):
        raise LaunchError(
            f"no execution role: outside SageMaker, set {ROLE_ENV} (or ROLE in the parameters cell) "
            "to arn:aws:iam::<account>:role/<name>, a role with SageMaker and S3 access"
        )
    return resolve_role(None)


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
