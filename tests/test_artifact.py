"""model.tar.gz packing and the deployability check."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from multilabel.artifact import check_model_archive, main, pack_model
from tests.conftest import SageMakerRun


def members(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


@pytest.fixture
def model_copy(sm_run: SageMakerRun, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sm_run.model_dir, tmp_path / "model"))


def test_pack_puts_files_at_the_root_with_code_and_no_junk(model_copy: Path, tmp_path: Path) -> None:
    (model_copy / "._config.json").write_text("resource fork")
    (model_copy / "code" / "__pycache__").mkdir()
    (model_copy / "code" / "__pycache__" / "inference.cpython-311.pyc").write_bytes(b"x")
    archive = pack_model(model_copy, tmp_path / "model.tar.gz")
    names = members(archive)
    assert {
        "config.json",
        "model.safetensors",
        "classifier_config.json",
        "tokenizer.json",
        "code/inference.py",
        "code/multilabel/serving.py",
    } <= names
    assert not any(n.startswith(("._", "./")) or "/._" in n or "__pycache__" in n for n in names)
    assert check_model_archive(archive) == []
    assert main(["check", str(archive)]) == 0


def repack(model_dir: Path, archive: Path, prefix: str = "") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=prefix + path.relative_to(model_dir).as_posix())
    return archive


def test_check_names_every_problem(model_copy: Path, tmp_path: Path) -> None:
    wrapped = repack(model_copy, tmp_path / "wrapped.tar.gz", prefix="model/")
    assert (
        "no config.json at the archive root (files sit under ['model']: pack the folder's contents, not the folder)"
        in check_model_archive(wrapped)
    )

    (model_copy / "code" / "inference.py").write_text(
        "def model_fn(model_dir):\n    pass\n\ndef input_fn(data):\n    pass\n\n"
        "def predict_fn(data, model):\n    pass\n\ndef output_fn(prediction, accept):\n    pass\n\n"
        "def transform_fn(model, data, content_type, accept):\n    pass\n"
    )
    (model_copy / "model.safetensors").rename(model_copy / "pytorch_model.bin")
    (model_copy / "classifier_config.json").unlink()
    (model_copy / "._junk").write_text("x")
    problems = check_model_archive(repack(model_copy, tmp_path / "bad.tar.gz"))
    assert problems == [
        "junk file ._junk in the archive",
        "no safetensors weights (model.safetensors); the endpoint loads no other format",
        "no classifier_config.json (thresholds and text columns written by train.py)",
        "code/inference.py defines transform_fn together with input_fn/predict_fn/output_fn",
        "code/inference.py: input_fn takes ['data'], expected ['input_data', 'content_type'] (+ optional context)",
    ]
    with pytest.raises(ValueError, match="is not deployable"):
        pack_model(model_copy, tmp_path / "refused.tar.gz")
    shutil.rmtree(model_copy / "code")
    assert (
        "no code/inference.py: the endpoint would fall back to the default pipeline"
        in check_model_archive(repack(model_copy, tmp_path / "nocode.tar.gz"))
    )
    assert main(["check", str(tmp_path / "nocode.tar.gz")]) == 1
