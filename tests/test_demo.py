"""scripts/demo.py end to end with the tiny model: its whole output fits one screen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, clean_env

MAX_LINES = 50  # one screen


@pytest.mark.slow
def test_the_demo_output_fits_one_screen_and_uses_display_names(tiny_model: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", f"--model={tiny_model}", "--epochs=1", f"--out={tmp_path}"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    lines = output.splitlines()
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines:\n{output}"
    assert max(map(len, lines)) <= 400, "no line as long as a paragraph"
    for noise in ("Do not forget to share", "have been ignored", "Downloading and preparing", "99999"):
        assert noise not in output, noise
    assert "TF-IDF + logistic regression" in output and f"fine-tuned {tiny_model.name}" in output
    assert output.count("    true:") == 3 and "role::" in output
    names = json.loads((ROOT / "data" / "labels.json").read_text())
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert list(config["id2label"].values()) == list(names.values())
    assert "| works-with::text |" in (tmp_path / "data" / "label_report.md").read_text()
