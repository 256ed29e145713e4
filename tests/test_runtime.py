"""The endpoint's precision and thread settings (multilabel/serving/runtime.py), and int8 parity.

int8 moves every score a little, so its parity with fp32 is stated as a margin: scores
within SCORE_TOLERANCE of fp32's, and the same labels except where fp32's score sits
within DECISION_MARGIN of the label's threshold. The model server test of the int8
path is in test_inference_server.py (one model server per machine, one module); the
ONNX Runtime path (MULTILABEL_RUNTIME=onnx) is tested in test_onnx_runtime.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from multilabel.serving.classifier import Classifier
from multilabel.serving.request_codec import DeploymentError
from multilabel.serving.runtime import (
    PRECISION_ENV,
    RUNTIME_ENV,
    THREADS_ENV,
    WORKERS_ENV,
    RuntimeSettings,
    default_threads,
    is_int8,
)
from tests.conftest import SageMakerRun
from tests.helpers import DATA, LABELS, read_csv

# The session's tiny model, int8 against fp32 on the sample test set: largest score
# difference 0.028, no label differing where fp32's score is 0.01 or more from the
# threshold (3 within 0.005). benchmarks/README.md has the trained MiniLM's figures.
SCORE_TOLERANCE = 0.05
DECISION_MARGIN = 0.02
RECORDS = [{"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in read_csv(DATA / "test.csv")]


def assert_int8_parity(int8: np.ndarray, fp32: np.ndarray, thresholds: np.ndarray) -> None:
    """Scores within SCORE_TOLERANCE, decisions equal where fp32 is clear of the threshold."""
    np.testing.assert_allclose(int8, fp32, atol=SCORE_TOLERANCE, rtol=0)
    clear = np.abs(fp32 - thresholds) > DECISION_MARGIN
    assert clear.mean() >= 0.5, "too few decisions clear of the margin to compare"
    assert ((int8 >= thresholds) == (fp32 >= thresholds))[clear].all(), (
        "int8 changed a decision clear of the margin"
    )


@pytest.fixture
def keep_threads():
    """Restore this process's torch threads after a test that sets them."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("env", "device", "message"),
    [
        (
            {PRECISION_ENV: "fp16"},
            "cpu",
            "MULTILABEL_PRECISION='fp16': expected one of ['fp32', 'int8'] (default fp32); fix or unset it "
            "in the endpoint's environment",
        ),
        (
            {PRECISION_ENV: "int8"},
            "cuda",
            "MULTILABEL_PRECISION=int8 runs on a CPU only, and this endpoint has a GPU; unset it (the GPU "
            "runs bf16) or deploy on a CPU instance",
        ),
        (
            {THREADS_ENV: "0"},
            "cpu",
            "MULTILABEL_THREADS='0': expected a positive integer (unset: vCPUs // model server workers); "
            "fix or unset it in the endpoint's environment",
        ),
    ],
    ids=["unknown-precision", "int8-on-gpu", "zero-threads"],
)
def test_bad_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], device: str, message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _, problems = RuntimeSettings.from_env(device)
    assert problems == [message], "each bad setting is named once, with its fix"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (PRECISION_ENV, THREADS_ENV, WORKERS_ENV, RUNTIME_ENV):
        monkeypatch.delenv(name, raising=False)
    assert RuntimeSettings.from_env("cpu") == (RuntimeSettings("fp32", None, "torch"), [])
    monkeypatch.setenv(PRECISION_ENV, " INT8 ")
    monkeypatch.setenv(THREADS_ENV, "3")
    assert RuntimeSettings.from_env("cpu") == (RuntimeSettings("int8", 3, "torch"), [])
    assert RuntimeSettings.from_env("cuda")[0].threads is None  # a GPU keeps PyTorch's threads


@pytest.mark.parametrize(
    ("cpus", "workers", "in_worker", "threads"),
    [
        (4, None, True, 1),  # ml.m5.xlarge, Multi Model Server's default of a worker per vCPU
        (4, "2", True, 2),
        (4, "1", False, 4),
        (2, "4", True, 1),
        (2, "many", True, 1),  # the model server refuses that setting; stay safe
        (2, None, False, None),  # a notebook or a test: PyTorch's own setting
    ],
)
def test_default_threads(cpus: int, workers: str | None, in_worker: bool, threads: int | None) -> None:
    assert default_threads(cpus, workers, in_worker) == threads


@pytest.mark.slow
def test_a_bad_precision_stops_the_endpoint_at_start_up(
    sm_run: SageMakerRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PRECISION_ENV, "int4")
    monkeypatch.setenv("MULTILABEL_BATCH_SIZE", "0")
    with pytest.raises(DeploymentError) as info:
        Classifier.load(sm_run.model_dir, device="cpu")
    assert str(info.value).startswith(f"cannot serve {sm_run.model_dir}: 2 problem(s)\n")
    assert "  - MULTILABEL_PRECISION='int4': expected one of ['fp32', 'int8']" in str(info.value)


@pytest.mark.slow
def test_int8_loads_in_process_and_agrees_with_fp32(
    sm_run: SageMakerRun, monkeypatch: pytest.MonkeyPatch, keep_threads: None
) -> None:
    monkeypatch.setenv(WORKERS_ENV, "2")
    fp32 = Classifier.load(sm_run.model_dir, device="cpu")
    monkeypatch.setenv(PRECISION_ENV, "int8")
    int8 = Classifier.load(sm_run.model_dir, device="cpu")
    assert torch.get_num_threads() == max(1, len(os.sched_getaffinity(0)) // 2), "vCPUs // workers threads"
    assert not is_int8(fp32.model) and is_int8(int8.model), "int8 only where MULTILABEL_PRECISION=int8"
    assert type(int8.model.classifier.out_proj) is torch.nn.Linear  # the head stays fp32
    assert int8.max_tokens == fp32.max_tokens  # the budget is sized before quantisation
    thresholds = np.array(fp32.config.threshold_list(fp32.label_names))
    assert_int8_parity(int8.probabilities(RECORDS).numpy(), fp32.probabilities(RECORDS).numpy(), thresholds)
    results = int8.predict(RECORDS[:3])
    assert [sorted(r["scores"]) for r in results] == [sorted(LABELS)] * 3


SERVING_PYTHON = (
    Path(os.environ.get("SERVING_VENV", Path(__file__).parent.parent / ".venv-serving")) / "bin" / "python"
)
SCRIPT = """
import json, sys
model_dir, records = sys.argv[1], json.loads(sys.stdin.read())
sys.path.insert(0, model_dir + "/code")  # as the inference toolkit does
import transformers
import inference
from multilabel.serving.runtime import is_int8
model = inference.model_fn(model_dir)
request = inference.input_fn(json.dumps({"inputs": records}), "application/json")
body = inference.output_fn(inference.predict_fn(request, model), "application/json")
print(json.dumps({"transformers": transformers.__version__, "int8": is_int8(model.model),
                  "handler": inference.__file__, "results": json.loads(body)}))
"""


@pytest.mark.integration
@pytest.mark.slow
def test_int8_under_transformers_4_51_3(sm_run: SageMakerRun) -> None:
    """The deployed code/ in the inference container's transformers, int8, against training's fp32."""
    assert SERVING_PYTHON.exists(), f"{SERVING_PYTHON} is missing: run `make test`, which creates it"
    result = subprocess.run(
        [str(SERVING_PYTHON), "-c", SCRIPT, str(sm_run.model_dir)],
        input=json.dumps(RECORDS),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=sm_run.base,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", PRECISION_ENV: "int8"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert (output["transformers"], output["int8"]) == ("4.51.3", True)
    assert output["handler"] == str(sm_run.model_dir / "code" / "inference.py")
    predictions = read_csv(sm_run.output_data_dir / "test_predictions.csv")
    fp32 = np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions])
    int8 = np.array([[r["scores"][n] for n in LABELS] for r in output["results"]])
    thresholds = json.loads((sm_run.model_dir / "classifier_config.json").read_text())["thresholds"]
    assert_int8_parity(int8, fp32, np.array([thresholds[n] for n in LABELS]))
