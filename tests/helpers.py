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
    """The current environment without SageMaker or accelerate variables, plus `extra`; offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "ACCELERATE_"))}
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


def train_on_sample(model: Path, base: Path, *extra: str) -> subprocess.CompletedProcess:
    """One quick epoch of train.py on the sample data (train, validation, test) into `base`
    (model/, data/, checkpoints/); `extra` flags come last and win."""
    return run_train(
        [
            f"--model_name_or_path={model}",
            *(f"--{s}_file={DATA / f'{s}.csv'}" for s in ("train", "validation", "test")),
            f"--model_dir={base / 'model'}",
            f"--output_data_dir={base / 'data'}",
            f"--output_dir={base / 'checkpoints'}",
            "--num_train_epochs=1",
            *FAST_ARGS,
            *extra,
        ]
    )


def files_under(path: Path) -> set[str]:
    """Every file below `path`, as POSIX paths relative to it."""
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}


def assert_same_decisions(
    results: list[dict], predictions: list[dict[str, str]], thresholds: dict[str, float], margin: float = 1e-5
) -> None:
    """An endpoint's labels agree with train.py's per-row predictions.

    Two float computations of one score may differ by ~1e-7, so a decision counts only
    where train.py's probability is clear of the threshold by `margin`; nearly all must be.
    """
    clear = 0
    for result, row in zip(results, predictions, strict=True):
        trained = set(filter(None, row["predicted_labels"].split("|")))
        assert all(result["scores"][n] >= thresholds[n] for n in result["labels"])
        for name, threshold in thresholds.items():
            if abs(float(row[f"prob_{name}"]) - threshold) > margin:
                clear += 1
                assert (name in result["labels"]) == (name in trained), (row["row"], name)
    assert clear >= 0.9 * len(results) * len(thresholds)


def benchmark_module(name: str):
    """benchmarks/`name`.py imported by path, with benchmarks/ on the import path while it
    loads (the scripts import their siblings, such as `common`, by name)."""
    import importlib.util

    folder = str(ROOT / "benchmarks")
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(folder)
