"""Where a run reads and writes: SageMaker's SM_* paths, or local fallbacks."""

from __future__ import annotations

from multilabel.core.run_paths import SPLITS, resolve_run_paths


def test_run_paths_on_sagemaker_and_locally() -> None:
    local = resolve_run_paths({})
    assert (local.on_sagemaker, local.model_dir, local.checkpoint_dir) == (
        False,
        "outputs/model",
        "outputs/checkpoints",
    )
    sm = resolve_run_paths(
        {
            "SM_MODEL_DIR": "/opt/ml/model",
            "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
            "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
            "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
        }
    )
    assert sm.on_sagemaker and sm.checkpoint_dir == "/opt/ml/checkpoints"
    assert dict(sm.channels) == {"train": "/opt/ml/input/data/train", "test": "/opt/ml/input/data/test"}


def test_a_checkpoint_dir_variable_wins_and_local_outputs_stay_under_outputs() -> None:
    paths = resolve_run_paths({"SM_TRAINING_ENV": "{}", "SM_CHECKPOINT_DIR": "/tmp/ckpt"})
    assert paths.on_sagemaker and paths.checkpoint_dir == "/tmp/ckpt"
    assert (paths.model_dir, paths.output_data_dir) == ("outputs/model", "outputs/data")
    assert SPLITS == ("train", "validation", "test"), "train.py reads the channels in this order"
