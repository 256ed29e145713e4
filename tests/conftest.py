from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import DATA, ROOT

sys.path.insert(0, str(ROOT / "scripts"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide RoBERTa with a tokenizer trained on the sample data."""
    from make_tiny_model import build_tiny_roberta

    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"), [DATA / "train.csv"])
