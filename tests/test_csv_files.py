"""The CSV reader shared by validation and loading: files of a split, header, records, errors."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from multilabel.core.errors import DataValidationError, InputError, UsageError
from multilabel.data.csv_files import iter_records, list_csv_files, read_header


@pytest.fixture
def default_field_limit() -> Iterator[None]:
    """The csv module's own 128 KiB field cap, as in a process that set nothing."""
    saved = csv.field_size_limit()
    csv.field_size_limit(128 * 1024)
    yield
    csv.field_size_limit(saved)


def test_a_channel_lists_its_csv_files_sorted(tmp_path: Path) -> None:
    for name in ("b.csv", "a.CSV", "notes.txt"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "sub.csv").mkdir()  # a folder is not a file, whatever its name
    assert list_csv_files(tmp_path) == [tmp_path / "a.CSV", tmp_path / "b.csv"]
    assert list_csv_files(tmp_path / "b.csv") == [tmp_path / "b.csv"]


def test_a_missing_path_or_an_empty_channel_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as missing:
        list_csv_files(tmp_path / "nope.csv")
    assert missing.value.problems == [f"{tmp_path / 'nope.csv'}: no such file or directory"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match=r"directory holds no \.csv file"):
        list_csv_files(tmp_path / "empty")


def test_input_errors_list_every_problem_and_are_usage_errors() -> None:
    error = DataValidationError(["first", "second"])
    assert isinstance(error, InputError) and isinstance(error, UsageError), "train.py exits 2 on these"
    assert str(error) == "2 problem(s) in the input data:\n  - first\n  - second"


def test_records_come_in_the_asked_column_order_with_row_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('text,label1,pair\n"two\nlines",1,p\n\nshort,0\nx,0,y\n', encoding="utf-8")
    assert read_header(path) == ["text", "label1", "pair"]
    assert list(iter_records(path, ["pair", "text"])) == [
        (1, 3, ["p", "two\nlines"]),  # a quoted newline: row 1 ends on line 3
        (3, 5, None),  # a blank line is skipped (row 2); a short row yields None
        (4, 6, ["y", "x"]),
    ]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert read_header(empty) == []


def test_a_byte_order_mark_is_dropped_and_another_encoding_is_read(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_text("text,label1\na,1\n", encoding="utf-8-sig")
    assert read_header(bom) == ["text", "label1"], "the BOM must not stick to the first column name"
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("text,label1\ncafé,1\n".encode("latin-1"))
    assert [cells for _, _, cells in iter_records(latin1, ["text"], "latin-1")] == [["café"]]


def test_undecodable_bytes_name_the_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label1\nplain,0\ncafé,1\n".encode("latin-1"))
    with pytest.raises(DataValidationError) as info:
        list(iter_records(path, ["text"]))
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}, line 3: byte 0xe9 (byte 4 of the line) is not valid utf-8;")
    assert "--encoding cp1252" in problem, "the fix is named"


def test_fields_longer_than_the_csv_modules_default_cap_are_read(
    tmp_path: Path, default_field_limit: None
) -> None:
    """No import-time setting is needed: the reader lifts the cap itself."""
    long_text = "word " * 60_000  # 300 KB, over the default 128 KiB
    path = tmp_path / "long.csv"
    path.write_text(f"text,label1\n{long_text},1\n", encoding="utf-8")
    assert [cells for _, _, cells in iter_records(path, ["text"])] == [[long_text]]
