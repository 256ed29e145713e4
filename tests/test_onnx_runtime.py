"""The ONNX Runtime path (MULTILABEL_RUNTIME=onnx): export, start-up checks, parity, contract.

The session's tiny model is exported once (`python -m multilabel.onnx_export`'s function)
into a copy of its model directory. ONNX fp32 must give PyTorch's scores (to 1e-4) and
the same labels; ONNX int8 is held to the margin of PyTorch's int8 (test_runtime.py):
scores within SCORE_TOLERANCE, labels equal wherever fp32's score is more than
DECISION_MARGIN from the threshold. Both paths must answer requests, good and bad,
exactly as the PyTorch path does, and refuse to start, naming why, without onnxruntime
(the Hugging Face inference container, here `.venv-serving`), without the ONNX file, or
with a file exported from other weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from multilabel.core.artifact import file_sha256
from multilabel.serving.classifier import Classifier
from multilabel.serving.onnx_runtime import EXPORT_RECORD, OnnxModel, onnx_path, onnx_problems
from multilabel.serving.request_codec import DeploymentError
from multilabel.serving.runtime import PRECISION_ENV, RUNTIME_ENV, RuntimeSettings
from tests.conftest import SageMakerRun
from tests.helpers import LABELS, read_csv
from tests.model_server import ModelServer, post
from tests.test_runtime import RECORDS, SERVING_PYTHON, assert_int8_parity

FP32_TOLERANCE = 1e-4  # the same float32 products in another order
MAX_TOKENS = 8192


def thresholds_of(model_dir: Path) -> np.ndarray:
    saved = json.loads((model_dir / "classifier_config.json").read_text())["thresholds"]
    return np.array([saved[n] for n in LABELS])


def load(model_dir: Path, monkeypatch: pytest.MonkeyPatch, runtime: str, precision: str) -> Classifier:
    monkeypatch.setenv(RUNTIME_ENV, runtime)
    monkeypatch.setenv(PRECISION_ENV, precision)
    return Classifier.load(model_dir, device="cpu")


@pytest.fixture(scope="module")
def exported(sm_run: SageMakerRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's model directory with onnx/ written, as at pack time."""
    from multilabel.serving.onnx_export import export_onnx

    model_dir = Path(shutil.copytree(sm_run.model_dir, tmp_path_factory.mktemp("onnx") / "model"))
    export_onnx(model_dir)
    return model_dir


# Fast: the settings and the start-up checks that need no model.


@pytest.mark.parametrize(
    ("env", "device", "message"),
    [
        (
            {RUNTIME_ENV: "tensorrt"},
            "cpu",
            "MULTILABEL_RUNTIME='tensorrt': expected one of ['torch', 'onnx'] (default torch); fix or unset "
            "it in the endpoint's environment",
        ),
        (
            {RUNTIME_ENV: "onnx"},
            "cuda",
            "MULTILABEL_RUNTIME=onnx runs on a CPU only (onnxruntime's CPU build), and this endpoint has a "
            "GPU; unset it (the GPU runs PyTorch in bf16) or deploy on a CPU instance",
        ),
    ],
    ids=["unknown-runtime", "onnx-on-gpu"],
)
def test_bad_runtime_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], device: str, message: str
) -> None:
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert RuntimeSettings.from_env(device)[1] == [message], "each bad setting is named once, with its fix"


def test_runtime_setting_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(RUNTIME_ENV, " ONNX ")
    monkeypatch.setenv(PRECISION_ENV, "int8")
    settings, problems = RuntimeSettings.from_env("cpu")  # no model_dir: files not checked
    assert (settings.runtime, settings.precision, problems) == ("onnx", "int8", [])
    monkeypatch.delenv(RUNTIME_ENV)
    assert RuntimeSettings.from_env("cpu", tmp_path)[0].runtime == "torch"


def test_a_missing_onnx_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert onnx_problems(tmp_path, "int8") == [
        "MULTILABEL_RUNTIME=onnx with MULTILABEL_PRECISION=int8: no onnx/model-int8.onnx in the model "
        "directory; export it before packing (python -m multilabel.onnx_export MODEL_DIR --pack model.tar.gz)"
    ]


def test_a_missing_onnxruntime_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a)
    )
    problems = onnx_problems(tmp_path, "fp32")
    assert problems[0].startswith("MULTILABEL_RUNTIME=onnx needs the onnxruntime package, which this ")
    assert "serve with the project's own image (Dockerfile, `serve`)" in problems[0]
    assert len(problems) == 2, "the missing file is named as well"


# Slow: the exported tiny model.


@pytest.mark.slow
def test_export_writes_checked_files(exported: Path) -> None:
    import onnx

    record = json.loads((exported / "onnx" / EXPORT_RECORD).read_text())
    assert record["source_sha256"] == file_sha256(exported / "model.safetensors")
    assert record["files"] == {"fp32": "model.onnx", "int8": "model-int8.onnx"}
    fp32 = onnx.load(onnx_path(exported, "fp32"))
    int8 = onnx.load(onnx_path(exported, "int8"))
    ops = {node.op_type for node in int8.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, "int8 products in the int8 file"
    assert "MatMulInteger" not in {node.op_type for node in fp32.graph.node}
    # The head (RoBERTa's classifier.dense and out_proj) stays fp32, as in PyTorch's int8.
    head = [n for n in int8.graph.node if any("/classifier:" in p.value for p in n.metadata_props)]
    assert head and not any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in head)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_loads_in_process_and_agrees_with_torch_fp32(
    exported: Path, monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    reference = load(exported, monkeypatch, "torch", "fp32")
    served = load(exported, monkeypatch, "onnx", precision)
    assert isinstance(served.model, OnnxModel) and served.model.precision == precision
    assert served.max_tokens == reference.max_tokens, "the token budget is the PyTorch model's"
    expected = reference.probabilities(RECORDS).numpy()
    scores = served.probabilities(RECORDS).numpy()
    thresholds = thresholds_of(exported)
    if precision == "fp32":
        np.testing.assert_allclose(scores, expected, atol=FP32_TOLERANCE, rtol=0)
        assert np.array_equal(scores >= thresholds, expected >= thresholds), "fp32 keeps every label"
    else:
        assert np.abs(scores - expected).max() > FP32_TOLERANCE, "int8 should move scores a little"
        assert_int8_parity(scores, expected, thresholds)


def _answers(model: Classifier, bodies: list[str]) -> list[str]:
    """What the handler hooks return, or the 400 message they raise, for each body."""
    import inference

    answers = []
    for body in bodies:
        try:
            request = inference.input_fn(body, "application/json")
            answers.append(inference.output_fn(inference.predict_fn(request, model), "application/json"))
        except Exception as err:  # the toolkit turns any exception into a 400
            answers.append(f"{type(err).__name__}: {err}")
    return answers


@pytest.mark.slow
def test_onnx_keeps_the_handler_contract(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same labels, parameters and refusals (token budget, truncation, fields) as PyTorch fp32."""
    # 4 records of at most max_seq_length (64) fit, 40 do not; one setting for both paths.
    monkeypatch.setenv("MULTILABEL_MAX_TOKENS", "256")
    long_pair = {"casePart1": "word " * 3000, "casePart2": "other " * 3000}
    bodies = [
        json.dumps({"inputs": RECORDS[:4], "parameters": {"top_k": 1, "return_scores": False}}),
        json.dumps({"inputs": RECORDS[:2], "parameters": {"threshold": 0.0}}),
        json.dumps({"inputs": [long_pair]}),  # a long pair: clipped, then truncated to max length
        json.dumps({"inputs": RECORDS[:40]}),  # over the token budget
        json.dumps({"inputs": [{}]}),
        json.dumps({"inputs": RECORDS[:1], "parameters": {"treshold": 0.5}}),
    ]
    reference = _answers(load(exported, monkeypatch, "torch", "fp32"), bodies)
    onnx_fp32 = _answers(load(exported, monkeypatch, "onnx", "fp32"), bodies)
    assert reference[0].startswith("[{") and "request too large" in reference[3]
    assert "no text field" in reference[4] and "unknown parameter" in reference[5]
    for ours, theirs in zip(onnx_fp32, reference, strict=True):
        if ours.startswith("["):  # scores agree to FP32_TOLERANCE, labels exactly
            ours_json, theirs_json = json.loads(ours), json.loads(theirs)
            assert [r["labels"] for r in ours_json] == [r["labels"] for r in theirs_json]
            for a, b in zip(ours_json, theirs_json, strict=True):
                assert a.keys() == b.keys()
                for label, score in a.get("scores", {}).items():
                    assert abs(score - b["scores"][label]) < FP32_TOLERANCE
        else:
            assert ours == theirs, "the same refusal, word for word"


@pytest.mark.slow
def test_a_stale_or_missing_export_stops_the_endpoint(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = Path(shutil.copytree(exported, tmp_path / "model"))
    record = model_dir / "onnx" / EXPORT_RECORD
    record.write_text(json.dumps({**json.loads(record.read_text()), "source_sha256": "0" * 64}))
    (model_dir / "onnx" / "model-int8.onnx").unlink()
    with pytest.raises(DeploymentError) as info:
        load(model_dir, monkeypatch, "onnx", "fp32")
    assert "  - onnx/model.onnx was not exported from this directory's model.safetensors (the model " in str(
        info.value
    )
    with pytest.raises(DeploymentError) as info:
        load(model_dir, monkeypatch, "onnx", "int8")
    assert "no onnx/model-int8.onnx in the model directory" in str(info.value)


SERVING_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1] + "/code")  # as the inference toolkit does
import importlib.util, inference
assert importlib.util.find_spec("onnxruntime") is None, "the inference container has no onnxruntime"
try:
    inference.model_fn(sys.argv[1])
except Exception as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
"""


@pytest.mark.integration
@pytest.mark.slow
def test_onnx_without_onnxruntime_stops_at_start_up(exported: Path) -> None:
    """In the inference container's environment (.venv-serving: no onnxruntime), model_fn refuses."""
    assert SERVING_PYTHON.exists(), f"{SERVING_PYTHON} is missing: run `make test`, which creates it"
    result = subprocess.run(
        [str(SERVING_PYTHON), "-c", SERVING_SCRIPT, str(exported)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=exported.parent,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", RUNTIME_ENV: "onnx"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["error"] == "DeploymentError"
    assert output["message"].startswith(f"cannot serve {exported}: 1 problem(s)\n")
    assert "MULTILABEL_RUNTIME=onnx needs the onnxruntime package" in output["message"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_through_the_model_server(
    exported: Path, sm_run: SageMakerRun, tmp_path_factory: pytest.TempPathFactory, precision: str
) -> None:
    """Each ONNX path loads in the real model server and answers within its parity margin.

    One server at a time (only one Multi Model Server runs per machine), stopped at the end.
    """
    env = {"MULTILABEL_MAX_TOKENS": str(MAX_TOKENS), RUNTIME_ENV: "onnx", PRECISION_ENV: precision}
    server = ModelServer(exported, tmp_path_factory.mktemp(f"model-server-onnx-{precision}"), env)
    server.start(probe=json.dumps({"inputs": RECORDS[0]}).encode())
    try:
        status, body = post(
            f"{server.url}/invocations", json.dumps({"inputs": RECORDS}).encode(), "application/json"
        )
        bad_status, bad_body = post(
            f"{server.url}/invocations",
            json.dumps({"inputs": [{}]}).encode(),
            "application/json",
        )
        threads = max(1, len(os.sched_getaffinity(0)) // 1)  # vCPUs // SAGEMAKER_MODEL_SERVER_WORKERS (1)
        server.wait_for_log(f"runtime: precision {precision}, {threads} threads, on onnx")
    finally:
        server.stop()
    assert status == 200, body
    assert bad_status == 400 and "no text field" in json.loads(bad_body)["message"], bad_body
    predictions = read_csv(sm_run.output_data_dir / "test_predictions.csv")
    fp32 = np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions])
    scores = np.array([[r["scores"][n] for n in LABELS] for r in json.loads(body)])
    thresholds = thresholds_of(exported)
    if precision == "fp32":
        np.testing.assert_allclose(scores, fp32, atol=FP32_TOLERANCE, rtol=0)
        assert np.array_equal(scores >= thresholds, fp32 >= thresholds)
    else:
        assert_int8_parity(scores, fp32, thresholds)
