"""Where things live: SageMaker's `SM_*` paths, with local fallbacks, resolved in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from multilabel.core.metric_names import split_prefix

SAGEMAKER_CHECKPOINT_DIR = "/opt/ml/checkpoints"  # synced with the job's checkpoint_s3_uri
# The data channels of a run, in the order train.py reads them; a SageMaker job gets one per file given.
SPLITS = ("train", "validation", "test")
LOCAL_ROOT = "outputs"


@dataclass(frozen=True)
class RunPaths:
    """The directories and input channels of one training run."""

    on_sagemaker: bool
    model_dir: str
    output_data_dir: str
    checkpoint_dir: str
    channels: Mapping[str, str]


def resolve_run_paths(env: Mapping[str, str] | None = None) -> RunPaths:
    """SageMaker's directories when its variables are set, else `./outputs/...`.

    The checkpoint directory is `/opt/ml/checkpoints` on SageMaker (the path synced with
    `checkpoint_s3_uri`); `SM_CHECKPOINT_DIR` overrides it, for local SageMaker-shaped runs.
    """
    env = os.environ if env is None else env
    on_sagemaker = "SM_MODEL_DIR" in env or "SM_TRAINING_ENV" in env
    channels = {
        key[len("SM_CHANNEL_") :].lower(): value
        for key, value in env.items()
        if key.startswith("SM_CHANNEL_")
    }
    default_checkpoints = SAGEMAKER_CHECKPOINT_DIR if on_sagemaker else f"{LOCAL_ROOT}/checkpoints"
    return RunPaths(
        on_sagemaker=on_sagemaker,
        model_dir=env.get("SM_MODEL_DIR", f"{LOCAL_ROOT}/model"),
        output_data_dir=env.get("SM_OUTPUT_DATA_DIR", f"{LOCAL_ROOT}/data"),
        checkpoint_dir=env.get("SM_CHECKPOINT_DIR", default_checkpoints),
        channels=channels,
    )


# The files a run writes into its output-data directory, named here once: reporting writes
# them, scoring and a second run's checks find them, launch.py reads them from the job's output.
ALL_RESULTS = "all_results.json"
LABEL_REPORT = "label_report.md"
LABEL_PLOT = "label_report.png"
EVALUATED_SPLITS = tuple(s for s in SPLITS if s != "train")


def results_file(prefix: str) -> str:
    """The metrics file of a results prefix (`metric_names.split_prefix`: `eval` for validation)."""
    return f"{prefix}_results.json"


def predictions_file(split: str) -> str:
    """A split's per-row predictions: `<split>_predictions.csv`."""
    return f"{split}_predictions.csv"


# Every file a run writes there; a run deletes the ones it does not write, so the folder
# never mixes two runs' results.
OUTPUT_DATA_FILES = (
    ALL_RESULTS,
    *(results_file(split_prefix(split)) for split in SPLITS),
    *map(predictions_file, EVALUATED_SPLITS),
    LABEL_REPORT,
    LABEL_PLOT,
)
