"""CSV validation: both label formats and every error, with their messages pinned."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import pytest

from multilabel.core.errors import ArgumentError, DataValidationError
from multilabel.data.schema import (
    ColumnSpec,
    LabelSchema,
    detect_label_format,
    rows_needed_for_split,
    validate_files,
)
from tests.helpers import HEADER, LABELS, write_csv


def indicator_row(text: str, *hot: int, pair: str = "pair text") -> list[object]:
    return [text, pair, *(1 if i in hot else 0 for i in range(1, 11))]


@pytest.fixture
def good_train(tmp_path: Path) -> Path:
    rows = [indicator_row(f"text {i}", 1 + i % 10) for i in range(20)]
    return write_csv(tmp_path / "train.csv", rows)


def problems_of(files: dict, **kwargs) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        validate_files(files, **kwargs)
    return info.value.problems


def test_indicator_format_detected_and_label_names_are_columns(good_train: Path) -> None:
    schema = validate_files({"train": good_train})
    assert schema.label_format == "indicator"
    assert schema.label_names == tuple(LABELS)
    assert schema.encode(["1", "0", "true", "FALSE", " 1 ", "0", "0", "0", "0", "0"]) == [
        1.0,
        0.0,
        1.0,
        0.0,
        1.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ]


def test_names_format_takes_the_union_of_slots(tmp_path: Path) -> None:
    header = ["casePart1", "casePart2", "label1", "label2", "label3"]
    rows = [["a", "b", "perl", "c", ""], ["c", "d", "java", "", ""], ["e", "f", "", "", "perl"]]
    schema = validate_files({"train": write_csv(tmp_path / "t.csv", rows, header)})
    assert schema.label_format == "names"
    assert schema.label_names == ("c", "java", "perl")
    assert schema.encode(["perl", "c", ""]) == [1.0, 0.0, 1.0]
    assert schema.encode(["", "", "perl"]) == [0.0, 0.0, 1.0]


def test_auto_detection_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="multilabel.data.schema"):
        assert detect_label_format({"0", "1", "True"}, "auto") == "indicator"
        assert detect_label_format({"0", "1", "2", "yes"}, "auto") == "indicator"
        assert detect_label_format({"", "perl", "c"}, "auto") == "names"
    assert "label format: indicator" in caplog.text
    assert "label format: names" in caplog.text


def test_explicit_format_is_kept() -> None:
    assert detect_label_format({"0", "1"}, "names") == "names"
    with pytest.raises(ValueError, match=r"label_format: expected one of .*found 'other'"):
        detect_label_format(set(), "other")


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "train.csv", [["a", 1]], header=["casePart1", "label1"])
    (problem,) = problems_of({"train": path})
    assert re.search(r"train\.csv: missing column\(s\) \['casePart2'\]; the header has", problem)
    assert "--text_column_names" in problem


def test_missing_label_columns_given_by_name(tmp_path: Path, good_train: Path) -> None:
    spec = ColumnSpec(label_columns=("label1", "label99"))
    (problem,) = problems_of({"train": good_train}, spec=spec)
    assert "missing column(s) ['label99']" in problem


def test_duplicate_columns(tmp_path: Path) -> None:
    header = ["casePart1", "casePart2", "label1", "label1"]
    path = write_csv(tmp_path / "train.csv", [["a", "b", 0, 1]], header)
    (problem,) = problems_of({"train": path})
    assert problem.endswith("duplicate column name(s) ['label1'] in the header")


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = write_csv(tmp_path / "header.csv", [])
    assert problems_of({"train": empty}) == [f"{empty}: empty file, expected a header row naming the columns"]
    assert problems_of({"train": header_only}) == [f"{header_only}: no data rows, only a header"]


def test_bad_indicator_values_name_column_rows_and_values(tmp_path: Path) -> None:
    rows = [indicator_row(f"t{i}", 1) for i in range(5)]
    rows[1][4] = "2"  # label3
    rows[3][4] = "maybe"
    path = write_csv(tmp_path / "train.csv", rows)
    (problem,) = problems_of({"train": path})  # auto: still indicator, strays are errors
    assert problem == (
        f"{path}: column 'label3', rows 2, 4 (2 in all): expected 0/1, true/false or yes/no, found ['2', 'maybe']"
    )


def test_long_row_lists_are_cut(tmp_path: Path) -> None:
    rows = [indicator_row("", 1, pair="") for _ in range(15)]
    path = write_csv(tmp_path / "train.csv", rows)
    (problem,) = problems_of({"train": path})
    assert "rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 5 more (15 in all)" in problem


def test_both_texts_empty_is_an_error_one_empty_is_fine(tmp_path: Path) -> None:
    rows = [
        indicator_row("only the first part", 1, pair=""),
        indicator_row("", 2, pair="only the second part"),
        indicator_row("  ", 3, pair=""),
    ]
    path = write_csv(tmp_path / "train.csv", rows)
    (problem,) = problems_of({"train": path})
    assert problem == (
        f"{path}: row 3 (1 in all): all text columns ['casePart1', 'casePart2'] are empty; "
        "a row needs text in at least one of them"
    )


def test_ragged_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        ",".join(["casePart1", "casePart2", *LABELS]) + "\n" + "a,b,1,0\n" + "c,d" + ",0" * 10 + "\n"
    )
    (problem,) = problems_of({"train": path})
    assert problem.startswith(
        f"{path}: rows 1 (line 2) have a different number of fields than the header's 12"
    )


def test_unknown_label_name_in_validation_and_test(tmp_path: Path) -> None:
    header = ["casePart1", "casePart2", "label1", "label2"]
    train = write_csv(tmp_path / "train.csv", [["a", "b", "perl", ""], ["c", "d", "java", "c"]], header)
    val = write_csv(tmp_path / "val.csv", [["a", "b", "perl", "rust"]], header)
    test = write_csv(tmp_path / "test.csv", [["a", "b", "go", ""], ["x", "y", "", "go"]], header)
    problems = problems_of({"train": train, "validation": val, "test": test})
    assert problems == [
        f"{val}: column 'label2', row 1 (1 in all): label name(s) never seen in the training file, found ['rust']",
        f"{test}: column 'label1', row 1 (1 in all): label name(s) never seen in the training file, found ['go']",
        f"{test}: column 'label2', row 2 (1 in all): label name(s) never seen in the training file, found ['go']",
    ]


def test_label_without_positive_example_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_csv(tmp_path / "train.csv", [indicator_row("a", 1), indicator_row("b", 2)])
    with caplog.at_level(logging.WARNING):
        validate_files({"train": path})
    assert "label 'label3' has no positive example in the training data" in caplog.text


def test_all_problems_of_all_files_are_raised_together(tmp_path: Path, good_train: Path) -> None:
    val = write_csv(tmp_path / "val.csv", [["a", 1]], header=["casePart1", "label1"])
    missing = tmp_path / "nope.csv"
    problems = problems_of({"train": good_train, "validation": val, "test": missing})
    assert len(problems) == 2
    assert problems[0] == f"{missing}: no such file or directory"
    assert "missing column(s)" in problems[1]


def test_channel_directory_reads_every_csv(tmp_path: Path) -> None:
    write_csv(tmp_path / "chan" / "a.csv", [indicator_row("a", 1)])
    write_csv(tmp_path / "chan" / "b.csv", [indicator_row("b", 2), indicator_row("", 3, pair="")])
    (problem,) = problems_of({"train": tmp_path / "chan"})
    assert problem.startswith(f"{tmp_path / 'chan' / 'b.csv'}: row 2 (1 in all)")
    (tmp_path / "empty_chan").mkdir()
    assert problems_of({"train": tmp_path / "empty_chan"}) == [
        f"{tmp_path / 'empty_chan'}: directory holds no .csv file"
    ]


def test_no_training_file() -> None:
    assert problems_of({"train": None}) == ["no training file: pass --train_file or set SM_CHANNEL_TRAIN"]


def test_custom_column_names(tmp_path: Path) -> None:
    header = ["title", "body", "is_a", "is_b"]
    path = write_csv(tmp_path / "t.csv", [["x", "y", 1, 0], ["z", "", 0, 1]], header)
    spec = ColumnSpec(text_columns=("title", "body"), label_columns=("is_a", "is_b"))
    assert validate_files({"train": path}, spec=spec) == LabelSchema(
        "indicator", ("is_a", "is_b"), ("is_a", "is_b")
    )


def test_column_spec_rejects_three_text_columns() -> None:
    with pytest.raises(ArgumentError, match=r"--text_column_names: expected one or two column names"):
        ColumnSpec(text_columns=("a", "b", "c"))


def test_multiline_quoted_texts_are_one_row(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv", [indicator_row("line one\nline two, with comma", 1, pair='say "hi"\n')]
    )
    assert validate_files({"train": path}).label_format == "indicator"


def write_delimited(
    path: Path, rows: list[list[object]], delimiter: str = ",", encoding: str = "utf-8"
) -> Path:
    """A CSV with another delimiter or encoding than write_csv's."""
    with open(path, "w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def test_undecodable_bytes_name_the_file_line_and_byte_and_the_fix(tmp_path: Path) -> None:
    rows = [indicator_row("plain", 1), indicator_row("café crème", 2)]
    path = write_delimited(tmp_path / "latin1.csv", rows, encoding="latin-1")
    assert problems_of({"train": path}) == [
        f"{path}, line 3: byte 0xe9 (byte 4 of the line) is not valid utf-8; save the file as UTF-8, "
        "or pass its encoding with --encoding (for example --encoding cp1252 for Windows Western "
        "European text)"
    ]
    assert validate_files({"train": path}, spec=ColumnSpec(encoding="latin-1")).label_names == tuple(LABELS)
    bom = write_delimited(tmp_path / "bom.csv", rows, encoding="utf-8-sig")
    assert validate_files({"train": bom}).label_format == "indicator"  # utf-8 accepts a BOM
    with pytest.raises(ArgumentError, match=r"--encoding: unknown text encoding 'klingon'"):
        ColumnSpec(encoding="klingon")


@pytest.mark.parametrize(("delimiter", "shown"), [(";", "';'"), ("\t", "'\\t'")])
def test_another_delimiter_is_named(tmp_path: Path, delimiter: str, shown: str) -> None:
    path = write_delimited(tmp_path / "t.csv", [indicator_row("a", 1)], delimiter=delimiter)
    (problem,) = problems_of({"train": path})
    assert problem.startswith(f"{path}: the header is one column, 'casePart1")
    assert problem.endswith(
        f"that looks delimited by {shown}; a comma-separated CSV is expected: save the file with "
        "commas as delimiters"
    )


def test_label_names_differing_in_case_or_spacing_are_refused(tmp_path: Path) -> None:
    header = ["casePart1", "casePart2", "label1", "label2"]
    rows = [["a", "b", "perl", ""], ["c", "d", "Perl", "java"], ["e", "f", "PERL", " perl"]]
    rows += [["g", "h", "java  script", ""], ["i", "j", "Java Script", ""]]
    path = write_csv(tmp_path / "t.csv", rows, header)
    assert problems_of({"train": path}) == [
        f"{path}: label names ['Java Script', 'java  script'] differ only in case or spacing and "
        "would become 2 separate labels: 'Java Script' row 5 (1 in all); 'java  script' row 4 "
        "(1 in all); write each label the same way in every row",
        f"{path}: label names ['PERL', 'Perl', 'perl'] differ only in case or spacing and would "
        "become 3 separate labels: 'PERL' row 3 (1 in all); 'Perl' row 2 (1 in all); 'perl' rows "
        "1, 3 (2 in all); write each label the same way in every row",
    ]
    train = write_csv(tmp_path / "ok.csv", [["a", "b", " perl", ""], ["c", "d", "java", "perl "]], header)
    val = write_csv(tmp_path / "val.csv", [["a", "b", "Java", ""]], header)
    assert problems_of({"train": train, "validation": val}) == [
        f"{val}: column 'label1', row 1 (1 in all): label name(s) never seen in the training file, "
        "found ['Java'] (spelt differently from the training file: 'Java' for 'java')"
    ]


def test_files_of_a_directory_with_other_label_columns_are_named(tmp_path: Path) -> None:
    first = write_csv(tmp_path / "chan" / "a.csv", [indicator_row("a", 1), indicator_row("b", 2)])
    later = write_csv(tmp_path / "chan" / "b.csv", [[*indicator_row("c", 3), 1]], [*HEADER, "label11"])
    assert problems_of({"train": tmp_path / "chan"}) == [
        f"{later}: label column(s) ['label11'] are not in {first}, the first training file, whose "
        f"label columns are {LABELS}; give every file the same label columns, or list the ones to "
        "use with --label_column_names"
    ]
    spec = ColumnSpec(label_columns=tuple(LABELS))  # listed by name: label11 is just another column
    assert validate_files({"train": tmp_path / "chan"}, spec=spec).label_names == tuple(LABELS)


def test_names_format_on_indicator_data_is_refused(good_train: Path, tmp_path: Path) -> None:
    assert problems_of({"train": good_train}, label_format="names") == [
        f"{good_train}: --label_format names, but every label cell is 0/1 or true/false "
        "(found ['0', '1']): they look like indicators; use --label_format indicator (or auto)"
    ]
    header = ["casePart1", "casePart2", "label1", "label2"]
    named_0_1 = write_csv(tmp_path / "n.csv", [["a", "b", "0", ""], ["c", "d", "1", "0"]], header)
    assert validate_files({"train": named_0_1}, label_format="names").label_names == ("0", "1")


def test_column_lists_with_duplicates_or_a_column_in_both(tmp_path: Path, good_train: Path) -> None:
    with pytest.raises(ArgumentError) as info:
        ColumnSpec(("title", "title"), ("label1", "label1", "label2", "title"))
    assert info.value.problems == [
        "--text_column_names: column 'title' is listed more than once; list it once",
        "--label_column_names: column 'label1' is listed more than once; list it once",
        "column 'title' is in both --text_column_names and --label_column_names; a column is "
        "either text or a label",
    ]
    (problem,) = problems_of({"train": good_train}, spec=ColumnSpec(text_columns=("label3", "casePart2")))
    assert problem == (
        f"{good_train}: column 'label3' is both a text column (--text_column_names) and a label "
        "column (named label*); list the label columns with --label_column_names"
    )


def test_too_few_rows_for_the_validation_split(tmp_path: Path) -> None:
    assert [rows_needed_for_split(s) for s in (0.1, 0.2, 0.5, 0.9)] == [11, 6, 4, 21]
    one = write_csv(tmp_path / "one.csv", [indicator_row("a", 1)])
    assert problems_of({"train": one}, validation_split_size=0.1) == [
        f"{one}: 1 training row(s) are too few to hold out --validation_split_size 0.1 for "
        "validation: the stratified split needs at least 11 rows; add rows or pass --validation_file"
    ]
    other = write_csv(tmp_path / "other.csv", [indicator_row("b", 1)])
    assert validate_files({"train": one, "validation": other}, validation_split_size=0.1)
    eleven = write_csv(tmp_path / "eleven.csv", [indicator_row(f"t{i}", 1 + i % 10) for i in range(11)])
    assert validate_files({"train": eleven}, validation_split_size=0.1)


def test_display_names_name_the_indicator_columns(good_train: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = ColumnSpec(display_names=(("label1", "role::program"), ("label3", "devel::lib")))
    schema = validate_files({"train": good_train}, spec)
    assert schema.label_columns == tuple(LABELS)
    assert schema.label_names == ("role::program", "label2", "devel::lib", *LABELS[3:])


def test_display_names_refused_for_unknown_columns_clashes_and_names_format(
    tmp_path: Path, good_train: Path
) -> None:
    spec = ColumnSpec(display_names=(("label11", "x"), ("label1", "label2")))
    assert problems_of({"train": good_train}, spec=spec) == [
        f"--label_display_names: column(s) ['label11'] are not label columns of {good_train}, whose "
        f"label columns are {LABELS}",
        "--label_display_names: the name 'label2' is also the name of another label column; "
        "each label needs its own name",
    ]
    header = ["casePart1", "casePart2", "label1", "label2"]
    names = write_csv(tmp_path / "names.csv", [["a", "b", "perl", ""], ["c", "d", "java", "c"]], header)
    (problem,) = problems_of({"train": names}, spec=ColumnSpec(display_names=(("label1", "x"),)))
    assert "--label_display_names renames indicator (0/1) label columns" in problem


TICKET_HEADER = ["ticket_id", "subject", "body", "tags"]
TICKETS = [
    ["T-1", "", "refund me", "billing|refund"],
    ["T-2", "login", "cannot log in", "login|bug"],
    ["T-3", "", "app crashes", "bug|mobile-app"],
    ["T-4", "invoice", "wrong amount", "billing"],
    ["T-5", "", "password", "login"],
]


def ticket_spec(**overrides: object) -> ColumnSpec:
    flags = {"text_column_names": "subject,body", "label_column_names": "tags", "id_column": "ticket_id"}
    return ColumnSpec.from_flags(**{**flags, **overrides})


def test_a_delimited_tags_column_is_read_as_several_labels(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "tickets.csv", TICKETS, TICKET_HEADER)
    schema = validate_files({"train": train}, ticket_spec(label_separator="|"))
    assert schema.label_format == "names"
    assert schema.label_names == ("billing", "bug", "login", "mobile-app", "refund")
    assert schema.encode(["billing|refund"]) == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert schema.encode([" bug | login |"]) == [0.0, 1.0, 1.0, 0.0, 0.0], "blanks around and empty parts"


def test_a_delimited_tags_column_without_the_flag_is_refused_with_the_flag_that_reads_it(
    tmp_path: Path,
) -> None:
    """It once became one label per combination (18 labels for 8 tags), with no warning."""
    train = write_csv(tmp_path / "tickets.csv", TICKETS, TICKET_HEADER)
    problems = problems_of({"train": train}, spec=ticket_spec())
    assert len(problems) == 1
    assert "hold several labels joined by '|'; pass --label_separator '|'" in problems[0]
    semi = [[*row[:3], row[3].replace("|", ";")] for row in TICKETS]
    problems = problems_of(
        {"train": write_csv(tmp_path / "semi.csv", semi, TICKET_HEADER)}, spec=ticket_spec()
    )
    assert "pass --label_separator ';'" in problems[0]
    # Told it is names, one ';' label per cell is the user's choice; '|' never is (it joins predictions).
    names = validate_files(
        {"train": write_csv(tmp_path / "semi.csv", semi, TICKET_HEADER)}, ticket_spec(), label_format="names"
    )
    assert "billing;refund" in names.label_names
    problems = problems_of({"train": train}, spec=ticket_spec(), label_format="names")
    assert "contain '|', which joins the predicted labels" in problems[0]


def test_a_json_list_cell_holds_several_labels(tmp_path: Path) -> None:
    rows = [[*row[:3], '["' + row[3].replace("|", '", "') + '"]'] for row in TICKETS]
    rows[4][3] = "login"  # a plain name beside the lists
    train = write_csv(tmp_path / "json.csv", rows, TICKET_HEADER)
    schema = validate_files({"train": train}, ticket_spec())
    assert schema.label_names == ("billing", "bug", "login", "mobile-app", "refund")
    assert schema.encode(['["refund", "bug"]']) == [0.0, 1.0, 0.0, 0.0, 1.0]
    rows[2][3] = '["bug", 3]'
    problems = problems_of(
        {"train": write_csv(tmp_path / "bad.csv", rows, TICKET_HEADER)}, spec=ticket_spec()
    )
    assert problems == [
        f"{tmp_path / 'bad.csv'}: column 'tags', row 3 (1 in all): a JSON list of label names (strings), "
        "as the cell starts with '[' and ends with ']', found ['[\"bug\", 3]']"
    ]


def test_yes_no_columns_are_indicators(tmp_path: Path) -> None:
    """They once became a names model with the two labels 'no' and 'yes'."""
    header = ["casePart1", "casePart2", "urgent", "refund"]
    rows = [["a", "", "yes", "no"], ["b", "", "No", "YES"], ["c", "", "y", "n"], ["d", "", "n", "y"]]
    schema = validate_files(
        {"train": write_csv(tmp_path / "yn.csv", rows, header)},
        ColumnSpec(label_columns=("urgent", "refund")),
    )
    assert schema.label_format == "indicator" and schema.label_names == ("urgent", "refund")
    assert [schema.encode(r[2:]) for r in rows] == [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]


def test_a_separator_with_indicator_columns_and_a_missing_id_column_are_refused(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "tickets.csv", TICKETS, TICKET_HEADER)
    problems = problems_of({"train": train}, spec=ticket_spec(label_separator="|"), label_format="indicator")
    assert "--label_separator '|' splits cells of label names, but --label_format is indicator" in problems[0]
    problems = problems_of({"train": train}, spec=ticket_spec(label_separator="|", id_column="id"))
    assert "missing column(s) ['id']" in problems[0]
    with pytest.raises(ArgumentError, match="--id_column 'body' is also a text or label column"):
        ticket_spec(id_column="body")
    with pytest.raises(ArgumentError, match="--label_separator: expected a character"):
        ticket_spec(label_separator=" ")


def test_a_validation_or_test_file_that_is_the_training_file_is_refused(
    good_train: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Train = validation once passed silently: thresholds and checkpoints chosen on training rows."""
    copy = tmp_path / "copy.csv"
    copy.write_bytes(good_train.read_bytes())
    problems = problems_of({"train": good_train, "validation": good_train, "test": copy})
    assert problems == [
        f"{good_train} (--validation_file) is the training file {good_train}: validation rows must be rows "
        "the model does not train on; pass another file or leave it out (validation is then split off train)",
        f"{copy} (--test_file) has the same content as the training file {good_train}: test rows must be "
        "rows the model does not train on; pass another file",
    ]
    other = write_csv(tmp_path / "other.csv", [indicator_row(f"other {i}", 1 + i % 10) for i in range(10)])
    with caplog.at_level(logging.WARNING, logger="multilabel.data.schema"):
        validate_files({"train": good_train, "validation": other, "test": other})
    assert "the test file is the validation file" in caplog.text
