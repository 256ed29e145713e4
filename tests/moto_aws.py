"""An emulated AWS account for the SageMaker tests: the moto server on 127.0.0.1, and helpers.

conftest.py imports this module's fixtures, so every test file has them; a test asks for the
account with `@pytest.mark.usefixtures("aws")`, and the server's address is then in
AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from multilabel.core.artifact import pack_model
from multilabel.sagemaker.session import make_session
from tests.model_server import free_port

if TYPE_CHECKING:
    from tests.conftest import SageMakerRun

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
    return make_session(bucket=BUCKET, boto_session=boto_session)


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


def queue_endpoint_answer(results: list) -> None:
    """moto answers the next invocation with this body (its endpoints run no model)."""
    queue = {"results": [{"Body": json.dumps(results), "ContentType": "application/json"}]}
    request = urllib.request.Request(
        f"{os.environ['AWS_ENDPOINT_URL']}/moto-api/static/sagemaker/endpoint-results",
        data=json.dumps(queue).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request)
