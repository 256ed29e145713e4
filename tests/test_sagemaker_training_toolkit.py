"""train.py under the real SageMaker training toolkit (`train` entry point).

The toolkit reads hyperparameters.json (JSON-encoded values, as the SDK writes them),
installs the job's requirements.txt, turns the hyperparameters into `--name value`
arguments and sets the SM_* variables: the only way to test that mapping for real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from multilabel.core.job_source import stage_job_source
from tests.helpers import DATA, LABELS, clean_env, files_under

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # the toolkit runs train.py in a subprocess


def write_sagemaker_tree(base: Path, hyperparameters: dict, source_dir: Path) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True)
    encoded = {key: json.dumps(value) for key, value in hyperparameters.items()}
    encoded["sagemaker_program"] = json.dumps("train.py")
    encoded["sagemaker_submit_directory"] = json.dumps(str(source_dir))
    (config / "hyperparameters.json").write_text(json.dumps(encoded))
    channels = {"train": "train.csv", "validation": "validation.csv"}
    (config / "inputdataconfig.json").write_text(
        json.dumps(
            {
                name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
                for name in channels
            }
        )
    )
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    for name, file_name in channels.items():
        channel = base / "input" / "data" / name
        channel.mkdir(parents=True)
        (channel / file_name).write_bytes((DATA / file_name).read_bytes())
    (base / "model").mkdir()
    (base / "output" / "data").mkdir(parents=True)


def run_toolkit(base: Path) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    env = clean_env(
        {
            "SAGEMAKER_BASE_DIR": str(base),
            "SM_STUDIO_LOCAL_MODE": "true",  # else it waits up to 15 min for DNS of algo-1
            "SM_CHECKPOINT_DIR": str(base / "checkpoints"),  # /opt/ml/checkpoints is not ours here
            "PATH": f"{bin_dir}:{clean_env()['PATH']}",
        }
    )
    return subprocess.run(
        [str(bin_dir / "train")], env=env, cwd=base, capture_output=True, text=True, timeout=600
    )


def test_train_runs_under_the_training_toolkit(tiny_model: Path, tmp_path: Path) -> None:
    base = tmp_path / "opt-ml"
    hyperparameters = {
        "model_name_or_path": str(tiny_model),
        "num_train_epochs": 1,
        "learning_rate": 1e-3,
        "max_seq_length": 64,
        "per_device_train_batch_size": 16,
        "overwrite_output_dir": True,  # arrives as "True": must parse as a boolean
        "group_by_length": False,  # on by default: "False" must turn it off
        "load_best_model_at_end": False,  # arrives as "False": must not turn into True
        "pos_weight": "auto",
    }
    write_sagemaker_tree(base, hyperparameters, stage_job_source(tmp_path / "source"))
    result = run_toolkit(base)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert (base / "output" / "success").exists(), log[-4000:]
    assert not (base / "output" / "failure").exists()

    # The toolkit turned JSON-encoded values into plain arguments.
    assert "--overwrite_output_dir True" in log and "--load_best_model_at_end False" in log
    assert "pos_weight per label" in log
    model_files = files_under(base / "model")
    assert {"config.json", "model.safetensors", "classifier_config.json", "tokenizer.json"} <= model_files
    assert not any("checkpoint" in name for name in model_files)
    config = json.loads((base / "model" / "config.json").read_text())
    assert list(config["id2label"].values()) == LABELS
    assert (base / "output" / "data" / "eval_results.json").exists()
    # The arguments the Trainer really ran with, as it saved them with the checkpoint.
    args = torch.load(next((base / "checkpoints").glob("checkpoint-*/training_args.bin")), weights_only=False)
    assert args.overwrite_output_dir is True
    assert args.group_by_length is False
    assert args.load_best_model_at_end is False
    assert args.learning_rate == 1e-3


def test_a_failing_job_is_reported_as_failure(tmp_path: Path) -> None:
    base = tmp_path / "opt-ml"
    write_sagemaker_tree(
        base,
        {"model_name_or_path": "unused", "text_column_names": "title,body"},
        stage_job_source(tmp_path / "source"),
    )
    result = run_toolkit(base)
    assert result.returncode != 0
    failure = (base / "output" / "failure").read_text()
    assert "missing column(s) ['title', 'body']" in result.stdout + result.stderr + failure
