"""Each benchmark runs end to end at a tiny size, so it keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, clean_env

pytestmark = pytest.mark.slow  # each starts a benchmark process


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


def run_benchmark(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_quality_smoke(tmp_path: Path) -> None:
    out = tmp_path / "quality.json"
    run_benchmark("quality.py", "--smoke", "--epochs", "1", "--json", str(out))
    baseline, ours = json.loads(out.read_text())["rows"]
    assert baseline["system"].startswith("TF-IDF") and 0 <= baseline["micro_f1"] <= 1
    assert 0 <= ours["micro_f1"] <= 1 and ours["train_seconds"] > 0


def test_training_speed_smoke(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    run_benchmark(
        "training_speed.py",
        "--model",
        str(tiny_model),
        "--rows",
        "48",
        "--max-seq-length",
        "64",
        "--json",
        str(out),
    )
    results = json.loads(out.read_text())["results"]
    static, dynamic, grouped = results
    assert static["speed_vs_static"] == 1.0
    # Static padding processes the most padding; length grouping the least.
    assert static["padding_share"] >= dynamic["padding_share"] >= grouped["padding_share"]


def test_data_scale_smoke(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run_benchmark("data_scale.py", "--rows", "3000", "--json", str(out))
    steps = json.loads(out.read_text())["steps"]
    assert [s["step"] for s in steps] == ["validate", "load (Arrow)", "tokenise"]
    assert all(s["rows_per_second"] > 0 and s["peak_rss_mb"] > 0 for s in steps)


def test_gpu_readiness_smoke(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    run_benchmark(
        "gpu_readiness.py",
        "--tiny",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--json",
        str(out),
    )
    result = json.loads(out.read_text())["result"]
    assert result["tokens_per_second"] > 0 and result["params_m"] > 0
