"""The label sets of benchmarks/debtags.py: every debian-tags row's package tags, checked
against the ten labels the rows already carry, and sets that train.py reads as they are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multilabel.core.threshold_strategies import DEFAULT_THRESHOLD_STRATEGY, THRESHOLD_STRATEGIES
from multilabel.data.schema import validate_files
from tests.helpers import benchmark_module


@pytest.fixture(scope="module")
def debtags():
    return benchmark_module("debtags")


def test_every_row_has_its_packages_tags_and_they_agree_with_its_ten_labels(debtags) -> None:
    ten = json.loads((debtags.DEBIAN_TAGS / "labels.json").read_text())
    tags = debtags.row_tags()
    for split in debtags.SPLITS:
        rows = debtags.read_split(split)
        assert len(tags[split]) == len(rows), split
        for number, (row, row_tags) in enumerate(zip(rows, tags[split], strict=True), start=1):
            labelled = {ten[column] for column in ten if row[column] == "1"}
            assert set(row_tags) & set(ten.values()) == labelled, f"{split} row {number}"


def test_the_sets_are_disjoint_ten_tags_each_and_many_holds_over_a_hundred(debtags) -> None:
    sets = debtags.label_sets()
    others = [tag for name, tags in sets.items() if name not in ("original", "many") for tag in tags]
    assert len(sets) - 2 >= 5 and all(len(sets[n]) == 10 for n in sets if n != "many")
    assert len(others) == len(set(others)), "the sets share a tag"
    assert not set(others) & set(sets["original"]), "a set holds a tag the defaults were tuned on"
    assert len(sets["many"]) >= 100
    known = {tag for rows in debtags.row_tags().values() for row in rows for tag in row}
    assert set(others) <= known, "a set names a tag no row carries"


def test_a_written_set_is_train_pys_input(debtags, tmp_path: Path) -> None:
    out = debtags.write_label_set("system", tmp_path / "system")
    files = {split: out / f"{split}.csv" for split in debtags.SPLITS}
    schema = validate_files(files)
    names = json.loads((out / "labels.json").read_text())
    assert schema.label_format == "indicator" and list(names.values()) == debtags.label_sets()["system"]


@pytest.mark.slow
def test_label_sets_benchmark_scores_four_methods_and_reuses_a_finished_run(tmp_path: Path) -> None:
    from tests.test_benchmarks_smoke import run_benchmark

    out, keep = tmp_path / "sets.json", tmp_path / "keep"
    args = ["--smoke", "--sets", "interface", "--seeds", "0", "--keep", str(keep), "--json", str(out)]
    run_benchmark("label_sets.py", *args)
    result = json.loads(out.read_text())
    summary = result["summary"]
    methods = ["TF-IDF", "encoder", "hybrid", "hybrid, per label"]
    assert {(r["method"], r["strategy"]) for r in summary} == {
        (m, s) for m in methods for s in THRESHOLD_STRATEGIES
    }, "every method under every threshold strategy"
    assert all(r["set"] == "interface" and r["seeds"] == 1 for r in summary)
    for r in summary:
        assert ("macro_vs_tfidf" in r) == (r["method"] != "TF-IDF")
        assert ("macro_vs_encoder" in r) == (r["method"].startswith("hybrid"))
    assert {(w["method"], w["strategy"]) for w in result["worst_sets"]} == {
        (m, s) for m in methods[1:] for s in THRESHOLD_STRATEGIES
    }
    intervals = result["intervals"]
    assert [(r["method"], r["against"]) for r in intervals] == [
        ("encoder", "TF-IDF"),
        ("hybrid", "TF-IDF"),
        ("hybrid, per label", "TF-IDF"),
        ("hybrid", "encoder"),
        ("hybrid, per label", "encoder"),
    ]
    default = {r["method"]: r for r in summary if r["strategy"] == DEFAULT_THRESHOLD_STRATEGY}
    for r in intervals:  # the difference is the summary's paired one, with its interval
        against = {"TF-IDF": "macro_vs_tfidf", "encoder": "macro_vs_encoder"}[r["against"]]
        assert r["macro_difference"] == pytest.approx(default[r["method"]][against], abs=1e-4)
        assert r["low"] <= r["high"] and r["seeds"] == 1
    again = run_benchmark("label_sets.py", *args)
    assert "reused: " in again.stdout
    assert json.loads(out.read_text())["summary"] == summary, "the same run scores the same"
    # --finished-only trains nothing: a run finished with other flags is named and left out.
    record = (keep / "runs" / "interface-seed0" / "benchmark_run.json").read_text()
    other = run_benchmark("label_sets.py", *args, "--finished-only", "--train-arg=--num_train_epochs=2")
    assert "left out: " in other.stdout and "reused: " not in other.stdout
    assert json.loads(out.read_text())["summary"] == []
    assert (keep / "runs" / "interface-seed0" / "benchmark_run.json").read_text() == record, "untouched"
    table = run_benchmark("label_sets.py", *args, "--finished-only")
    assert "reused: " not in table.stdout and json.loads(out.read_text())["summary"] == summary


@pytest.mark.slow
def test_many_labels_benchmark_measures_ten_and_a_hundred_and_four_labels(tmp_path: Path) -> None:
    from tests.test_benchmarks_smoke import run_benchmark

    out = tmp_path / "many.json"
    run_benchmark("many_labels.py", "--smoke", "--json", str(out))
    ten, many = json.loads(out.read_text())["rows"]
    assert ten["labels"] == 10 and many["labels"] >= 100
    # Every score is returned: a response with ten times the labels is several times larger.
    assert many["response_kb"] > 3 * ten["response_kb"]
    assert many["top5_response_kb"] < many["response_kb"]
    assert all(r["train_py_s"] >= r["training_s"] > 0 and r["report_kb"] > 0 for r in (ten, many))
