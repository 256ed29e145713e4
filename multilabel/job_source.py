"""The files a SageMaker training job or endpoint receives from this project, and nothing else."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
# What the job runs and imports; requirements.txt is installed by the training toolkit.
JOB_FILES = ("train.py", "inference.py", "requirements.txt")


def copy_package(dest_dir: Path, modules: set[str] | None = None) -> Path:
    """Copy this package (sources only; only `modules`, by name, if given) into `dest_dir`."""
    target = dest_dir / PACKAGE_DIR.name
    if modules is None:
        shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "._*"))
        return target
    target.mkdir(parents=True)
    for name in sorted(modules | {"__init__"}):
        shutil.copy2(PACKAGE_DIR / f"{name}.py", target / f"{name}.py")
    return target


def package_imports(entry: Path) -> set[str]:
    """The modules of this package that `entry` imports, directly or through each other.

    Read from the sources (no import runs), so the endpoint's `code/` can hold exactly
    what serving needs and nothing that imports datasets or scikit-learn.
    """
    found: set[str] = set()
    pending = [entry]
    while pending:
        tree = ast.parse(pending.pop().read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == PACKAGE_DIR.name and len(parts) > 1:
                    module = parts[1]
                    if module not in found and (PACKAGE_DIR / f"{module}.py").is_file():
                        found.add(module)
                        pending.append(PACKAGE_DIR / f"{module}.py")
    return found


def job_modules() -> set[str]:
    """The package modules a training job runs: train.py's, and the endpoint's it packs into code/."""
    return package_imports(PROJECT_DIR / "train.py") | package_imports(PROJECT_DIR / "inference.py")


def stage_job_source(dest_dir: str | Path) -> Path:
    """Fill an empty `dest_dir` with the training job's source: scripts, the modules they import, requirements."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for name in JOB_FILES:
        if (PROJECT_DIR / name).is_file():
            shutil.copy2(PROJECT_DIR / name, dest / name)
    copy_package(dest, job_modules())
    return dest
