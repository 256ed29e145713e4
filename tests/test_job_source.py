"""What a training job and an endpoint receive: the scripts and exactly the modules they import."""

from __future__ import annotations

import ast
from pathlib import Path

from multilabel.job_source import JOB_FILES, PROJECT_DIR, job_modules, package_imports, stage_job_source

TRAINING_ONLY = {"training", "data", "metrics", "reporting", "arguments", "checkpoints"}
LAUNCH_ONLY = {
    "sagemaker_session",
    "sagemaker_training",
    "sagemaker_endpoint",
    "notebook_views",
    "tiny_model",
}


def imported_modules(source: Path) -> set[str]:
    """The `multilabel.X` modules one file names in its imports (nested imports included)."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("multilabel."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "multilabel":
            found.update(alias.name for alias in node.names)
    return found


def test_the_endpoint_imports_no_training_or_launch_module() -> None:
    serving = package_imports(PROJECT_DIR / "inference.py")
    assert {"classifier", "request_codec"} <= serving, f"handler imports not found: {sorted(serving)}"
    assert not serving & (TRAINING_ONLY | LAUNCH_ONLY), (
        f"endpoint would ship {sorted(serving & (TRAINING_ONLY | LAUNCH_ONLY))}"
    )


def test_a_staged_job_holds_its_scripts_and_a_closed_set_of_modules(tmp_path: Path) -> None:
    staged = stage_job_source(tmp_path / "source")
    assert {p.name for p in staged.iterdir() if p.is_file()} == set(JOB_FILES)
    modules = {p.stem for p in (staged / "multilabel").glob("*.py")}
    assert modules == job_modules() | {"__init__"}
    assert modules >= TRAINING_ONLY, "train.py's own modules are missing from the job"
    assert not modules & LAUNCH_ONLY, (
        f"launch-side modules shipped to the job: {sorted(modules & LAUNCH_ONLY)}"
    )
    # Closed: every module a staged file imports is staged too.
    for source in [staged / "train.py", staged / "inference.py", *(staged / "multilabel").glob("*.py")]:
        missing = imported_modules(source) - modules
        assert not missing, f"{source.name} imports {sorted(missing)}, not staged"
