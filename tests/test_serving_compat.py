"""The model directory under the inference container's transformers (4.51.3), in its own venv.

The venv (made by `make test`) holds torch and transformers only: the handler is
imported from the model directory's `code/` exactly as the endpoint imports it, which
also proves that it needs no datasets, scikit-learn, pandas or SageMaker SDK.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SageMakerRun
from tests.helpers import DATA, LABELS, ROOT, assert_same_decisions, read_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVING_PYTHON = Path(os.environ.get("SERVING_VENV", ROOT / ".venv-serving")) / "bin" / "python"

SCRIPT = """
import importlib.util, json, sys
model_dir, records = sys.argv[1], json.loads(sys.stdin.read())
sys.path.insert(0, model_dir + "/code")  # as the inference toolkit does
import transformers
missing = [m for m in ("datasets", "sklearn", "pandas", "sagemaker") if importlib.util.find_spec(m)]
import inference
model = inference.model_fn(model_dir)
request = inference.input_fn(json.dumps({"inputs": records}), "application/json")
body = inference.output_fn(inference.predict_fn(request, model), "application/json")
print(json.dumps({"transformers": transformers.__version__, "present": missing,
                  "handler": inference.__file__, "results": json.loads(body)}))
"""


def serve_in_serving_venv(model_dir: Path, records: list[dict], cwd: Path = ROOT) -> dict:
    """`SCRIPT`'s output: the model directory's own handler run under transformers 4.51.3
    (the inference container's) on `records`, in one request."""
    assert SERVING_PYTHON.exists(), f"{SERVING_PYTHON} is missing: run `make test`, which creates it"
    result = subprocess.run(
        [str(SERVING_PYTHON), "-c", SCRIPT, str(model_dir)],
        input=json.dumps(records),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["transformers"] == "4.51.3"
    return output


def test_model_loads_and_predicts_under_transformers_4_51_3(sm_run: SageMakerRun) -> None:
    records = [
        {"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in read_csv(DATA / "test.csv")
    ]
    output = serve_in_serving_venv(sm_run.model_dir, records, sm_run.base)
    assert output["present"] == [], "the serving venv must hold torch and transformers only"
    assert output["handler"] == str(sm_run.model_dir / "code" / "inference.py")
    predictions = read_csv(sm_run.output_data_dir / "test_predictions.csv")
    expected = np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions])
    scores = np.array([[r["scores"][n] for n in LABELS] for r in output["results"]])
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)
    thresholds = json.loads((sm_run.model_dir / "classifier_config.json").read_text())["thresholds"]
    assert_same_decisions(output["results"], predictions, thresholds)
