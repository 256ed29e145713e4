"""The files a SageMaker training job needs from this project, and nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
# What the job runs and imports; requirements.txt is installed by the training toolkit.
JOB_FILES = ("train.py", "inference.py", "requirements.txt")


def copy_package(dest_dir: Path) -> Path:
    """Copy this package (sources only) into `dest_dir`; returns the copy's path."""
    target = dest_dir / PACKAGE_DIR.name
    shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "._*"))
    return target


def stage_job_source(dest_dir: str | Path) -> Path:
    """Fill an empty `dest_dir` with the training job's source: scripts, package, requirements."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for name in JOB_FILES:
        if (PROJECT_DIR / name).is_file():
            shutil.copy2(PROJECT_DIR / name, dest / name)
    copy_package(dest)
    return dest
