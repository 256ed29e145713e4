"""Batch Transform on real files: the job's settings (`transform_limits`, `data_processing`)
against an emulation of the service's data handling (tests/batch_transform.py) in front of
the real model server, and what `launch.py batch` asks of SageMaker (through moto)."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import boto3
import pytest

from multilabel.data.schema import DEFAULT_TEXT_COLUMNS
from multilabel.sagemaker.endpoint import (
    SPECIAL_TOKENS_PER_RECORD,
    data_processing,
    transform_limits,
)
from multilabel.serving.request_codec import DEFAULT_MAX_RECORDS, MAX_RECORDS_ENV, MAX_TOKENS_ENV
from tests.batch_transform import MB, TransformError, mini_batches, transform
from tests.conftest import SageMakerRun
from tests.helpers import DATA, read_csv
from tests.model_server import ModelServer, post
from tests.moto_aws import BUCKET, REGION, ROLE

JSONLINES = "application/jsonlines"
RECORD_COUNT = 6000
LIMITS = transform_limits()
ID_FILTERS = data_processing("id", DEFAULT_TEXT_COLUMNS)


def varied_records(count: int, seed: int = 11) -> list[dict]:
    """Records as real files hold them: mostly very short, some of several KB, a few far past
    max_seq_length (64 tokens for the test model), in mixed scripts, each with an id."""
    rng = random.Random(seed)
    rows = read_csv(DATA / "train.csv")
    words = " ".join(r["casePart1"] + " " + r["casePart2"] for r in rows).split()
    odd = ["naïve", "日本語のテキスト", "emoji 🎉🎉", "a\tb", 'quote " and \\ slash', "!!!???...", "ünïcödé"]

    def text(n_words: int) -> str:
        return " ".join(rng.choice(words) if rng.random() > 0.05 else rng.choice(odd) for _ in range(n_words))

    records = []
    for i in range(count):
        kind = rng.random()
        if kind < 0.6:  # very short: a word or two, sometimes nothing in the pair
            record = {"casePart1": text(rng.randint(0, 2)), "casePart2": text(rng.randint(0, 1))}
        elif kind < 0.9:
            record = {"casePart1": text(rng.randint(3, 40)), "casePart2": text(rng.randint(3, 40))}
        elif kind < 0.99:  # several KB
            record = {"casePart1": text(rng.randint(300, 900)), "casePart2": text(rng.randint(0, 300))}
        else:  # far past max_seq_length on both sides (the pair-clipping path)
            record = {"casePart1": text(3000), "casePart2": text(2500)}
        if rng.random() < 0.05:
            del record["casePart2"]  # the second text is optional
        ident: int | str = (
            i if rng.random() < 0.5 else f"row-{i}-" + "".join(rng.choices(string.ascii_letters, k=5))
        )
        records.append({"id": ident, **record})
    return records


RECORDS = varied_records(RECORD_COUNT)
LINES = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in RECORDS]


def test_the_limits_follow_from_the_payload() -> None:
    """The record limit holds a payload of the shortest records; the token limit is the
    payload plus the specials of that many records; both timeouts at the service's hour."""
    assert LIMITS.max_payload_mb == 1
    records = int(LIMITS.environment[MAX_RECORDS_ENV])
    assert records == MB // 9 + 1
    assert int(LIMITS.environment[MAX_TOKENS_ENV]) == MB + SPECIAL_TOKENS_PER_RECORD * records
    assert LIMITS.environment["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == "3600"
    assert LIMITS.invocations_timeout_s == 3600
    shortest = [b'{"a":""}\n'] * (2 * MB // 9)
    assert max(len(batch) for batch in mini_batches(shortest, LIMITS.max_payload_mb)) <= records
    assert ID_FILTERS == {
        "input_filter": "$['casePart1','casePart2']",
        "join_source": "Input",
        "output_filter": "$['id','SageMakerOutput']",
    }
    assert data_processing(None, DEFAULT_TEXT_COLUMNS) == {}


@pytest.mark.slow
def test_the_token_limit_bounds_every_mini_batch(sm_run: SageMakerRun) -> None:
    """With the model's own tokenizer: each record's tokens after truncation are at most its
    text's UTF-8 bytes plus SPECIAL_TOKENS_PER_RECORD, so a mini-batch never exceeds the limit."""
    from multilabel.serving.classifier import Classifier
    from multilabel.text.pair_encoding import encode_pairs

    classifier = Classifier.load(sm_run.model_dir, device="cpu")
    columns = classifier.config.text_columns
    firsts = [r.get(columns[0], "") for r in RECORDS]
    seconds = [r.get(columns[1], "") for r in RECORDS]
    firsts, seconds = classifier.clip_pairs(firsts, seconds)
    features, _ = encode_pairs(
        classifier.tokenizer, firsts, seconds, classifier.config.max_seq_length, classifier.config.truncation
    )
    for record, ids in zip(RECORDS, features["input_ids"], strict=True):
        text_bytes = sum(len(record.get(c, "").encode()) for c in columns)
        assert len(ids) <= text_bytes + SPECIAL_TOKENS_PER_RECORD, record


def serve(model_dir: Path, workdir: Path, env: dict[str, str]) -> ModelServer:
    server = ModelServer(model_dir, workdir, env)
    server.start(probe=json.dumps({"inputs": {"casePart1": "probe"}}).encode())
    return server


def invoker(server: ModelServer):
    def invoke(body: bytes) -> tuple[int, bytes]:
        return post(f"{server.url}/invocations", body, JSONLINES, JSONLINES, timeout=600)

    return invoke


@pytest.mark.integration
@pytest.mark.slow
def test_batch_transform_of_real_records_through_the_model_server(
    sm_run: SageMakerRun, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """6,000 records of every length, packed as the service packs them, through the real
    model server with the transform job's settings: every output line is its input's id with
    its labels and scores, in order; the scores are the in-process classifier's. With the
    endpoint's default settings the same requests are refused (the negative control)."""
    import numpy as np

    from multilabel.serving.classifier import Classifier

    model_dir = sm_run.model_dir
    batches = list(mini_batches(LINES, LIMITS.max_payload_mb))
    assert len(batches) >= 2 and max(len(b) for b in batches) > DEFAULT_MAX_RECORDS
    assert sum(len(line) for line in LINES) > 2 * MB

    server = serve(model_dir, tmp_path_factory.mktemp("transform-server"), LIMITS.environment)
    try:
        output = transform(LINES, invoker(server), LIMITS.max_payload_mb, **ID_FILTERS)
    finally:
        server.stop()
    assert len(output) == len(RECORDS)
    results = [json.loads(line) for line in output]
    label_names = None
    for record, result in zip(RECORDS, results, strict=True):
        assert set(result) == {"id", "SageMakerOutput"}
        assert result["id"] == record["id"]
        assert set(result["SageMakerOutput"]) == {"labels", "scores"}
        label_names = label_names or list(result["SageMakerOutput"]["scores"])
        assert list(result["SageMakerOutput"]["scores"]) == label_names
        assert set(result["SageMakerOutput"]["labels"]) <= set(label_names)

    classifier = Classifier.load(model_dir, device="cpu")
    sample = sorted(random.Random(3).sample(range(len(RECORDS)), 300))
    expected = classifier.predict([{k: v for k, v in RECORDS[i].items() if k != "id"} for i in sample])
    for i, want in zip(sample, expected, strict=True):
        got = results[i]["SageMakerOutput"]
        np.testing.assert_allclose(
            [got["scores"][n] for n in label_names], [want["scores"][n] for n in label_names], atol=1e-5
        )
        assert got["labels"] == want["labels"]

    # Negative control: the endpoint's default settings refuse these mini-batches.
    server = serve(model_dir, tmp_path_factory.mktemp("default-server"), {})
    try:
        with pytest.raises(TransformError, match=r"got HTTP 400: .*too many records"):
            transform(LINES, invoker(server), LIMITS.max_payload_mb, **ID_FILTERS)
    finally:
        server.stop()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_launch_batch_creates_the_job_with_those_settings() -> None:
    """`launch.py batch --id-field id`, through the real SDK to moto: the transform job has the
    settings the emulation above was run with."""
    import launch

    sm = boto3.client("sagemaker", region_name=REGION)
    image = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/huggingface-pytorch-inference:2.6.0-cpu"
    sm.create_model(
        ModelName="tags-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": image, "ModelDataUrl": f"s3://{BUCKET}/m/model.tar.gz"},
    )
    argv = ["batch", "--model-name", "tags-model", "--input", f"s3://{BUCKET}/in/records.jsonl"]
    assert launch.main([*argv, "--output", f"s3://{BUCKET}/out/", "--id-field", "id", "--no-wait"]) == 0
    (summary,) = sm.list_transform_jobs()["TransformJobSummaries"]
    job = sm.describe_transform_job(TransformJobName=summary["TransformJobName"])
    assert job["Environment"] == LIMITS.environment
    assert job["MaxPayloadInMB"] == LIMITS.max_payload_mb
    assert job["BatchStrategy"] == "MultiRecord"
    assert job["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 3600, "InvocationsMaxRetries": 1}
    assert job["DataProcessing"] == {
        "InputFilter": ID_FILTERS["input_filter"],
        "OutputFilter": ID_FILTERS["output_filter"],
        "JoinSource": "Input",
    }
    assert job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformInput"]["ContentType"] == JSONLINES
    assert job["TransformOutput"]["AssembleWith"] == "Line"
    assert job["TransformOutput"]["Accept"] == JSONLINES
