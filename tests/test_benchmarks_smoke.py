"""Each benchmark runs end to end at a tiny size, so it keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from multilabel.core.threshold_strategies import DEFAULT_THRESHOLD_STRATEGY
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


def test_long_records_smoke(tmp_path: Path) -> None:
    out = tmp_path / "long_records.json"
    run_benchmark("long_records.py", "--smoke", "--epochs", "1", "--max-windows", "3", "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["run"] for r in rows] == ["truncate 64", "truncate 32", "windows 32 (max)"]
    assert all(0 <= r["micro_f1"] <= 1 and r["serve_seconds"] > 0 for r in rows)
    assert "recovered_micro" in rows[2] and rows[1]["longer_than_window"].endswith("%")


def test_generalisation_pairs_folds_with_seeds_and_reuses_finished_runs(tmp_path: Path) -> None:
    out, keep = tmp_path / "generalisation.json", tmp_path / "keep"
    args = ["--smoke", "--epochs", "1", "--folds", "2", "--seeds", "3", "4", "--pairing", "diagonal"]
    first = run_benchmark("generalisation.py", *args, "--keep", str(keep), "--json", str(out))
    assert "reused" not in first.stdout
    payload = json.loads(out.read_text())
    encoder_runs = {(r["fold"], r["seed"]) for r in payload["results"] if r["method"] != "TF-IDF"}
    assert encoder_runs == {(0, 3), (1, 4)}
    # Every (fold, seed) run also scores each threshold strategy, the hybrid and TF-IDF.
    methods = {r["method"]: r for r in payload["summary"]}
    hybrid = f"hybrid, {DEFAULT_THRESHOLD_STRATEGY}"  # the hybrid under train.py's default thresholds
    assert {"TF-IDF", "encoder, per_label", "encoder, prevalence", "encoder, cv", hybrid} <= methods.keys()
    assert methods["encoder, per_label"]["runs"] == 2 and " ± " in methods[hybrid]["micro_f1"]
    # A second call trains nothing: both runs finished with the same model, data and flags.
    second = run_benchmark("generalisation.py", *args, "--keep", str(keep), "--json", str(out))
    assert second.stdout.count("reused: ") == 2
    assert json.loads(out.read_text())["results"] == payload["results"]
    # Different flags for the same run folder train again; the earlier attempt's log is kept.
    log = keep / "runs" / "defaults-fold0-seed3" / "train.log"
    first_log = log.read_text()
    third = run_benchmark(
        "generalisation.py",
        *args,
        "--train-arg=--learning_rate=1e-4",
        "--keep",
        str(keep),
        "--json",
        str(out),
    )
    assert "reused" not in third.stdout
    assert log.with_name("train.1.log").read_text() == first_log and log.read_text() != first_log
    # One fold alone: its run from the third call is reused; fold 0 is scored by neither model.
    fourth = run_benchmark(
        "generalisation.py",
        *args,
        "--train-arg=--learning_rate=1e-4",
        "--only-folds",
        "1",
        "--keep",
        str(keep),
        "--json",
        str(out),
    )
    assert fourth.stdout.count("reused: ") == 1
    assert {(r["fold"], r["seed"]) for r in json.loads(out.read_text())["results"]} == {(1, 0), (1, 4)}


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


def test_tfidf_scale_smoke(tmp_path: Path) -> None:
    out = tmp_path / "tfidf_scale.json"
    run_benchmark("tfidf_scale.py", "--rows", "400", "--sets", "original", "--json", str(out))
    (plain,) = json.loads(out.read_text())["results"]
    assert plain["labels"] == 10 and plain["rows"] == plain["fitted_on"] == 400
    assert plain["terms"] > 0 and plain["fit_s"] > 0 and plain["npz_mb"] > 0 and plain["peak_rss_mb"] > 0
    # Through train.py's step, which fits on every row under the cap: the same vocabulary.
    run_benchmark("tfidf_scale.py", "--rows", "400", "--sets", "original", "--train-step", "--json", str(out))
    (step,) = json.loads(out.read_text())["results"]
    assert step["terms"] == plain["terms"] and step["fitted_on"] == 400


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


def test_thresholds_smoke(tmp_path: Path) -> None:
    """On synthetic predictions and labels: every strategy's row, per-label's gain over itself 0."""
    import numpy as np

    rng = np.random.default_rng(0)
    for split, rows in (("validation", 60), ("test", 80)):
        labels = (rng.random((rows, 3)) < 0.3).astype(int)
        probs = np.clip(0.25 + 0.4 * labels + rng.normal(0, 0.15, labels.shape), 0, 1)
        with open(tmp_path / f"{split}.csv", "w", encoding="utf-8") as fh:
            fh.write("casePart1,casePart2,label1,label2,label3\n")
            fh.writelines(f"t{i},u{i},{a},{b},{c}\n" for i, (a, b, c) in enumerate(labels))
        with open(tmp_path / f"{split}_predictions.csv", "w", encoding="utf-8") as fh:
            fh.write("row,predicted_labels,prob_label1,prob_label2,prob_label3\n")
            fh.writelines(f"{i},,{p[0]!r},{p[1]!r},{p[2]!r}\n" for i, p in enumerate(probs, start=1))
    out = tmp_path / "thresholds.json"
    result = run_benchmark(
        "thresholds.py",
        *("--predictions", str(tmp_path), "--validation", str(tmp_path / "validation.csv")),
        *("--test", str(tmp_path / "test.csv"), "--splits", "5", "--json", str(out)),
        timeout=120,
    )
    (model,) = json.loads(out.read_text())["models"]
    rows = {r["strategy"]: r for r in model["rows"]}
    assert set(rows) == {"per_label", "global", "fixed", "shrunk", "prevalence", "cv"}
    assert rows["per_label"]["micro_gain_mean"] == 0 and rows["per_label"]["macro_gain_mean"] == 0
    assert all(0 < r["micro_f1_mean"] <= 1 and 0 < r["macro_f1_mean"] <= 1 for r in rows.values())
    assert sum(model["cv_chose"].values()) == 5
    assert "| shrunk |" in result.stdout
