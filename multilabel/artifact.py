"""The model directory's own file, and the `code/` that makes it deployable as is.

Label names live in `config.json` (`id2label`); everything else the endpoint needs to
reproduce training's decisions lives in `classifier_config.json`, written here at the
end of training and read back here by the endpoint. Standard library only.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from multilabel.bundle import PACKAGE_DIR, PROJECT_DIR, copy_package

logger = logging.getLogger(__name__)

CLASSIFIER_CONFIG = "classifier_config.json"
HANDLER = "inference.py"


@dataclass(frozen=True)
class ClassifierConfig:
    """What serving needs beyond the model and the tokenizer."""

    text_columns: tuple[str, ...]
    thresholds: dict[str, float]
    max_seq_length: int
    truncation: str = "longest_first"

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / CLASSIFIER_CONFIG
        data = asdict(self)
        data["text_columns"] = list(self.text_columns)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> ClassifierConfig:
        path = Path(model_dir) / CLASSIFIER_CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; this model directory was not written by train.py")
        data = json.loads(path.read_text(encoding="utf-8"))
        data["text_columns"] = tuple(data["text_columns"])
        return cls(**data)

    def threshold_list(self, label_names: Sequence[str]) -> list[float]:
        """Thresholds in label order."""
        return [self.thresholds[name] for name in label_names]


def copy_serving_code(model_dir: str | Path) -> bool:
    """Copy `inference.py` and this package into `<model_dir>/code/`.

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
    copy_package(code_dir)
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


def pack_model(model_dir: str | Path, archive: str | Path) -> Path:
    """Write `model_dir` as a SageMaker `model.tar.gz`: files at the archive root, no junk."""
    import tarfile

    root = Path(model_dir)
    archive = Path(archive)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(root.rglob("*")):
            name = path.relative_to(root).as_posix()
            if path.is_file() and not _is_junk(name):
                tar.add(path, arcname=name, recursive=False)
    problems = check_model_archive(archive)
    if problems:
        raise ValueError(f"{archive} is not deployable:\n" + "\n".join(f"  - {p}" for p in problems))
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


def check_model_archive(archive: str | Path) -> list[str]:
    """Why a `model.tar.gz` would not deploy with this project's handler ([] if it would)."""
    import tarfile

    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
        problems = [f"junk file {n} in the archive" for n in sorted(members) if _is_junk(n)]
        if "config.json" not in members:
            tops = sorted({n.split("/")[0] for n in members if "/" in n} - {"code"})
            hint = f" (files sit under {tops}: pack the folder's contents, not the folder)" if tops else ""
            problems.append(f"no config.json at the archive root{hint}")
        else:
            config = json.load(tar.extractfile(members["config.json"]))
            if config.get("problem_type") != "multi_label_classification":
                problems.append(
                    f"config.json: problem_type is {config.get('problem_type')!r}, expected 'multi_label_classification'"
                )
            if not config.get("id2label"):
                problems.append("config.json: no id2label")
        if "model.safetensors" not in members and not any(
            n.startswith("model-") and n.endswith(".safetensors") for n in members
        ):
            problems.append("no safetensors weights (model.safetensors); the endpoint loads no other format")
        if not any(n in members for n in TOKENIZER_FILES) or "tokenizer_config.json" not in members:
            problems.append("no tokenizer (tokenizer_config.json and tokenizer.json or vocabulary files)")
        if CLASSIFIER_CONFIG not in members:
            problems.append(f"no {CLASSIFIER_CONFIG} (thresholds and text columns written by train.py)")
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

    parser = argparse.ArgumentParser(description="Pack or check a SageMaker model.tar.gz")
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="pack a model directory written by train.py")
    pack.add_argument("model_dir")
    pack.add_argument("archive")
    check = sub.add_parser("check", help="say why an archive would not deploy")
    check.add_argument("archive")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.command == "pack":
        pack_model(args.model_dir, args.archive)
        return 0
    problems = check_model_archive(args.archive)
    for problem in problems:
        logger.error("%s", problem)
    if not problems:
        logger.info("%s is deployable", args.archive)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
