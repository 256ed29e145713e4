"""multilabel.sagemaker.session: sessions, the checks each job makes first, container versions.

Offline: nothing here sends a request (the checks that need an AWS account run through
`train` in test_sagemaker_training.py, against the moto server).
"""

from __future__ import annotations

import boto3
import pytest

from multilabel.sagemaker.session import (
    BUCKET_ENV,
    ROLE_ENV,
    ContainerVersions,
    LaunchError,
    check_instance_type,
    container_kwargs,
    container_versions,
    make_session,
    resolve_role,
)
from multilabel.sagemaker.training_job import TrainConfig

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def offline_boto_session() -> boto3.Session:
    return boto3.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_role_is_an_iam_role_arn_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROLE_ENV, raising=False)
    with pytest.raises(LaunchError, match=rf"no execution role: pass --role .* or set {ROLE_ENV}"):
        resolve_role(None)
    with pytest.raises(LaunchError, match=r"role 'admin' is not an IAM role ARN"):
        resolve_role("admin")
    assert resolve_role(ROLE) == ROLE
    monkeypatch.setenv(ROLE_ENV, ROLE)
    assert resolve_role(None) == ROLE


def test_a_session_needs_a_region(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(LaunchError, match=r"no AWS region: pass --region or set AWS_DEFAULT_REGION"):
        make_session(bucket="b")


def test_a_session_for_uploads_needs_a_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUCKET_ENV, raising=False)
    with pytest.raises(LaunchError, match=rf"no S3 bucket: pass --bucket or set {BUCKET_ENV}"):
        make_session(boto_session=offline_boto_session())


# ---------------------------------------------------------------- with the SDK (seconds to import)


@pytest.mark.slow
def test_a_session_takes_its_bucket_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUCKET_ENV, raising=False)
    without = make_session(boto_session=offline_boto_session(), need_bucket=False)
    assert without.boto_region_name == "us-east-1" and without._default_bucket_name_override is None
    monkeypatch.setenv(BUCKET_ENV, "from-the-environment")
    session = make_session(boto_session=offline_boto_session())
    assert session._default_bucket_name_override == "from-the-environment"
    given = make_session(bucket="given", boto_session=offline_boto_session())
    assert given._default_bucket_name_override == "given"


@pytest.mark.slow
def test_requested_versions_are_checked() -> None:
    assert container_versions("training") == ContainerVersions("4.56.2", "2.8.0", "py312")
    assert container_versions("inference") == ContainerVersions("4.51.3", "2.6.0", "py312")
    with pytest.raises(LaunchError, match=r"no Hugging Face training container for transformers 9.9.9"):
        container_versions("training", "9.9.9")
    with pytest.raises(
        LaunchError, match=r"transformers 4.56.2 has no training container with PyTorch 2.1.0"
    ):
        container_versions("training", "4.56.2", "2.1.0")
    with pytest.raises(LaunchError, match=r"has no py310 training image"):
        container_versions("training", "4.56.2", "2.8", "py310")


@pytest.mark.slow
def test_container_kwargs_name_the_versions_and_any_custom_image() -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/multilabel:0.1.0"
    config = TrainConfig(files={}, transformers_version="4.56.2", pytorch_version="2.8", image_uri=image)
    assert container_kwargs("training", config) == {
        "transformers_version": "4.56.2",
        "pytorch_version": "2.8.0",  # the SDK's alias, resolved
        "py_version": "py312",
        "image_uri": image,
    }
    assert "image_uri" not in container_kwargs("training", TrainConfig(files={}))


@pytest.mark.slow
def test_instance_types_are_checked_against_the_api_model() -> None:
    session = make_session(bucket="b", boto_session=offline_boto_session())
    check_instance_type(session, "ml.g5.2xlarge", "TrainingInstanceType")
    check_instance_type(session, "local_gpu", "TrainingInstanceType")  # local mode is not checked
    with pytest.raises(
        LaunchError, match=r"instance type 'ml.g5.huge' does not exist for this use; for example \['ml.g5"
    ):
        check_instance_type(session, "ml.g5.huge", "TrainingInstanceType")
    with pytest.raises(LaunchError, match=r"instance type 'xl' does not exist for this use$"):
        check_instance_type(session, "xl", "ProductionVariantInstanceType")


@pytest.mark.slow  # imports the SageMaker SDK
def test_execution_role_inside_sagemaker_else_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import sagemaker

    import multilabel.sagemaker.session as sagemaker_session
    from multilabel.sagemaker.session import execution_role

    monkeypatch.setattr(sagemaker_session, "SAGEMAKER_NOTEBOOK_METADATA", str(tmp_path / "absent.json"))
    monkeypatch.delenv(ROLE_ENV, raising=False)
    with pytest.raises(LaunchError, match=f"no execution role: outside SageMaker, set {ROLE_ENV}"):
        execution_role()
    monkeypatch.setenv(ROLE_ENV, ROLE)
    assert execution_role() == ROLE
    assert execution_role(role=ROLE.replace("SageMakerRole", "Other")).endswith("role/Other")

    metadata = tmp_path / "resource-metadata.json"
    metadata.write_text("{}")
    monkeypatch.setattr(sagemaker_session, "SAGEMAKER_NOTEBOOK_METADATA", str(metadata))
    notebook_role = "arn:aws:iam::123456789012:role/NotebookRole"
    monkeypatch.setattr(sagemaker, "get_execution_role", lambda session=None: notebook_role)
    assert execution_role() == notebook_role  # inside SageMaker: the notebook's own role

    def no_role(session=None):
        raise ValueError("The current AWS identity is not a role")

    monkeypatch.setattr(sagemaker, "get_execution_role", no_role)
    with pytest.raises(LaunchError, match="cannot tell this notebook's execution role"):
        execution_role()


def test_the_sdk_notices_are_quiet() -> None:
    import logging

    for name in ("sagemaker.config", "sagemaker.telemetry"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING
