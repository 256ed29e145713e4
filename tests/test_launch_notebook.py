"""notebooks/launch.ipynb: stored clean, and run top to bottom by a real kernel against the
moto AWS API emulator on 127.0.0.1."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import boto3
import pytest

from multilabel.sagemaker.session import BUCKET_ENV, ROLE_ENV
from tests.conftest import SageMakerRun
from tests.helpers import DATA, ROOT, read_csv
from tests.moto_aws import BUCKET, REGION, ROLE, queue_endpoint_answer, upload_model

NOTEBOOK = ROOT / "notebooks" / "launch.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def text_of(cell) -> str:
    """What a code cell showed: streams, plain text, Markdown and HTML (tables)."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts += [data.get(kind, "") for kind in ("text/plain", "text/markdown", "text/html")]
        if output.get("output_type") == "error":
            parts.append(f"{output['ename']}: {output['evalue']}")
    return "".join(parts)


def cell_with(notebook, text: str):
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and text in c.source]
    return cell


def notebook_with(parameters: dict) -> object:
    """The notebook, its parameters cell followed by `parameters` (as papermill injects them)."""
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = cell_with(notebook, "MODEL_DATA = None")
    assert "parameters" in cell.metadata.get("tags", [])
    cell.source += "\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    return notebook


def job_output_tar(sm_run: SageMakerRun) -> bytes:
    """The output.tar.gz SageMaker makes of a job's SM_OUTPUT_DATA_DIR (here, the session's run)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(sm_run.output_data_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def run_cells(notebook, before: dict | None = None) -> None:
    """Execute the notebook top to bottom in a real kernel; `before[i]()` runs before cell i
    (what SageMaker does meanwhile). Stops at the first failing cell, as a run does."""
    from nbclient import NotebookClient

    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            if before and index in before:
                before[index]()
            client.execute_cell(cell, index)


@pytest.fixture
def notebook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel's environment: no install (the venv has the project), role and bucket set."""
    monkeypatch.setenv("MULTILABEL_NOTEBOOK_INSTALL", "0")
    monkeypatch.setenv(ROLE_ENV, ROLE)
    monkeypatch.setenv(BUCKET_ENV, BUCKET)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws", "notebook_env")
def test_notebook_runs_top_to_bottom(sm_run: SageMakerRun, tmp_path: Path) -> None:
    """The launch notebook, executed by a real kernel against the emulated AWS account: it
    validates, trains, shows the job's test metrics and label report from its output.tar.gz,
    deploys, predicts and deletes the endpoint."""
    from multilabel.serving.classifier import Classifier

    # The emulated endpoint answers with what the real handler says about the same rows.
    records = [
        {"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in read_csv(DATA / "test.csv")[:5]
    ]
    results = Classifier.load(sm_run.model_dir, device="cpu").predict(records)
    queue_endpoint_answer(results)
    notebook = notebook_with(
        {
            "REGION": REGION,
            "TRAIN_FILE": str(DATA / "train.csv"),
            "VALIDATION_FILE": str(DATA / "validation.csv"),
            "TEST_FILE": str(DATA / "test.csv"),
            "WAIT": False,
        }
    )
    assert "sys.path" not in "".join(c.source for c in notebook.cells)
    sm = boto3.client("sagemaker", region_name=REGION)

    def job_finishes() -> None:
        """SageMaker uploads the job's model and output data when it ends (moto does not)."""
        (job,) = sm.list_training_jobs()["TrainingJobSummaries"]
        description = sm.describe_training_job(TrainingJobName=job["TrainingJobName"])
        model_key = description["ModelArtifacts"]["S3ModelArtifacts"].removeprefix(f"s3://{BUCKET}/")
        assert model_key.endswith("/output/model.tar.gz")
        upload_model(sm_run, tmp_path, model_key)
        output_key = model_key.removesuffix("model.tar.gz") + "output.tar.gz"
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=BUCKET, Key=output_key, Body=job_output_tar(sm_run)
        )

    results_cell = notebook.cells.index(cell_with(notebook, "job_output_files("))
    run_cells(notebook, before={results_cell: job_finishes})

    assert f"role {ROLE}, bucket {BUCKET}" in text_of(cell_with(notebook, "execution_role("))
    assert "indicator format, 10 labels: " in text_of(cell_with(notebook, "validate_local_data("))
    assert "training job multilabel-" in text_of(cell_with(notebook, "job_name = train("))
    shown = text_of(notebook.cells[results_cell])
    test_results = json.loads((sm_run.output_data_dir / "test_results.json").read_text())
    assert "micro_f1" in shown and f"{test_results['test_micro_f1']:.4f}"[:5] in shown
    label_report = (sm_run.output_data_dir / "label_report.md").read_text()
    assert label_report.splitlines()[0] in shown  # the per-label report, as Markdown
    table = text_of(cell_with(notebook, "with deployed("))
    assert all(r["labels"][0] in table for r in results if r["labels"])
    assert "endpoint multilabel-demo deleted" in table
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws", "notebook_env")
def test_notebook_with_a_model_skips_training_and_cleans_up_when_a_cell_fails(
    sm_run: SageMakerRun, tmp_path: Path
) -> None:
    """MODEL_DATA given: no training job. The test file lacks the text columns, so predicting
    fails after the endpoint is up: the endpoint, its config and its model are deleted anyway."""
    from nbclient.exceptions import CellExecutionError

    model_data = upload_model(sm_run, tmp_path, "m/model.tar.gz")
    wrong = tmp_path / "other.csv"
    wrong.write_text("title,body\na,b\n")
    notebook = notebook_with(
        {"REGION": REGION, "MODEL_DATA": model_data, "TEST_FILE": str(wrong), "WAIT": False}
    )
    with pytest.raises(CellExecutionError):
        run_cells(notebook)
    sm = boto3.client("sagemaker", region_name=REGION)
    assert "training skipped: MODEL_DATA is given" in text_of(cell_with(notebook, "job_name = train("))
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []
    failed = text_of(cell_with(notebook, "with deployed("))
    assert "endpoint multilabel-demo deployed" in failed and "KeyError" in failed
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
