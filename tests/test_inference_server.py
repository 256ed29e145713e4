"""inference.py inside the real Hugging Face inference toolkit and the real model server.

The model is the one train.py wrote in this test session (`sm_run`), served from a
SageMaker-shaped directory with the `code/` that training copied into it.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SageMakerRun
from tests.helpers import DATA, LABELS, assert_same_decisions, read_csv
from tests.model_server import ModelServer, post

pytestmark = pytest.mark.integration

TEST_ROWS = read_csv(DATA / "test.csv")
RECORDS = [{"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in TEST_ROWS]
JSON = "application/json"
JSONLINES = "application/jsonlines"


def to_csv(records: list[dict]) -> bytes:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["casePart1", "casePart2"])
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue().encode()


# (body, content type, accept, expected text in the 400 message)
BAD_REQUESTS = [
    (b"{not json", JSON, None, "body is not valid JSON"),
    (json.dumps({"inputs": ["just a string"]}).encode(), JSON, None, "inputs[0]: a record must be an object"),
    (
        json.dumps({"inputs": [RECORDS[0], {"casePart2": "x"}]}).encode(),
        JSON,
        None,
        "inputs[1]: missing field 'casePart1'",
    ),
    (
        json.dumps({"inputs": {"casePart1": "a", "casePart2": 7}}).encode(),
        JSON,
        None,
        "inputs: field 'casePart2' must be a string, found int",
    ),
    (
        json.dumps({"inputs": RECORDS[0], "parameters": {"temperature": 1}}).encode(),
        JSON,
        None,
        "unknown parameter(s) ['temperature']",
    ),
    (
        json.dumps({"inputs": RECORDS[0], "parameters": {"threshold": 2}}).encode(),
        JSON,
        None,
        "parameter 'threshold' must be in [0, 1], found 2",
    ),
    (
        json.dumps({"inputs": RECORDS[:1] * 257}).encode(),
        JSON,
        None,
        "too many records: 257, at most 256 per request",
    ),
    (b"hello", "text/plain", None, "unsupported content type 'text/plain'"),
    (json.dumps(RECORDS[0]).encode(), JSON, "text/html", "unsupported accept type 'text/html'"),
    (
        b'{"casePart1": "a"}\n{"casePart1": 1}\n',
        JSONLINES,
        JSONLINES,
        "line 2: field 'casePart1' must be a string, found int",
    ),
    (b"casePart1,casePart2\na,b,c\n", "text/csv", None, "CSV row 1 has 3 fields, the header has 2"),
]


@pytest.fixture(scope="module")
def server(sm_run: SageMakerRun, tmp_path_factory: pytest.TempPathFactory):
    """One real model server for the module: only one can run per machine."""
    model_server = ModelServer(sm_run.model_dir, tmp_path_factory.mktemp("model-server"))
    model_server.start(probe=json.dumps({"inputs": RECORDS[0]}).encode())
    yield model_server
    model_server.stop()


def invoke(server: ModelServer, body: bytes, content_type: str = JSON, accept: str | None = None):
    status, payload = post(f"{server.url}/invocations", body, content_type, accept)
    return status, payload.decode()


def reference_probabilities(sm_run: SageMakerRun) -> np.ndarray:
    """What train.py computed for its test metrics, row by row."""
    predictions = read_csv(sm_run.output_data_dir / "test_predictions.csv")
    return np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions])


def test_ping(server: ModelServer) -> None:
    with urllib.request.urlopen(f"{server.url}/ping", timeout=10) as response:
        assert response.status == 200


def test_endpoint_scores_equal_training_test_probabilities(server: ModelServer, sm_run: SageMakerRun) -> None:
    status, body = invoke(server, json.dumps({"inputs": RECORDS}).encode())
    assert status == 200, body
    results = json.loads(body)
    scores = np.array([[r["scores"][n] for n in LABELS] for r in results])
    np.testing.assert_allclose(scores, reference_probabilities(sm_run), atol=1e-5, rtol=0)
    thresholds = json.loads((sm_run.model_dir / "classifier_config.json").read_text())["thresholds"]
    training_labels = read_csv(sm_run.output_data_dir / "test_predictions.csv")
    assert_same_decisions(results, training_labels, thresholds)


def test_every_content_type_gives_the_same_answer(server: ModelServer) -> None:
    records = RECORDS[:5]
    _, as_json = invoke(server, json.dumps({"inputs": records}).encode())
    _, bare = invoke(server, json.dumps(records).encode(), JSON, "*/*")
    _, as_lines = invoke(
        server, "".join(json.dumps(r) + "\n" for r in records).encode(), JSONLINES, JSONLINES
    )
    _, as_csv = invoke(server, to_csv(records), "text/csv", JSON)
    expected = json.loads(as_json)
    assert len(expected) == 5
    for other in (json.loads(bare), [json.loads(line) for line in as_lines.splitlines()], json.loads(as_csv)):
        assert [r["labels"] for r in other] == [r["labels"] for r in expected]
        np.testing.assert_allclose(
            [[r["scores"][n] for n in LABELS] for r in other],
            [[r["scores"][n] for n in LABELS] for r in expected],
            atol=1e-5,
        )
    status, single = invoke(server, json.dumps({"inputs": {"casePart1": RECORDS[0]["casePart1"]}}).encode())
    assert status == 200 and set(json.loads(single)) == {"labels", "scores"}


def test_parameters_through_the_server(server: ModelServer) -> None:
    body = {"inputs": RECORDS[:3], "parameters": {"threshold": 0.0, "top_k": 2, "return_scores": False}}
    status, text = invoke(server, json.dumps(body).encode())
    assert status == 200, text
    assert json.loads(text) == [{"labels": r["labels"]} for r in json.loads(text)]
    assert all(len(r["labels"]) == 2 for r in json.loads(text))
    per_label = {"inputs": RECORDS[:3], "parameters": {"threshold": dict.fromkeys(LABELS, 1.0)}}
    _, text = invoke(server, json.dumps(per_label).encode())
    assert all(r["labels"] == [] for r in json.loads(text))


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "message"),
    BAD_REQUESTS,
    ids=[m.split(":")[0][:40] for *_, m in BAD_REQUESTS],
)
def test_bad_requests_get_400_and_the_server_keeps_serving(
    server: ModelServer, body: bytes, content_type: str, accept: str | None, message: str
) -> None:
    status, text = invoke(server, body, content_type, accept)
    assert status == 400
    assert message in json.loads(text)["message"]
    status, _ = invoke(server, json.dumps({"inputs": RECORDS[0]}).encode())
    assert status == 200


def test_request_content_stays_out_of_the_logs(server: ModelServer) -> None:
    secret = "zebra-quokka-secret-text"
    status, _ = invoke(server, json.dumps({"inputs": {"casePart1": secret}}).encode())
    assert status == 200
    time.sleep(0.5)
    assert secret not in server.log_tail(10**7)


def test_load_500_requests_8_concurrent(server: ModelServer) -> None:
    """Mixed single and batch requests; no error allowed. Latencies are reported, not asserted."""
    rng = np.random.default_rng(0)
    bodies = []
    for i in range(500):
        size = 1 if i % 2 == 0 else int(rng.integers(2, 33))
        start = int(rng.integers(0, len(RECORDS) - size))
        inputs = RECORDS[start] if size == 1 else RECORDS[start : start + size]
        bodies.append(json.dumps({"inputs": inputs}).encode())

    def timed(body: bytes) -> tuple[int, float]:
        began = time.perf_counter()
        status, _ = post(f"{server.url}/invocations", body, JSON)
        return status, time.perf_counter() - began

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(timed, bodies))
    elapsed = time.perf_counter() - began
    statuses = [s for s, _ in outcomes]
    latencies = sorted(t * 1000 for _, t in outcomes)
    assert statuses.count(200) == 500, {s: statuses.count(s) for s in set(statuses)}
    report = {
        "requests": 500,
        "concurrency": 8,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(500 / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[int(0.99 * len(latencies)) - 1], 1),
    }
    Path(server.workdir / "load_test.json").write_text(json.dumps(report))
    print(f"\nload test: {report}")


def test_handler_in_process(sm_run: SageMakerRun) -> None:
    """The toolkit's HuggingFaceHandlerService, initialised and called in this process."""
    from mms.context import Context, RequestProcessor
    from mms.metrics.metrics_store import MetricsStore
    from mms.service import PredictionException
    from sagemaker_huggingface_inference_toolkit.handler_service import HuggingFaceHandlerService

    def context_for(content_type: str, accept: str | None) -> Context:
        context = Context("model", str(sm_run.model_dir), {}, 1, None, "1.1.11")
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        context.request_processor = [RequestProcessor(headers)]
        context.metrics = MetricsStore({0: "request-0"}, "model")
        return context

    service = HuggingFaceHandlerService()
    service.initialize(context_for(JSON, None))
    assert type(service.model).__name__ == "Classifier"

    body = json.dumps({"inputs": RECORDS[:4], "parameters": {"top_k": 1}}).encode()
    context = context_for(JSON, None)
    (response,) = service.handle([{"body": body}], context)
    results = json.loads(response)
    assert len(results) == 4 and all(len(r["labels"]) <= 1 for r in results)
    assert context.get_response_content_type(0) == JSON

    lines = "".join(json.dumps(r) + "\n" for r in RECORDS[:3]).encode()
    (response,) = service.handle([{"body": lines}], context_for(JSONLINES, JSONLINES))
    assert len(response.splitlines()) == 3

    with pytest.raises(PredictionException) as info:
        service.handle([{"body": b'{"inputs": {"casePart1": null}}'}], context_for(JSON, None))
    assert info.value.error_code == 400
    assert "inputs: field 'casePart1' must be a string, found NoneType" in info.value.message
