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
