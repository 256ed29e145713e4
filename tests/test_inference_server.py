"""inference.py inside the real Hugging Face inference toolkit and the real model server.

The model is the one train.py wrote in this test session (`sm_run`), served from a
SageMaker-shaped directory with the `code/` that training copied into it.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from multilabel.serving.request_codec import DeploymentError
from tests.conftest import SageMakerRun
from tests.helpers import DATA, LABELS, assert_same_decisions, read_csv
from tests.model_server import ModelServer, post, post_with_headers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEST_ROWS = read_csv(DATA / "test.csv")
RECORDS = [{"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in TEST_ROWS]
JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
# The tiny test model's own default token budget is millions (it is scaled to the model's
# size), so the server gets an explicit one; 200 records of at least 64 tokens (the test
# model's max_seq_length) exceed it, under the 256-record limit.
MAX_TOKENS = 8192
LONG_RECORDS = [{"casePart1": "perl module " * 60, "casePart2": "parses things " * 60}] * 200


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
        json.dumps({"inputs": [RECORDS[0], {}]}).encode(),
        JSON,
        None,
        "inputs[1]: no text field",
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
    (
        b"casePart1,casePart2,casePart2\na,b,c\n",
        CSV,
        None,
        "CSV header: column(s) ['casePart2'] appear more than once; name each column once",
    ),
    (b"a perl module,it parses\nanother,row\n", CSV, None, "the header row seems missing"),
    (
        b'{"inputs": {"casePart1": "a \\ud800"}}',
        JSON,
        None,
        "inputs: field 'casePart1' is not valid Unicode: lone surrogate '\\ud800' at character 2",
    ),
    (
        json.dumps({"inputs": LONG_RECORDS}).encode(),
        JSON,
        None,
        "request too large: 12800 tokens after truncation to 64 per record, at most 8192 per request "
        "(MULTILABEL_MAX_TOKENS); split it into requests of about 128 records like these",
    ),
    # Accept is checked before the body is even parsed.
    (b"{not json", JSON, "text/html", "unsupported accept type 'text/html'"),
    (json.dumps(RECORDS[0]).encode(), JSON, "application/json;q=0", "unsupported accept type"),
    (json.dumps(RECORDS[0]).encode(), JSON, "application/json;q=x", "Accept header: q-value 'x' is not"),
]


@pytest.fixture(scope="module")
def server(sm_run: SageMakerRun, tmp_path_factory: pytest.TempPathFactory):
    """One real model server for the module."""
    model_server = ModelServer(
        sm_run.model_dir, tmp_path_factory.mktemp("model-server"), {"MULTILABEL_MAX_TOKENS": str(MAX_TOKENS)}
    )
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


def test_int8_precision_through_the_model_server(
    server: ModelServer, sm_run: SageMakerRun, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """MULTILABEL_PRECISION=int8 in the real model server answers within int8's parity margin.

    Its own server, beside the module's: the toolkit once took any model server on the
    machine for its own, and stopping this one killed the other (serve.LAUNCHER).
    """
    from tests.test_runtime import assert_int8_parity

    env = {"MULTILABEL_MAX_TOKENS": str(MAX_TOKENS), "MULTILABEL_PRECISION": "int8"}
    int8_server = ModelServer(sm_run.model_dir, tmp_path_factory.mktemp("model-server-int8"), env)
    int8_server.start(probe=json.dumps({"inputs": RECORDS[0]}).encode())
    try:
        status, body = invoke(int8_server, json.dumps({"inputs": RECORDS}).encode())
        assert status == 200, body
        int8_server.wait_for_log("runtime: precision int8, ")
    finally:
        int8_server.stop()
    assert invoke(server, json.dumps({"inputs": RECORDS[0]}).encode())[0] == 200, (
        "stopping one model server left the other serving"
    )
    scores = np.array([[r["scores"][n] for n in LABELS] for r in json.loads(body)])
    thresholds = json.loads((sm_run.model_dir / "classifier_config.json").read_text())["thresholds"]
    assert_int8_parity(scores, reference_probabilities(sm_run), np.array([thresholds[n] for n in LABELS]))


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
    assert status == 400, text
    assert message in json.loads(text)["message"], text
    status, _ = invoke(server, json.dumps({"inputs": RECORDS[0]}).encode())
    assert status == 200, "the server answers a good request after a bad one"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("application/json, text/plain", JSON),
        ("*/*;q=0.8", JSON),
        ("application/*", JSON),
        ("text/html, application/jsonlines;q=0.5, application/json;q=0.4", JSONLINES),
    ],
)
def test_accept_lists_and_q_values(server: ModelServer, accept: str, chosen: str) -> None:
    body = json.dumps({"inputs": RECORDS[:2]}).encode()
    status, headers, payload = post_with_headers(f"{server.url}/invocations", body, JSON, accept)
    assert status == 200, payload
    assert headers["content-type"] == chosen  # the type chosen, not the raw Accept header
    results = json.loads(payload) if chosen == JSON else [json.loads(x) for x in payload.splitlines()]
    assert len(results) == 2 and set(results[0]) == {"labels", "scores"}


def test_csv_with_a_byte_order_mark(server: ModelServer) -> None:
    _, plain = invoke(server, to_csv(RECORDS[:3]), CSV)
    status, with_bom = invoke(server, b"\xef\xbb\xbf" + to_csv(RECORDS[:3]), CSV)
    assert status == 200 and json.loads(with_bom) == json.loads(plain)


MARK = "zebra-quokka-secret-text"
# A marker in every place a client controls, each refused with a message that names it;
# (body, content type, accept, expected text in the 400 message).
MARKED_REQUESTS = [
    ({"inputs": {"casePart1": "a", MARK: "x"}}, JSON, None, f"inputs: unknown field(s) ['{MARK}']"),
    ({"inputs": {"casePart1": "a"}, MARK: 1}, JSON, None, f"unknown top-level key(s) ['{MARK}']"),
    ({"inputs": {"casePart1": "a"}, "parameters": {MARK: 1}}, JSON, None, f"unknown parameter(s) ['{MARK}']"),
    (
        {"inputs": {"casePart1": "a"}, "parameters": {"threshold": {MARK: 0.5}}},
        JSON,
        None,
        f"parameter 'threshold': unknown label '{MARK}'",
    ),
    (
        {"inputs": {"casePart1": "a"}, "parameters": {"threshold": MARK}},
        JSON,
        None,
        "must be a number in [0, 1]",
    ),
    ({"inputs": {"casePart1": "a"}, "parameters": {"top_k": MARK}}, JSON, None, "'top_k' must be a positive"),
    ({"inputs": {"casePart1": "a"}, "parameters": {"return_scores": MARK}}, JSON, None, "true or false"),
    ({"inputs": [{"casePart1": MARK}, MARK]}, JSON, None, "inputs[1]: a record must be an object"),
    ({"inputs": {"casePart1": MARK + " \ud800"}}, JSON, None, "lone surrogate"),
    ({"inputs": [{"casePart1": MARK * 20}] * 200}, JSON, None, "request too large"),
    (f'{{"casePart1": "{MARK}"}}\n{{"{MARK}": nope}}\n', JSONLINES, None, "line 2 is not valid JSON"),
    (f'{{"casePart1": "{MARK}", "{MARK}": 1}}\n', JSONLINES, None, f"line 1: unknown field(s) ['{MARK}']"),
    (f"{MARK},casePart2\na,b\n", CSV, None, f"CSV row 1: unknown field(s) ['{MARK}']"),
    (f"casePart1,{MARK},{MARK}\na,b,c\n", CSV, None, f"column(s) ['{MARK}'] appear more than once"),
    (f"{MARK} in a first row,{MARK}\nsecond,row\n", CSV, None, "the header row seems missing"),
    (f"casePart1\n{MARK},{MARK}\n", CSV, None, "CSV row 1 has 2 fields, the header has 1"),
    ({"inputs": {"casePart1": MARK}}, JSON, f"text/{MARK}", f"unsupported accept type 'text/{MARK}'"),
    ({"inputs": {"casePart1": MARK}}, JSON, f"{JSON};q={MARK}", f"q-value '{MARK}' is not a number"),
    (MARK, f"text/{MARK}", None, f"unsupported content type 'text/{MARK}'"),
    (MARK, JSON, None, "body is not valid JSON"),
]


def test_request_content_stays_out_of_the_logs(server: ModelServer) -> None:
    """The 400 bodies name what was wrong; the log gets the error's kind and position only."""
    refused = "request refused (400): "
    refused_before = server.log_tail(10**8).count(refused)  # the server is shared with other tests
    status, _ = invoke(server, json.dumps({"inputs": {"casePart1": MARK}}).encode())
    assert status == 200
    for body, content_type, accept, message in MARKED_REQUESTS:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        status, text = invoke(server, data, content_type, accept)
        assert status == 400 and message in json.loads(text)["message"], (message, text)
    # every refusal logged, so that nothing the requests could write is still on its way
    log = server.wait_for_log(refused, count=refused_before + len(MARKED_REQUESTS))
    assert MARK not in log, "request content reached the model server's log"
    assert "request refused (400): unknown field at inputs" in log
    assert "request refused (400): repeated CSV column at CSV header" in log


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


class InProcessServer:
    """The toolkit's HuggingFaceHandlerService called as Multi Model Server calls it.

    One `Context` for the model's lifetime, given the current request's headers before
    each call (mms.service.Service.predict); the hooks' `context` argument is that object.
    """

    def __init__(self, model_dir: Path):
        from mms.context import Context
        from sagemaker_huggingface_inference_toolkit.handler_service import HuggingFaceHandlerService

        self.context = Context("model", str(model_dir), {}, 1, None, "1.1.11")
        self.set_headers(JSON, None)
        self.service = HuggingFaceHandlerService()

    def set_headers(self, content_type: str, accept: str | None) -> None:
        from mms.context import RequestProcessor
        from mms.metrics.metrics_store import MetricsStore

        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        self.context.request_processor = [RequestProcessor(headers)]
        self.context.metrics = MetricsStore({0: "request-0"}, "model")

    def handle(self, body: bytes, content_type: str = JSON, accept: str | None = None) -> str:
        self.set_headers(content_type, accept)
        (response,) = self.service.handle([{"body": body}], self.context)
        return response


def test_handler_in_process(sm_run: SageMakerRun) -> None:
    """The toolkit's HuggingFaceHandlerService, initialised and called in this process."""
    from mms.service import PredictionException

    server = InProcessServer(sm_run.model_dir)
    server.service.initialize(server.context)
    assert type(server.service.model).__name__ == "Classifier"

    body = json.dumps({"inputs": RECORDS[:4], "parameters": {"top_k": 1}}).encode()
    results = json.loads(server.handle(body))
    assert len(results) == 4 and all(len(r["labels"]) <= 1 for r in results)
    assert server.context.get_response_content_type(0) == JSON

    lines = "".join(json.dumps(r) + "\n" for r in RECORDS[:3]).encode()
    assert len(server.handle(lines, JSONLINES, JSONLINES).splitlines()) == 3
    assert server.context.get_response_content_type(0) == JSONLINES

    assert len(json.loads(server.handle(body, JSON, "text/plain, application/*;q=0.5"))) == 4
    assert server.context.get_response_content_type(0) == JSON

    with pytest.raises(PredictionException) as info:
        server.handle(b'{"inputs": {"casePart1": 3}}')
    assert info.value.error_code == 400
    assert "inputs: field 'casePart1' must be a string, found int" in info.value.message

    # Accept is refused in input_fn, before predict_fn: the model is never called.
    model = server.service.model.model
    server.service.model.model = None
    with pytest.raises(PredictionException) as info:
        server.handle(body, JSON, "text/html")
    server.service.model.model = model
    assert (
        info.value.message
        == "unsupported accept type 'text/html'; use one of ['application/json', 'application/jsonlines']"
    )


@pytest.mark.parametrize(
    ("env", "thresholds", "message"),
    [
        (
            {"MULTILABEL_BATCH_SIZE": "-4"},
            None,
            "  - MULTILABEL_BATCH_SIZE='-4': expected a positive integer (default 8); fix or unset it in the "
            "endpoint's environment",
        ),
        (
            {"MULTILABEL_MAX_RECORDS": "abc"},
            None,
            "  - MULTILABEL_MAX_RECORDS='abc': expected a positive integer (default 256)",
        ),
        (
            {},
            {"label3": None},
            "  - classifier_config.json: thresholds: no threshold for label(s) ['label3'] of config.json's id2label",
        ),
    ],
    ids=["batch-size", "max-records", "threshold"],
)
def test_a_broken_deployment_fails_at_start_up(
    sm_run: SageMakerRun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    thresholds: dict | None,
    message: str,
) -> None:
    """model_fn refuses to load, so the model is never served (rather than 400 on every request)."""
    model_dir = Path(shutil.copytree(sm_run.model_dir, tmp_path / "model"))
    if thresholds:
        path = model_dir / "classifier_config.json"
        config = json.loads(path.read_text())
        config["thresholds"] = {k: v for k, v in config["thresholds"].items() if k not in thresholds}
        path.write_text(json.dumps(config))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server = InProcessServer(model_dir)
    with pytest.raises(DeploymentError) as info:
        server.service.initialize(server.context)
    assert not server.service.initialized, "a broken deployment must not be served"
    assert str(info.value).startswith(f"cannot serve {model_dir}: 1 problem(s)\n")
    assert message in str(info.value)
