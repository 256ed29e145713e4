"""Shared test helpers: CSV writing and running train.py the way users and SageMaker do."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
LABELS = [f"label{i}" for i in range(1, 11)]
HEADER = ["casePart1", "casePart2", *LABELS]


def write_csv(path: Path, rows: Iterable[Sequence[object]], header: Sequence[str] = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without SageMaker variables, plus `extra`; offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    env.update(extra or {})
    return env


def run_train(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    launcher: Sequence[str] = (sys.executable,),
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run train.py as a subprocess, output captured as text."""
    return subprocess.run(
        [*launcher, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Hyperparameters that make the tiny model's runs quick.
FAST_ARGS = [
    "--max_seq_length=64",
    "--per_device_train_batch_size=16",
    "--learning_rate=1e-3",
    "--logging_steps=5",
]


def files_under(path: Path) -> set[str]:
    """Every file below `path`, as POSIX paths relative to it."""
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
