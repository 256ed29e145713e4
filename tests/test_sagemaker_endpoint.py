"""multilabel.sagemaker.endpoint through the real SageMaker SDK and boto3, against the moto
AWS API emulator running as a server on 127.0.0.1; request batching offline."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from multilabel.core.job_source import package_imports
from multilabel.sagemaker.endpoint import DeployConfig, batch_transform, delete, deploy, predict
from multilabel.sagemaker.session import LaunchError
from multilabel.serving.request_codec import DEFAULT_MAX_RECORDS
from tests.conftest import SageMakerRun
from tests.helpers import ROOT
from tests.moto_aws import (
    BUCKET,
    INFERENCE_IMAGE,
    REGION,
    ROLE,
    capturing_session,
    queue_endpoint_answer,
    tar_names,
    upload_model,
)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_deploy_predict_delete(sm_run: SageMakerRun, tmp_path: Path) -> None:
    upload_model(sm_run, tmp_path, "trained/model.tar.gz")
    captured: dict = {}
    session = capturing_session(captured)
    predictor = deploy(
        session,
        DeployConfig(
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
    # The repacked artifact carries the handler at code/inference.py, with the modules it imports.
    repacked = container["ModelDataUrl"].split(f"{BUCKET}/", 1)[1]
    names = tar_names(repacked)
    assert {
        "code/inference.py",
        "code/multilabel/serving/classifier.py",
        "code/multilabel/serving/request_codec.py",
        "config.json",
        "model.safetensors",
    } <= names
    assert "code/train.py" not in names and "code/requirements.txt" not in names
    code = {n for n in names if n.startswith("code/multilabel/")}
    assert not {"code/multilabel/training/pipeline.py", "code/multilabel/sagemaker/endpoint.py"} & code
    modules = package_imports(ROOT / "inference.py")
    inits = {"__init__", *(f"{m.split('.')[0]}.__init__" for m in modules)}
    assert code == {f"code/multilabel/{m.replace('.', '/')}.py" for m in modules | inits}

    # predict: moto returns what is queued for the endpoint; here, real handler output.
    from multilabel.serving.classifier import Classifier

    records = [{"casePart1": "Perl module for parsing CSV files", "casePart2": ""}]
    expected = Classifier.load(sm_run.model_dir, device="cpu").predict(records)
    queue_endpoint_answer(expected)
    assert predict(session, "tags", records) == expected

    assert delete(session, "tags") == [
        "endpoint tags",
        f"endpoint config {endpoint['EndpointConfigName']}",
        f"model {model_name}",
    ]
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
    with pytest.raises(LaunchError, match="endpoint tags not found"):
        delete(session, "tags")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_serverless_deploy(sm_run: SageMakerRun, tmp_path: Path) -> None:
    upload_model(sm_run, tmp_path, "m/model.tar.gz")
    deploy(
        capturing_session({}),
        DeployConfig(
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


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_batch_transform_job(sm_run: SageMakerRun, tmp_path: Path) -> None:
    upload_model(sm_run, tmp_path, "m/model.tar.gz")
    captured: dict = {}
    session = capturing_session(captured)
    deploy(
        session,
        DeployConfig(model=f"s3://{BUCKET}/m/model.tar.gz", role=ROLE, endpoint_name="b", wait=False),
    )
    model_name = captured["CreateModel"]["ModelName"]
    name = batch_transform(
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


class FakeRuntime:
    """sagemaker-runtime's invoke_endpoint, answering one result per record it is sent."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def invoke_endpoint(self, **kwargs) -> dict:
        self.calls.append(kwargs)
        records = json.loads(kwargs["Body"])["inputs"]
        return {"Body": io.BytesIO(json.dumps([{"labels": [r["casePart1"]]} for r in records]).encode())}


def test_predict_sends_at_most_the_endpoints_record_limit_a_request() -> None:
    runtime = FakeRuntime()
    session = SimpleNamespace(boto_session=SimpleNamespace(client=lambda name: runtime))
    records = [{"casePart1": str(i)} for i in range(DEFAULT_MAX_RECORDS + 1)]
    results = predict(session, "tags", records, {"top_k": 2})
    assert [r["labels"] for r in results] == [[str(i)] for i in range(len(records))]  # in order
    bodies = [json.loads(call["Body"]) for call in runtime.calls]
    assert [len(b["inputs"]) for b in bodies] == [DEFAULT_MAX_RECORDS, 1]
    assert all(b["parameters"] == {"top_k": 2} for b in bodies)
    assert {(c["EndpointName"], c["ContentType"], c["Accept"]) for c in runtime.calls} == {
        ("tags", "application/json", "application/json")
    }
    predict(session, "tags", records[:1])
    assert "parameters" not in json.loads(runtime.calls[-1]["Body"])  # none given, none sent
