"""notebooks/launch.ipynb: stored clean, and run top to bottom by a real kernel against the
moto AWS API emulator on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tests.conftest import SageMakerRun
from tests.helpers import DATA, ROOT, read_csv
from tests.moto_aws import (  # noqa: F401  (aws, moto_url: fixtures)
    BUCKET,
    REGION,
    ROLE,
    aws,
    moto_url,
    queue_endpoint_answer,
    upload_model,
)

NOTEBOOK = ROOT / "notebooks" / "launch.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_notebook_runs_top_to_bottom(sm_run: SageMakerRun, tmp_path: Path) -> None:
    """The launch notebook, executed by a real kernel against the emulated AWS account."""
    import nbformat
    from nbclient import NotebookClient

    from multilabel.classifier import Classifier

    upload_model(sm_run, tmp_path, "m/model.tar.gz")
    # The emulated endpoint answers with what the real handler says about the same rows.
    records = [
        {"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in read_csv(DATA / "test.csv")[:5]
    ]
    results = Classifier.load(sm_run.model_dir, device="cpu").predict(records)
    queue_endpoint_answer(results)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source += (
        f"\nROLE = {ROLE!r}\nBUCKET = {BUCKET!r}\nREGION = {REGION!r}\nDATA_DIR = {str(DATA)!r}\n"
        f"WAIT = False\nMODEL_DATA = 's3://{BUCKET}/m/model.tar.gz'\n"
    )
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()

    def text_of(cell) -> str:
        return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs)

    outputs = [text_of(c) for c in notebook.cells if c.cell_type == "code"]
    assert "indicator format, 10 labels: label1, label2" in outputs[2]
    assert "multilabel-" in outputs[3]  # the training job's name
    assert "'multilabel-demo'" in outputs[5]
    table = outputs[6]
    assert all(r["labels"][0] in table for r in results if r["labels"])
    assert "endpoint multilabel-demo" in outputs[7]
    assert boto3.client("sagemaker", region_name=REGION).list_endpoints()["Endpoints"] == []
