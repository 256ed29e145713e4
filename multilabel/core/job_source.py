"""The files a SageMaker training job or endpoint receives from this project, and nothing else."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # multilabel/
PROJECT_DIR = PACKAGE_DIR.parent
# What the job runs and imports; requirements.txt is installed by the training toolkit.
JOB_FILES = ("train.py", "inference.py", "requirements.txt")


def module_path(module: str) -> Path:
    """The source file of a package module named relative to the package (`serving.classifier`)."""
    return PACKAGE_DIR.joinpath(*module.split(".")).with_suffix(".py")


def copy_package(dest_dir: Path, modules: set[str] | None = None) -> Path:
    """Copy this package (sources only; only `modules`, as `package_imports` names them, if
    given, with the `__init__.py` of every folder on their way) into `dest_dir`."""
    target = dest_dir / PACKAGE_DIR.name
    if modules is None:
        shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "._*"))
        return target
    inits = {
        ".".join([*m.split(".")[:depth], "__init__"]) for m in modules for depth in range(m.count(".") + 1)
    }
    for name in sorted(modules | inits):
        (target / module_path(name).relative_to(PACKAGE_DIR)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(module_path(name), target / module_path(name).relative_to(PACKAGE_DIR))
    return target


def _package_module(name: str) -> str | None:
    """`multilabel.serving.classifier` (or one of its names, `...classifier.Classifier`) as
    `serving.classifier`; None outside the package or for a subpackage itself."""
    parts = name.split(".")
    if parts[0] != PACKAGE_DIR.name:
        return None
    for end in range(len(parts), 1, -1):
        module = ".".join(parts[1:end])
        if module_path(module).is_file():
            return module
    return None


def package_imports(entry: Path) -> set[str]:
    """The modules of this package that `entry` imports, directly or through each other,
    named relative to the package (`serving.classifier`).

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
                module = _package_module(name)
                if module is not None and module not in found:
                    found.add(module)
                    pending.append(module_path(module))
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
