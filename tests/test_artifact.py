"""model.tar.gz packing and the deployability check."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from multilabel.core.artifact import (
    ArtifactError,
    ClassifierConfig,
    WindowSettings,
    check_model_archive,
    copy_serving_code,
    id2label_problems,
    main,
    pack_model,
)
from multilabel.text.pair_encoding import TRUNCATION_STRATEGIES
from multilabel.text.windows import DEFAULT_POOLING, POOLINGS
from tests.conftest import SageMakerRun
from tests.helpers import ROOT, files_under

# What the endpoint imports: inference.py, the codec, the model and their light modules.
SERVING_CODE = {
    "inference.py",
    "multilabel/__init__.py",
    "multilabel/serving/__init__.py",
    "multilabel/serving/request_codec.py",
    "multilabel/serving/options.py",  # request parameters, checked into the thresholds' array
    "multilabel/serving/classifier.py",
    "multilabel/serving/runtime.py",
    "multilabel/serving/onnx_runtime.py",
    "multilabel/text/__init__.py",
    "multilabel/text/pair_encoding.py",
    "multilabel/text/windows.py",  # long records: windows and pooling
    "multilabel/text/tfidf.py",  # the TF-IDF half of a hybrid model (numpy)
    "multilabel/text/decisions.py",  # thresholds and decisions, as train.py decides
    "multilabel/core/__init__.py",
    "multilabel/core/artifact.py",  # ClassifierConfig
    "multilabel/core/job_source.py",  # imported by artifact
}


def members(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


def test_classifier_config_problems() -> None:
    labels = ["a", "b"]
    good = ClassifierConfig(("t1", "t2"), {"a": 0.5, "b": 1}, 64)
    assert good.problems(labels) == []
    assert ClassifierConfig.TRUNCATIONS == TRUNCATION_STRATEGIES
    assert WindowSettings.POOLINGS == POOLINGS
    assert good.windows.pooling == DEFAULT_POOLING  # a config without windows reads like train.py
    bad = ClassifierConfig(("t1", ""), {"a": 1.5, "c": 0.5}, 0, "only_third")
    assert bad.problems(labels) == [
        "classifier_config.json: text_columns: expected 1 or 2 distinct non-empty names, found ('t1', '')",
        "classifier_config.json: max_seq_length: expected a positive integer, found 0",
        "classifier_config.json: truncation: expected one of ['longest_first', 'only_first', 'only_second'], "
        "found 'only_third'",
        "classifier_config.json: thresholds: no threshold for label(s) ['b'] of config.json's id2label",
        "classifier_config.json: thresholds: label(s) ['c'] are not in config.json's id2label ['a', 'b']",
        "classifier_config.json: thresholds: expected numbers in [0, 1], found {'a': 1.5}",
    ]
    for columns in [("t1", "t1"), ("a", "b", "c"), (), "t1"]:
        assert "text_columns" in dataclasses.replace(good, text_columns=columns).problems(labels)[0]
    for length in [True, 2.5, -1]:
        assert "max_seq_length" in dataclasses.replace(good, max_seq_length=length).problems(labels)[0]
    for value in [float("nan"), "0.5", None, False]:
        assert (
            "expected numbers in [0, 1]"
            in good.__class__(("t1",), {"a": value, "b": 0}, 8).problems(labels)[0]
        )


def test_the_endpoint_code_holds_only_what_inference_py_imports(tmp_path: Path) -> None:
    """code/ gets inference.py and the package modules it imports, directly or not, and nothing else."""
    assert copy_serving_code(tmp_path)
    assert files_under(tmp_path / "code") == SERVING_CODE, "code/ should hold exactly the serving modules"


@pytest.fixture
def model_copy(sm_run: SageMakerRun, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sm_run.model_dir, tmp_path / "model"))


@pytest.mark.slow
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
        "code/multilabel/serving/classifier.py",
        "code/multilabel/serving/request_codec.py",
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


@pytest.mark.slow
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
    with pytest.raises(ArtifactError, match="is not deployable"):
        pack_model(model_copy, tmp_path / "refused.tar.gz")
    shutil.rmtree(model_copy / "code")
    assert (
        "no code/inference.py: the endpoint would fall back to the default pipeline"
        in check_model_archive(repack(model_copy, tmp_path / "nocode.tar.gz"))
    )
    assert main(["check", str(tmp_path / "nocode.tar.gz")]) == 1


# The CLI, run as users run it: `python -m multilabel.artifact ...`.


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "multilabel.artifact", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line.removeprefix("ERROR ") for line in result.stderr.splitlines() if line.startswith("ERROR ")]


@pytest.fixture
def good_archive(model_copy: Path, tmp_path: Path) -> Path:
    return pack_model(model_copy, tmp_path / "good.tar.gz")


def with_member(good: Path, archive: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    """A copy of `good` with one more member."""
    with tarfile.open(good) as src, tarfile.open(archive, "w:gz") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        member.size = len(data)
        dst.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return archive


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = linkname
    return member


@pytest.mark.slow
@pytest.mark.parametrize(
    ("member", "message"),
    [
        (tar_member("../evil.py"), "unsafe member '../evil.py': path contains '..'"),
        (tar_member("code/../../evil.py"), "unsafe member 'code/../../evil.py': path contains '..'"),
        (tar_member("/etc/cron.d/evil"), "unsafe member '/etc/cron.d/evil': absolute path"),
        (
            tar_member("code/passwd", tarfile.SYMTYPE, "/etc/passwd"),
            "unsafe member 'code/passwd': symbolic link to '/etc/passwd'",
        ),
        (
            tar_member("config.json", tarfile.SYMTYPE, "/etc/passwd"),
            "unsafe member 'config.json': symbolic link to '/etc/passwd'",
        ),
        (
            tar_member("code/hard", tarfile.LNKTYPE, "/etc/shadow"),
            "unsafe member 'code/hard': hard link to '/etc/shadow'",
        ),
        (tar_member("code/null", tarfile.CHRTYPE), "unsafe member 'code/null': device file"),
        (tar_member("code/sda", tarfile.BLKTYPE), "unsafe member 'code/sda': device file"),
        (tar_member("code/pipe", tarfile.FIFOTYPE), "unsafe member 'code/pipe': fifo"),
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "symlink",
        "symlink-over-config",
        "hardlink",
        "chr",
        "blk",
        "fifo",
    ],
)
def test_check_refuses_unsafe_members(
    good_archive: Path, tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    archive = with_member(good_archive, tmp_path / "evil.tar.gz", member, b"evil" if member.isfile() else b"")
    before = sha256(archive)
    result = cli("check", archive)
    assert result.returncode == 1, result.stderr
    assert message in error_lines(result)
    assert "is deployable" not in result.stderr
    assert sha256(archive) == before
    assert not (tmp_path.parent / "evil.py").exists()


def with_classifier_config(model_dir: Path, tmp_path: Path, change: dict[str, object] | str) -> Path:
    path = model_dir / "classifier_config.json"
    if isinstance(change, str):
        path.write_text(change)
    else:
        path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    return repack(model_dir, tmp_path / "mismatch.tar.gz")


@pytest.mark.slow
def test_check_refuses_a_classifier_config_that_does_not_match_config_json(
    model_copy: Path, tmp_path: Path
) -> None:
    labels = list(json.loads((model_copy / "config.json").read_text())["id2label"].values())
    thresholds = json.loads((model_copy / "classifier_config.json").read_text())["thresholds"]
    assert sorted(thresholds) == sorted(labels)
    missing = {k: v for k, v in thresholds.items() if k != labels[0]}
    cases: list[tuple[dict[str, object] | str, str]] = [
        ({"thresholds": missing}, f"thresholds: no threshold for label(s) {[labels[0]]}"),
        ({"thresholds": {**thresholds, "label99": 0.5}}, "thresholds: label(s) ['label99'] are not in"),
        ({"thresholds": {**thresholds, labels[1]: 1.5}}, "thresholds: expected numbers in [0, 1]"),
        ({"thresholds": {**thresholds, labels[1]: -0.1}}, "thresholds: expected numbers in [0, 1]"),
        ({"thresholds": {**thresholds, labels[1]: "0.5"}}, "thresholds: expected numbers in [0, 1]"),
        ({"text_columns": []}, "text_columns: expected 1 or 2"),
        ({"text_columns": ["a", "b", "c"]}, "text_columns: expected 1 or 2"),
        ({"text_columns": [1]}, "text_columns: expected 1 or 2"),
        ({"max_seq_length": 0}, "max_seq_length: expected a positive integer"),
        ({"max_seq_length": "256"}, "max_seq_length: expected a positive integer"),
        ({"max_seq_length": 2.5}, "max_seq_length: expected a positive integer"),
        ("{not json", "classifier_config.json: not valid JSON"),
    ]
    original = (model_copy / "classifier_config.json").read_text()
    for change, message in cases:
        archive = with_classifier_config(model_copy, tmp_path, change)
        (model_copy / "classifier_config.json").write_text(original)
        result = cli("check", archive)
        lines = error_lines(result)
        assert result.returncode == 1, (change, result.stderr)
        assert any(message in line for line in lines), (change, lines)
        assert all(line.startswith("classifier_config.json") for line in lines), (change, lines)
    assert cli("check", repack(model_copy, tmp_path / "restored.tar.gz")).returncode == 0


@pytest.mark.slow
def test_check_says_what_is_wrong_with_a_missing_or_unreadable_file(
    good_archive: Path, tmp_path: Path
) -> None:
    (tmp_path / "text.tar.gz").write_text("not an archive\n")
    (tmp_path / "gzipped-text.tar.gz").write_bytes(gzip.compress(b"not a tar archive\n" * 64))
    (tmp_path / "truncated.tar.gz").write_bytes(good_archive.read_bytes()[: good_archive.stat().st_size // 2])
    cases = {
        tmp_path / "missing.tar.gz": "no such file",
        tmp_path: "not a file",
        tmp_path / "text.tar.gz": "not a readable gzip-compressed tar archive",
        tmp_path / "gzipped-text.tar.gz": "not a readable gzip-compressed tar archive",
        tmp_path / "truncated.tar.gz": "not a readable gzip-compressed tar archive",
    }
    for path, message in cases.items():
        result = cli("check", path)
        lines = error_lines(result)
        assert result.returncode == 2, (path, result.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"{path}: {message}"), (path, lines)
    help_text = " ".join(cli("--help").stdout.split())
    assert "Exit status" in help_text and "2 a missing or unreadable file" in help_text


@pytest.mark.slow
def test_a_refused_pack_leaves_the_existing_archive_as_it_was(
    model_copy: Path, good_archive: Path, tmp_path: Path
) -> None:
    before = sha256(good_archive)
    (tmp_path / "empty").mkdir()
    cases = {
        tmp_path / "missing": (2, f"{tmp_path / 'missing'}: no such directory"),
        tmp_path / "empty": (2, f"{tmp_path / 'empty'} is not a model directory (no config.json)"),
    }
    for model_dir, (code, message) in cases.items():
        result = cli("pack", model_dir, good_archive)
        assert result.returncode == code, result.stderr
        assert error_lines(result)[0].startswith(message)
        assert sha256(good_archive) == before
    result = cli("pack", tmp_path / "missing", tmp_path / "new.tar.gz")
    assert result.returncode == 2 and not (tmp_path / "new.tar.gz").exists()

    # A model directory whose archive would not deploy: nothing written, nothing left behind.
    thresholds = json.loads((model_copy / "classifier_config.json").read_text())["thresholds"]
    first = next(iter(thresholds))
    config = json.loads((model_copy / "classifier_config.json").read_text())
    del config["thresholds"][first]
    (model_copy / "classifier_config.json").write_text(json.dumps(config))
    (model_copy / "code" / "passwd").symlink_to("/etc/passwd")
    listing = sorted(p.name for p in tmp_path.iterdir())
    result = cli("pack", model_copy, good_archive)
    lines = error_lines(result)
    assert result.returncode == 1, result.stderr
    assert lines[0] == f"{good_archive} is not deployable, so it was not written:"
    assert "unsafe member 'code/passwd': symbolic link to '/etc/passwd'" in lines
    assert any(f"no threshold for label(s) {[first]}" in line for line in lines)
    assert sha256(good_archive) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing

    # Fixed, it replaces the archive, and the result checks clean.
    (model_copy / "code" / "passwd").unlink()
    config["thresholds"][first] = 0.5
    (model_copy / "classifier_config.json").write_text(json.dumps(config))
    result = cli("pack", model_copy, good_archive)
    assert result.returncode == 0, result.stderr
    assert sha256(good_archive) != before
    assert cli("check", good_archive).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


@pytest.mark.slow
def test_pack_refuses_to_write_the_archive_into_the_model_directory(model_copy: Path) -> None:
    result = cli("pack", model_copy, model_copy / "model.tar.gz")
    assert result.returncode == 2
    assert "write the archive outside the model directory" in error_lines(result)[0]
    assert not (model_copy / "model.tar.gz").exists()


def test_window_settings_are_checked_and_old_configs_read_as_truncation(tmp_path: Path) -> None:
    labels = ["a"]
    old = {"text_columns": ["t"], "thresholds": {"a": 0.5}, "max_seq_length": 64}
    (tmp_path / "classifier_config.json").write_text(json.dumps(old), encoding="utf-8")
    loaded = ClassifierConfig.load(tmp_path)
    assert loaded.windows == WindowSettings(1, 0, "mean") and not loaded.windows.enabled
    assert loaded.problems(labels) == []
    # One object in Python, saved under the keys configs have always had, and read back equal.
    windowed = ClassifierConfig(("t",), {"a": 0.5}, 64, windows=WindowSettings(3, 8, "max"))
    saved = json.loads(windowed.save(tmp_path).read_text(encoding="utf-8"))
    assert (saved["max_windows"], saved["window_overlap"], saved["window_pooling"]) == (3, 8, "max")
    assert "windows" not in saved
    assert ClassifierConfig.load(tmp_path) == windowed
    bad = ClassifierConfig(("t",), {"a": 0.5}, 64, windows=WindowSettings(0, -1, "sum"))
    assert bad.problems(labels) == [
        "classifier_config.json: max_windows: expected a positive integer, found 0",
        "classifier_config.json: window_overlap: expected a non-negative integer, found -1",
        "classifier_config.json: window_pooling: expected one of ['max', 'mean', 'logsumexp'], found 'sum'",
    ]
    wide = ClassifierConfig(("t",), {"a": 0.5}, 64, windows=WindowSettings(4, 32))
    assert wide.problems(labels) == [
        "classifier_config.json: window_overlap: expected less than half of max_seq_length 64, found 32"
    ]


def test_id2label_with_a_gap_a_repeated_name_or_the_separator_is_refused() -> None:
    """`artifact check` once passed a gap (the load then failed with KeyError: 9) and a repeated name."""
    good = {str(i): f"tag{i}" for i in range(10)}
    assert id2label_problems(good) == []
    gap = {k: v for k, v in good.items() if k != "9"} | {"10": "tag10"}
    assert id2label_problems(gap) == [
        "config.json: id2label's ids must be 0..9, found ['0', '1', '10', '2', '3', '4', '5', '6', '7', '8'] (missing ['9'])"
    ]
    assert id2label_problems({**good, "3": "tag1"}) == [
        "config.json: id2label names ['tag1'] more than one output; each label needs its own name"
    ]
    piped = {**good, "2": "billing|refund"}
    assert "contain '|', which joins the predicted labels" in id2label_problems(piped)[0]
    assert id2label_problems(piped, separator=False) == [], (
        "the endpoint answers in JSON: it serves such a name"
    )
    assert id2label_problems({**good, "4": ""}) == [
        "config.json: id2label has empty or non-text label names ['']"
    ]


@pytest.mark.slow
def test_check_refuses_a_broken_id2label_and_a_huge_config_json(model_copy: Path, tmp_path: Path) -> None:
    config = json.loads((model_copy / "config.json").read_text())
    id2label = config["id2label"]
    config["id2label"] = {**id2label, "1": id2label["0"]}
    (model_copy / "config.json").write_text(json.dumps(config))
    problems = check_model_archive(repack(model_copy, tmp_path / "repeated.tar.gz"))
    assert problems == [
        f"config.json: id2label names [{id2label['0']!r}] more than one output; each label needs its own name"
    ]
    (model_copy / "config.json").write_text(" " * (11 * 2**20) + json.dumps(config))
    problems = check_model_archive(repack(model_copy, tmp_path / "huge.tar.gz"))
    assert problems == [
        "config.json: 11,534,738 bytes, more than a model config ever holds (10,485,760)"
    ] or (len(problems) == 1 and "more than a model config ever holds" in problems[0])
