"""The model directory's own file, and the `code/` that makes it deployable as is.

Label names live in `config.json` (`id2label`); everything else the endpoint needs to
reproduce training's decisions lives in `classifier_config.json`, written here at the
end of training and read back here by the endpoint. Standard library only.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tarfile
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

from multilabel.core.job_source import PACKAGE_DIR, PROJECT_DIR, copy_package, package_imports

logger = logging.getLogger(__name__)

CLASSIFIER_CONFIG = "classifier_config.json"
HANDLER = "inference.py"
TFIDF_FILE = "tfidf.npz"  # the TF-IDF half of a hybrid model (multilabel.text.tfidf)
# Joins a row's predicted labels in prediction CSVs, so no label name may contain it.
LABEL_SEPARATOR = "|"
MAX_CONFIG_BYTES = 10 * 2**20  # a config.json is a few KB; `check` refuses to read a huge one
# Every entry train.py (and onnx_export) writes into a model directory: transformers' weights
# and the tokenizer files of the supported encoder families, this project's files, code/ and
# onnx/. A folder holding anything else is not replaced (`foreign_entries`).
MODEL_DIR_NAMES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.jinja",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "sentencepiece.bpe.model",
        "spiece.model",
        "spm.model",
        CLASSIFIER_CONFIG,
        TFIDF_FILE,
        "code",
        "onnx",
    }
)
_SHARD = re.compile(r"(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)")


def max_window_overlap(window_tokens: int) -> int:
    """The most tokens two consecutive windows may share: less than half a window, so that each
    window reads more new tokens than it repeats. The one home of this bound: the flag check,
    the clamp of a run's default and the check of a saved config all ask here."""
    return window_tokens // 2 - 1


@dataclass(frozen=True)
class WindowSettings:
    """How a model reads a long record (multilabel.text.windows): up to `max_windows` windows
    of `max_seq_length` tokens, consecutive windows sharing `overlap` tokens, the windows'
    logits pooled by `pooling`. One object from train.py's flags to the endpoint; saved in
    `classifier_config.json` as max_windows, window_overlap and window_pooling."""

    max_windows: int = 1  # 1: one truncated window, as without windowing (and before windows)
    overlap: int = 0
    pooling: str = "mean"  # windows.DEFAULT_POOLING
    POOLINGS: ClassVar[tuple[str, ...]] = ("max", "mean", "logsumexp")  # windows.POOLINGS
    # Their keys in classifier_config.json, which predates this object.
    SAVED_KEYS: ClassVar[dict[str, str]] = {
        "max_windows": "max_windows",
        "overlap": "window_overlap",
        "pooling": "window_pooling",
    }

    @property
    def enabled(self) -> bool:
        """Whether records are read as several windows."""
        return self.max_windows > 1

    def problems(self, max_seq_length: object) -> list[str]:
        """Why these settings cannot read records of `max_seq_length` tokens; [] if they can."""
        problems = []
        windows, overlap = self.max_windows, self.overlap
        if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
            problems.append(f"max_windows: expected a positive integer, found {windows!r}")
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
            problems.append(f"window_overlap: expected a non-negative integer, found {overlap!r}")
        elif (
            isinstance(max_seq_length, int)
            and max_seq_length >= 1
            and overlap > max_window_overlap(max_seq_length)
            and windows != 1
        ):
            problems.append(
                f"window_overlap: expected less than half of max_seq_length {max_seq_length}, found {overlap}"
            )
        if self.pooling not in self.POOLINGS:
            problems.append(f"window_pooling: expected one of {list(self.POOLINGS)}, found {self.pooling!r}")
        return problems


@dataclass(frozen=True)
class ClassifierConfig:
    """What serving needs beyond the model and the tokenizer."""

    text_columns: tuple[str, ...]
    thresholds: dict[str, float]
    max_seq_length: int
    truncation: str = "longest_first"
    # How the training CSV held its labels, so that `train.py --do_train False` reads an
    # evaluation or test file as training did (None in models trained before they were saved).
    label_format: str | None = None
    label_columns: tuple[str, ...] | None = None
    # Long records: how many windows per record, their overlap and pooling (WindowSettings,
    # saved flat). The default (and configs written before windows): one truncated window.
    windows: WindowSettings = WindowSettings()
    # How train.py chose the thresholds (metrics.ThresholdChoice.record): the strategy asked
    # for and applied, the global threshold, each label's validation positives and, with
    # cross-validation, each candidate's out-of-fold F1. A record only: the endpoint does not
    # use it. None in configs written before it was saved.
    threshold_selection: dict | None = None
    # With train.py's hybrid (`--hybrid auto`, the default): the encoder's share of each
    # probability, the rest from the TF-IDF model in tfidf.npz (multilabel.text.tfidf): one
    # number, or {label: weight} (`--hybrid_blend per_label`). None: the encoder alone.
    hybrid_weight: float | dict[str, float] | None = None
    # `--label_separator`: how a names-format cell joins several names, so that scoring an
    # evaluation file reads it as training did. None: one name a cell.
    label_separator: str | None = None
    # `--id_column`: a field of each record (a CSV column) carried to its result, never
    # read by the model. None: records hold text fields only.
    id_column: str | None = None

    # pair_encoding.TRUNCATION_STRATEGIES, repeated because this module is standard library only
    # (tests/test_artifact.py pins that the two agree).
    TRUNCATIONS: ClassVar[tuple[str, ...]] = ("longest_first", "only_first", "only_second")

    def save(self, model_dir: str | Path) -> Path:
        """Write `classifier_config.json` into `model_dir`."""
        path = Path(model_dir) / CLASSIFIER_CONFIG
        data = asdict(self)
        del data["windows"]
        data.update({key: getattr(self.windows, name) for name, key in WindowSettings.SAVED_KEYS.items()})
        data["text_columns"] = list(self.text_columns)
        if self.label_columns is not None:
            data["label_columns"] = list(self.label_columns)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> ClassifierConfig:
        """Read `classifier_config.json`; `problems` then checks its values.

        Raises FileNotFoundError when it is missing, ValueError when it is not a JSON
        object with exactly this class's keys.
        """
        path = Path(model_dir) / CLASSIFIER_CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; this model directory was not written by train.py")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err}); write it again with train.py") from None
        keys = {f.name for f in fields(cls) if f.name != "windows"} | set(WindowSettings.SAVED_KEYS.values())
        required = {f.name for f in fields(cls) if f.default is MISSING}
        if not isinstance(data, dict) or not required <= data.keys() <= keys:
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"{path}: expected an object with the keys {sorted(required)} (and optionally "
                f"{sorted(keys - required)}), found {found}"
            )
        for key in ("text_columns", "label_columns"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        saved = {name: data.pop(key) for name, key in WindowSettings.SAVED_KEYS.items() if key in data}
        return cls(**data, windows=WindowSettings(**saved))

    def problems(self, label_names: Sequence[str]) -> list[str]:
        """Why this config cannot serve a model with these labels (`config.json`'s id2label); [] if it can."""
        problems = []
        columns = self.text_columns
        if (
            not isinstance(columns, tuple)
            or not 1 <= len(columns) <= 2
            or not all(isinstance(c, str) and c.strip() for c in columns)
            or len(set(columns)) != len(columns)
        ):
            problems.append(f"text_columns: expected 1 or 2 distinct non-empty names, found {columns!r}")
        length = self.max_seq_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            problems.append(f"max_seq_length: expected a positive integer, found {length!r}")
        if self.truncation not in self.TRUNCATIONS:
            problems.append(
                f"truncation: expected one of {list(self.TRUNCATIONS)}, found {self.truncation!r}"
            )
        problems += self.windows.problems(length)
        id_column = self.id_column
        if id_column is not None and (
            not isinstance(id_column, str) or not id_column.strip() or id_column in columns
        ):
            problems.append(
                f"id_column: expected null or a name other than the text columns, found {id_column!r}"
            )
        problems += self._hybrid_weight_problems(label_names)
        selection = self.threshold_selection
        if selection is not None and not (
            isinstance(selection, dict) and isinstance(selection.get("applied"), str)
        ):
            problems.append(
                f"threshold_selection: expected an object with the strategy 'applied', or null; found {selection!r}"
            )
        if not isinstance(self.thresholds, dict):
            problems.append(f"thresholds: expected an object {{label: threshold}}, found {self.thresholds!r}")
            return [f"{CLASSIFIER_CONFIG}: {p}" for p in problems]
        missing = [name for name in label_names if name not in self.thresholds]
        if missing:
            problems.append(f"thresholds: no threshold for label(s) {missing} of config.json's id2label")
        extra = sorted(set(self.thresholds) - set(label_names), key=str)
        if extra:
            problems.append(
                f"thresholds: label(s) {extra} are not in config.json's id2label {list(label_names)}"
            )
        bad = {
            name: value
            for name, value in self.thresholds.items()
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0
        }
        if bad:
            problems.append(f"thresholds: expected numbers in [0, 1], found {bad}")
        return [f"{CLASSIFIER_CONFIG}: {p}" for p in problems]

    def threshold_list(self, label_names: Sequence[str]) -> list[float]:
        """Thresholds in label order."""
        return [self.thresholds[name] for name in label_names]

    def _hybrid_weight_problems(self, label_names: Sequence[str]) -> list[str]:
        weight = self.hybrid_weight

        def share(value: object) -> bool:
            return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1

        if weight is None or share(weight):
            return []
        expected = "expected a number from 0 to 1, {label: number from 0 to 1} for every label, or null"
        if not isinstance(weight, dict):
            return [f"hybrid_weight: {expected}; found {weight!r}"]
        problems = []
        if set(weight) != set(label_names):
            missing = [n for n in label_names if n not in weight]
            extra = sorted(set(weight) - set(label_names), key=str)
            problems.append(f"hybrid_weight: {expected}; labels missing {missing}, not labels {extra}")
        bad = {name: value for name, value in weight.items() if not share(value)}
        if bad:
            problems.append(f"hybrid_weight: {expected}; found {bad}")
        return problems

    def blend_weights(self, label_names: Sequence[str]) -> float | list[float] | None:
        """The hybrid's encoder weight: one number, or one per label in label order (None: no hybrid)."""
        if isinstance(self.hybrid_weight, dict):
            return [self.hybrid_weight[name] for name in label_names]
        return self.hybrid_weight

    def encoder_weights(self, label_names: Sequence[str]) -> list[float] | None:
        """The hybrid's encoder weight of each label, in label order (None: no hybrid)."""
        weight = self.blend_weights(label_names)
        if weight is None or isinstance(weight, list):
            return weight
        return [float(weight)] * len(label_names)


def copy_serving_code(model_dir: str | Path) -> bool:
    """Copy `inference.py` and the package modules it imports into `<model_dir>/code/`.

    The inference toolkit puts `code/` on `sys.path`, so the training job's
    `model.tar.gz` then deploys as it is. Returns False (and logs) when the project has
    no `inference.py` next to this package.
    """
    handler = PROJECT_DIR / HANDLER
    if not handler.is_file():
        logger.warning("no %s beside %s: the model directory has no code/", HANDLER, PACKAGE_DIR)
        return False
    code_dir = Path(model_dir) / "code"
    shutil.rmtree(code_dir, ignore_errors=True)
    code_dir.mkdir(parents=True)
    shutil.copy2(handler, code_dir / HANDLER)
    copy_package(code_dir, package_imports(handler))
    return True


# Hooks the inference toolkit calls, with their required parameters (a trailing
# `context` parameter is optional).
HOOKS = {
    "model_fn": ("model_dir",),
    "input_fn": ("input_data", "content_type"),
    "predict_fn": ("data", "model"),
    "output_fn": ("prediction", "accept"),
}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model")


def _is_junk(name: str) -> bool:
    """macOS resource forks and caches that must not ship."""
    parts = name.split("/")
    return any(p.startswith("._") or p in ("__pycache__", ".DS_Store") for p in parts)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's content, read in 1 MiB blocks: data files in a run's
    fingerprint, weights in an ONNX export's record, copies of a training file."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def id2label_problems(id2label: dict, separator: bool = True) -> list[str]:
    """Why `config.json`'s id2label cannot name a model's outputs: its ids must be 0..n-1
    (as strings in the file, integers once transformers reads it), its names distinct,
    non-empty strings and (with `separator`) free of LABEL_SEPARATOR; [] if it can. The
    endpoint answers in JSON, so it serves names holding the separator (`separator=False`)."""
    problems = []
    ids = sorted(str(k) for k in id2label)
    expected = [str(i) for i in range(len(id2label))]
    if sorted(ids, key=lambda k: (len(k), k)) != expected:
        missing = [i for i in expected if i not in ids]
        problems.append(
            f"config.json: id2label's ids must be 0..{len(id2label) - 1}, found {ids[:12]}"
            + (f" (missing {missing[:12]})" if missing else "")
        )
    names = list(id2label.values())
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        problems.append(f"config.json: id2label has empty or non-text label names {bad[:5]}")
    repeated = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
    if repeated:
        problems.append(
            f"config.json: id2label names {repeated[:10]} more than one output; each label needs its own name"
        )
    joined = [n for n in names if separator and isinstance(n, str) and LABEL_SEPARATOR in n]
    if joined:
        problems.append(
            f"config.json: label name(s) {joined[:5]} contain {LABEL_SEPARATOR!r}, which joins the "
            "predicted labels in prediction CSVs; rename them"
        )
    return problems


def read_model_dir(model_dir: str | Path) -> tuple[tuple[str, ...], ClassifierConfig | None, list[str]]:
    """The one check of "is this a model directory train.py wrote?", for the endpoint, scoring
    and `python -m multilabel.serve`: its label names (config.json's id2label), its classifier
    config, and every problem (a missing or unreadable file, a config.json that is no
    multi-label classifier, an id2label with gaps or repeats, a classifier_config.json that
    does not fit it); the problems are [] for a model directory."""
    root = Path(model_dir)
    if not root.is_dir():
        return (), None, [f"{model_dir} is not a directory"]
    try:
        model_config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return (), None, [f"{root / 'config.json'} is missing or unreadable ({err})"]
    id2label = model_config.get("id2label") if isinstance(model_config, dict) else None
    if not isinstance(id2label, dict) or not id2label:
        return (), None, [f"{root / 'config.json'} has no id2label"]
    if model_config.get("problem_type") != "multi_label_classification":
        return (), None, [f"{root / 'config.json'} is not a multi-label classifier (problem_type)"]
    problems = id2label_problems(id2label, separator=False)
    if problems:
        return (), None, problems
    names = tuple(id2label[str(i)] for i in range(len(id2label)))
    try:
        config = ClassifierConfig.load(root)
    except (FileNotFoundError, ValueError) as err:
        return names, None, [str(err)]
    return names, config, config.problems(names)


def foreign_entries(model_dir: str | Path) -> list[str]:
    """The entries of an existing folder that train.py did not write, sorted; [] for a model folder.

    A folder is train.py's when it holds `classifier_config.json` and nothing but
    MODEL_DIR_NAMES (and weight shards): only such a folder may be replaced whole.
    Without `classifier_config.json` every entry is foreign, `config.json` included.
    """
    names = sorted(entry.name for entry in Path(model_dir).iterdir() if not _is_junk(entry.name))
    if CLASSIFIER_CONFIG not in names:
        return names
    return [n for n in names if n not in MODEL_DIR_NAMES and not _SHARD.fullmatch(n)]


class ArtifactError(ValueError):
    """`pack` or `check` refused: a headline, one line per problem, and the CLI's exit status."""

    def __init__(self, headline: str, problems: Sequence[str] = (), exit_code: int = 2) -> None:
        super().__init__(headline + "".join(f"\n  - {p}" for p in problems))
        self.headline = headline
        self.problems = list(problems)
        self.exit_code = exit_code


def pack_model(model_dir: str | Path, archive: str | Path) -> Path:
    """Write `model_dir` as a SageMaker `model.tar.gz`: files at the archive root, no junk.

    The archive is written to a temporary sibling, checked, and renamed into place only
    when the check passes: a refused pack leaves an existing `archive` as it was. Raises
    ArtifactError: exit_code 2 for a missing or non-model directory, 1 for an archive
    that would not deploy.
    """
    import os

    root = Path(model_dir)
    archive = Path(archive)
    if not root.is_dir():
        raise ArtifactError(f"{root}: no such directory; pass the model directory that train.py wrote")
    if not (root / "config.json").is_file():
        raise ArtifactError(
            f"{root} is not a model directory (no config.json); pass the --model_dir that train.py wrote"
        )
    if not archive.parent.is_dir():
        raise ArtifactError(f"{archive.parent}: no such directory to write {archive.name} into")
    if archive.resolve().is_relative_to(root.resolve()):
        raise ArtifactError(f"{archive} lies inside {root}: write the archive outside the model directory")
    partial = archive.with_name(f".{archive.name}.{os.getpid()}.partial")
    try:
        with tarfile.open(partial, "w:gz") as tar:
            for path in sorted(root.rglob("*")):
                name = path.relative_to(root).as_posix()
                # Symlinks go in as they are, so that the check below refuses them by name.
                if (path.is_file() or path.is_symlink()) and not _is_junk(name):
                    tar.add(path, arcname=name, recursive=False)
        problems = check_model_archive(partial)
        if problems:
            raise ArtifactError(f"{archive} is not deployable, so it was not written:", problems, exit_code=1)
        os.replace(partial, archive)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("packed %s into %s", root, archive)
    return archive


def _hook_problems(source: str) -> list[str]:
    import ast

    tree = ast.parse(source)
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    problems = []
    if "transform_fn" in functions and any(h in functions for h in ("input_fn", "predict_fn", "output_fn")):
        problems.append("code/inference.py defines transform_fn together with input_fn/predict_fn/output_fn")
    for hook, params in HOOKS.items():
        if hook not in functions:
            if "transform_fn" not in functions or hook == "model_fn":
                problems.append(f"code/inference.py has no {hook}{params}")
            continue
        names = [a.arg for a in functions[hook].args.args]
        if len(names) not in (len(params), len(params) + 1):
            problems.append(
                f"code/inference.py: {hook} takes {names}, expected {list(params)} (+ optional context)"
            )
    return problems


def _unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why extracting `member` could write outside the model directory or create a non-file."""
    from pathlib import PurePosixPath

    name = member.name
    if name.startswith("/"):
        return f"unsafe member {name!r}: absolute path"
    if ".." in PurePosixPath(name).parts:
        return f"unsafe member {name!r}: path contains '..'"
    if member.issym():
        return f"unsafe member {name!r}: symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"unsafe member {name!r}: hard link to {member.linkname!r}"
    if member.ischr() or member.isblk():
        return f"unsafe member {name!r}: device file"
    if member.isfifo():
        return f"unsafe member {name!r}: fifo"
    if not (member.isfile() or member.isdir()):
        return f"unsafe member {name!r}: not a regular file or folder (tar type {member.type!r})"
    return None


def _classifier_config_problems(raw: bytes, label_names: Sequence[str]) -> list[str]:
    """The endpoint's own loader and checks, run on the archive's `classifier_config.json`."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CLASSIFIER_CONFIG
        path.write_bytes(raw)
        try:
            return ClassifierConfig.load(tmp).problems(label_names)
        except ValueError as err:
            return [str(err).replace(str(path), CLASSIFIER_CONFIG)]


def _config_problems(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> list[str]:
    """`config.json` and `classifier_config.json`, and whether the two agree."""
    if members["config.json"].size > MAX_CONFIG_BYTES:
        return [
            f"config.json: {members['config.json'].size:,} bytes, more than a model config ever holds ({MAX_CONFIG_BYTES:,})"
        ]
    try:
        config = json.load(tar.extractfile(members["config.json"]))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return [f"config.json: not valid JSON ({err})"]
    if not isinstance(config, dict):
        return [f"config.json: expected a JSON object, found {type(config).__name__}"]
    problems = []
    if config.get("problem_type") != "multi_label_classification":
        problems.append(
            f"config.json: problem_type is {config.get('problem_type')!r}, expected 'multi_label_classification'"
        )
    id2label = config.get("id2label")
    if not id2label or not isinstance(id2label, dict):
        problems.append("config.json: no id2label")
    elif id2label_problems(id2label):
        problems += id2label_problems(id2label)
    elif CLASSIFIER_CONFIG in members:
        raw = tar.extractfile(members[CLASSIFIER_CONFIG]).read()
        problems += _classifier_config_problems(raw, list(id2label.values()))
    return problems


def check_model_archive(archive: str | Path) -> list[str]:
    """Why a `model.tar.gz` would not deploy with this project's handler ([] if it would).

    Raises ArtifactError (exit_code 2) for a missing file or one that is not a
    gzip-compressed tar archive.
    """
    import zlib

    archive = Path(archive)
    if not archive.is_file():
        what = "not a file" if archive.exists() else "no such file"
        raise ArtifactError(f"{archive}: {what}")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            return _archive_problems(tar)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ArtifactError(f"{archive}: not a readable gzip-compressed tar archive ({err})") from None


def _hybrid_weight(config_bytes: bytes) -> float | None:
    """A packed classifier_config.json's hybrid_weight (None when absent or unreadable:
    the endpoint's start-up check reports a bad config in full)."""
    try:
        data = json.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data.get("hybrid_weight") if isinstance(data, dict) else None


def _archive_problems(tar: tarfile.TarFile) -> list[str]:
    all_members = tar.getmembers()
    problems = [p for p in map(_unsafe_member, all_members) if p]
    members = {m.name.removeprefix("./"): m for m in all_members if m.isfile() and not _unsafe_member(m)}
    problems += [f"junk file {n} in the archive" for n in sorted(members) if _is_junk(n)]
    if "config.json" not in members:
        tops = sorted({n.split("/")[0] for n in members if "/" in n} - {"code"})
        hint = f" (files sit under {tops}: pack the folder's contents, not the folder)" if tops else ""
        problems.append(f"no config.json at the archive root{hint}")
    else:
        problems += _config_problems(tar, members)
    if "model.safetensors" not in members and not any(
        n.startswith("model-") and n.endswith(".safetensors") for n in members
    ):
        problems.append("no safetensors weights (model.safetensors); the endpoint loads no other format")
    if not any(n in members for n in TOKENIZER_FILES) or "tokenizer_config.json" not in members:
        problems.append("no tokenizer (tokenizer_config.json and tokenizer.json or vocabulary files)")
    if CLASSIFIER_CONFIG not in members:
        problems.append(f"no {CLASSIFIER_CONFIG} (thresholds and text columns written by train.py)")
    elif (
        TFIDF_FILE not in members
        and _hybrid_weight(tar.extractfile(members[CLASSIFIER_CONFIG]).read()) is not None
    ):
        problems.append(f"no {TFIDF_FILE}: {CLASSIFIER_CONFIG} blends a TF-IDF model (hybrid_weight)")
    if f"code/{HANDLER}" not in members:
        problems.append(f"no code/{HANDLER}: the endpoint would fall back to the default pipeline")
    else:
        problems += _hook_problems(tar.extractfile(members[f"code/{HANDLER}"]).read().decode("utf-8"))
        if not any(n.startswith("code/multilabel/") for n in members):
            problems.append("code/inference.py imports multilabel, but code/multilabel/ is missing")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m multilabel.artifact pack MODEL_DIR model.tar.gz` or `check model.tar.gz`."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Pack or check a SageMaker model.tar.gz",
        epilog="Exit status: 0 packed, or deployable; 1 the archive would not deploy (one line per "
        "problem; pack then writes nothing); 2 a missing or unreadable file or folder, a file that is not a "
        "gzip-compressed tar archive, or a directory that is not a model directory.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="pack a model directory written by train.py")
    pack.add_argument("model_dir")
    pack.add_argument("archive")
    check = sub.add_parser("check", help="say why an archive would not deploy")
    check.add_argument("archive")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.command == "pack":
            pack_model(args.model_dir, args.archive)
            return 0
        problems = check_model_archive(args.archive)
    except ArtifactError as err:
        for line in (err.headline, *err.problems):
            logger.error("%s", line)
        return err.exit_code
    except OSError as err:  # e.g. the archive's folder is not writable, or the disk is full
        logger.error("%s", err)
        return 2
    for problem in problems:
        logger.error("%s", problem)
    if not problems:
        logger.info("%s is deployable", args.archive)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
