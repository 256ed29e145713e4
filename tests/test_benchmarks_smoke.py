"""Each benchmark runs end to end at a tiny size, so it keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, clean_env


def test_handler_throughput_smoke(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "handler_throughput.py"),
            "--repeats",
            "1",
            "--max-seq-length",
            "32",
            "--json",
            str(out),
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["records"] for r in rows] == [1, 8, 32]
    assert all(r["ratio"] > 0 and r["handler_records_per_s"] > 0 for r in rows)
