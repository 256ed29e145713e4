from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import DATA, FAST_ARGS, run_train
from tests.moto_aws import aws, moto_url  # noqa: F401  (the emulated AWS account's fixtures, for every file)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide RoBERTa with a tokenizer trained on the sample data."""
    from tests.support.tiny_model import build_tiny_roberta

    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"), [DATA / "train.csv"])


@dataclass
class SageMakerRun:
    base: Path
    stdout: str

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_data_dir(self) -> Path:
        return self.base / "output" / "data"

    @property
    def checkpoint_dir(self) -> Path:
        return self.base / "checkpoints"


def sagemaker_env_for(base: Path) -> dict[str, str]:
    """The variables the training toolkit sets for a job under `base`: one per channel folder."""
    env = {
        "SM_MODEL_DIR": str(base / "model"),
        "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"),
        "SM_CHECKPOINT_DIR": str(base / "checkpoints"),
        "SM_NUM_GPUS": "0",
        "SM_NUM_CPUS": "2",
        "SM_HOSTS": '["algo-1"]',
        "SM_CURRENT_HOST": "algo-1",
    }
    data = base / "input" / "data"
    for channel in sorted(data.iterdir()) if data.is_dir() else []:
        env[f"SM_CHANNEL_{channel.name.upper()}"] = str(channel)
    return env


def sagemaker_env(base: Path, channels: dict[str, Path]) -> dict[str, str]:
    """The variables the training toolkit sets, with channels copied into place."""
    for name, source in channels.items():
        channel = base / "input" / "data" / name
        channel.mkdir(parents=True)
        shutil.copy(source, channel / source.name)
    return sagemaker_env_for(base)


@pytest.fixture(scope="session")
def sm_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> SageMakerRun:
    """One SageMaker-shaped run with length grouping on (it shuffles prediction order)."""
    base = tmp_path_factory.mktemp("opt-ml")
    env = sagemaker_env(
        base,
        {"train": DATA / "train.csv", "validation": DATA / "validation.csv", "test": DATA / "test.csv"},
    )
    result = run_train(
        [
            "--model_name_or_path",
            str(tiny_model),
            "--num_train_epochs",
            "2",
            "--group_by_length",
            "True",
            *FAST_ARGS,
        ],
        env=env,
        cwd=base,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return SageMakerRun(base=base, stdout=result.stdout + result.stderr)


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Each test starts from the same process environment: parsing training arguments
    exports ACCELERATE_* variables (transformers does), which would otherwise reach every
    later test and the training subprocesses they start."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)
