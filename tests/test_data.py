"""CSV files -> Datasets with float labels, the stratified validation split, and tokenisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from multilabel.data.dataset import LABELS, label_matrix, load_split, stratified_split, tokenize
from multilabel.data.schema import ColumnSpec, LabelSchema, rows_needed_for_split, validate_files
from tests.helpers import DATA, HEADER, read_csv, write_csv


def test_load_split_keeps_every_row_in_order_with_float_labels(tmp_path: Path) -> None:
    schema = validate_files({"train": DATA / "train.csv"})
    dataset = load_split(DATA / "train.csv", ColumnSpec(), schema, cache_dir=str(tmp_path))
    rows = read_csv(DATA / "train.csv")
    assert len(dataset) == len(rows) == 300
    assert dataset.features["labels"].feature.dtype == "float32"
    assert dataset[7]["casePart2"] == rows[7]["casePart2"]
    expected = np.array([[float(r[f"label{i}"]) for i in range(1, 11)] for r in rows])
    np.testing.assert_array_equal(label_matrix(dataset), expected)


def test_names_format_labels_are_encoded_by_the_validated_schema(tmp_path: Path) -> None:
    header = ["title", "body", "tag1", "tag2"]
    path = write_csv(tmp_path / "t.csv", [["a", "b", "perl", "c"], ["c", "", "", "java"]], header)
    spec = ColumnSpec(text_columns=("title", "body"), label_columns=("tag1", "tag2"))
    schema = validate_files({"train": path}, spec)
    assert schema == LabelSchema("names", ("tag1", "tag2"), ("c", "java", "perl"))
    dataset = load_split(path, spec, schema, cache_dir=str(tmp_path / "cache"))
    assert dataset.column_names == ["title", "body", LABELS]
    assert label_matrix(dataset).tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [["a", "b", 1, *[0] * 9]])
    schema = validate_files({"train": path})
    first = load_split(path, ColumnSpec(), schema, cache_dir=str(tmp_path / "cache"))
    write_csv(path, [["a", "b", 1, *[0] * 9], ["c", "d", 0, 1, *[0] * 8]])
    second = load_split(path, ColumnSpec(), schema, cache_dir=str(tmp_path / "cache"))
    assert (len(first), len(second)) == (1, 2), "the edited file was not read again"


def test_stratified_split_is_deterministic_and_keeps_rare_labels(tmp_path: Path) -> None:
    schema = validate_files({"train": DATA / "train.csv"})
    dataset = load_split(DATA / "train.csv", ColumnSpec(), schema, cache_dir=str(tmp_path))
    train_a, val_a = stratified_split(dataset, 0.2, seed=1)
    _, val_b = stratified_split(dataset, 0.2, seed=1)
    assert val_a["casePart1"] == val_b["casePart1"], "the same seed must give the same split"
    assert len(train_a) + len(val_a) == 300
    # Every label with at least 5 positives shows up in validation.
    total, held_out = label_matrix(dataset).sum(0), label_matrix(val_a).sum(0)
    assert np.all(held_out[total >= 5] >= 1)
    with pytest.raises(
        ValueError, match=r"validation_split_size: expected a fraction in \(0, 1\), found 1.5"
    ):
        stratified_split(dataset, 1.5, seed=1)


def test_the_minimum_rows_split_into_two_non_empty_sides() -> None:
    """At validate_files' minimum, iterstrat leaves neither side empty (1 row a side often does)."""
    from datasets import Dataset

    rng = np.random.default_rng(0)
    for size in (0.1, 0.2, 0.5):
        n = rows_needed_for_split(size)
        for seed in range(20):
            labels = (rng.random((n, 2 + seed % 8)) < 0.3).astype(np.float32)
            train_part, validation = stratified_split(
                Dataset.from_dict({LABELS: labels.tolist()}), size, seed
            )
            assert len(train_part) and len(validation), (size, n, seed)


def test_tokenisation_adds_lengths_and_cuts_to_the_window(tiny_model: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    schema = validate_files({"train": DATA / "validation.csv"})
    dataset = load_split(DATA / "validation.csv", ColumnSpec(), schema, cache_dir=str(tmp_path))
    tokenised = tokenize(dataset, tokenizer, ("casePart1", "casePart2"), 48, "longest_first")
    assert set(tokenised.column_names) == {"input_ids", "attention_mask", "length", "labels"}
    assert max(len(ids) for ids in tokenised["input_ids"]) == 48
    assert tokenised["length"] == [len(ids) for ids in tokenised["input_ids"]]


def test_encoding_reaches_loading(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes((",".join(HEADER) + "\ncaf\xe9 cr\xe8me,pair" + ",1" * 10 + "\n").encode("latin-1"))
    spec = ColumnSpec(encoding="latin-1")
    dataset = load_split(path, spec, validate_files({"train": path}, spec), cache_dir=str(tmp_path / "c"))
    assert dataset["casePart1"] == ["café crème"]


def test_the_length_report_states_lengths_and_what_each_window_size_drops(tiny_model: Path) -> None:
    from datasets import Dataset

    from multilabel.data.dataset import length_report
    from multilabel.text.windows import WindowSettings

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = read_csv(DATA / "train.csv")
    dataset = Dataset.from_dict({c: [r[c] for r in rows] for c in ("casePart1", "casePart2")})
    report = length_report(dataset, tokenizer, ("casePart1", "casePart2"), 64, WindowSettings(), 128)
    a = np.array([len(tokenizer(r["casePart1"], add_special_tokens=False)["input_ids"]) for r in rows])
    b = np.array([len(tokenizer(r["casePart2"], add_special_tokens=False)["input_ids"]) for r in rows])
    assert f"casePart2 median {np.median(b):.0f}," in report.lengths
    assert f"longest {b.max()}" in report.lengths and "300 training rows" in report.lengths
    assert [line.split(":")[0] for line in report.sizes] == [
        "max_seq_length 64 (this run)",
        "max_seq_length 128",
    ], "sizes up to the model's limit, this run's marked"
    room = 64 - tokenizer.num_special_tokens_to_add(pair=True)
    longer, dropped = np.mean(a + b > room), np.maximum(a + b - room, 0).sum() / (a + b).sum()
    assert report.this_run.startswith(
        f"max_seq_length 64 (this run): {longer:.1%} of records are longer; truncation drops {dropped:.1%}"
    )
    assert ", --max_windows 8 " in report.this_run, "without windows, what 8 would drop"
    windows_drop = float(report.this_run.rsplit(" ", 1)[1].rstrip("%"))
    assert windows_drop < 100 * dropped, "8 windows drop less than truncation to one"
