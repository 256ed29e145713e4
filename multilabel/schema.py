"""Column configuration, label formats and CSV validation.

Pure standard library, so that `launch.py` can validate a user's files on a laptop
without torch, datasets or pandas, with exactly the rules that `train.py` applies.

Two label formats are understood:

* ``indicator``: each label column holds 0/1 (or true/false); the label names are
  the column names.
* ``names``: each label column is a slot holding one label name or nothing; a row's
  label set is the union of its slots, and the label names are the distinct values
  seen in the training file.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_TEXT_COLUMNS: tuple[str, str] = ("casePart1", "casePart2")
LABEL_COLUMN_PREFIX = "label"
INDICATOR_FORMAT = "indicator"
NAMES_FORMAT = "names"
AUTO_FORMAT = "auto"
LABEL_FORMATS = (AUTO_FORMAT, INDICATOR_FORMAT, NAMES_FORMAT)

_TRUE = {"1", "true", "1.0"}
_FALSE = {"0", "false", "0.0"}
_MAX_LISTED_ROWS = 10

# Long descriptions are common; the csv module's default 128 KiB cap is not a data rule.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class DataValidationError(ValueError):
    """Every problem found in the input files, raised once, one problem a line."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in the input data:\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


@dataclass(frozen=True)
class ColumnSpec:
    """Which CSV columns hold the text pair and the labels."""

    text_columns: tuple[str, ...] = DEFAULT_TEXT_COLUMNS
    label_columns: tuple[str, ...] | None = None  # None: every column named label*

    def __post_init__(self) -> None:
        if not 1 <= len(self.text_columns) <= 2:
            raise ValueError(
                f"text_column_names: expected one or two column names (text, text pair), "
                f"found {len(self.text_columns)}: {list(self.text_columns)}"
            )

    def resolve_label_columns(self, header: Sequence[str]) -> tuple[str, ...]:
        """The label columns for a file with this header."""
        if self.label_columns is not None:
            return self.label_columns
        return tuple(c for c in header if c.startswith(LABEL_COLUMN_PREFIX))


@dataclass
class LabelSchema:
    """What the training file says about labels: their format and their names, in order."""

    label_format: str
    label_columns: tuple[str, ...]
    label_names: tuple[str, ...]

    def encode(self, values: Sequence[str]) -> list[float]:
        """One row's label cells (in `label_columns` order) as a multi-hot vector."""
        if self.label_format == INDICATOR_FORMAT:
            return [1.0 if v.strip().lower() in _TRUE else 0.0 for v in values]
        index = {name: i for i, name in enumerate(self.label_names)}
        hot = [0.0] * len(self.label_names)
        for value in values:
            name = value.strip()
            if name:
                hot[index[name]] = 1.0
        return hot


@dataclass
class FileReport:
    """What validating one file found."""

    path: str
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    label_values: set[str] = field(default_factory=set)
    positives: dict[str, int] = field(default_factory=dict)


def list_csv_files(path: str | os.PathLike) -> list[Path]:
    """A CSV file, or every ``*.csv`` in a directory (a SageMaker channel), sorted."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".csv")
        if not files:
            raise DataValidationError([f"{p}: directory holds no .csv file"])
        return files
    if not p.is_file():
        raise DataValidationError([f"{p}: no such file or directory"])
    return [p]


def read_header(path: Path) -> list[str]:
    """The header row of a CSV file ([] for an empty file)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh), [])


def iter_records(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, int, list[str] | None]]:
    """Yield (row number, file line, the row's cells in `columns` order) for each data row.

    Row numbers count data rows from 1 (the header is row 0). A row whose field count
    differs from the header's yields ``None`` as its cells, for the caller to report.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        positions = [header.index(c) for c in columns]
        width = len(header)
        for row_number, row in enumerate(reader, start=1):
            if not row:  # the csv module yields [] for a blank line
                continue
            if len(row) != width:
                yield row_number, reader.line_num, None
            else:
                yield row_number, reader.line_num, [row[i] for i in positions]


def _row_list(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_MAX_LISTED_ROWS])
    more = f" and {len(rows) - _MAX_LISTED_ROWS} more" if len(rows) > _MAX_LISTED_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more} ({len(rows)} in all)"


def _check_header(path: Path, header: list[str], needed: Sequence[str]) -> list[str]:
    problems = []
    if not header:
        return [f"{path}: empty file, expected a header row naming the columns"]
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        problems.append(f"{path}: duplicate column name(s) {duplicates} in the header")
    missing = [c for c in needed if c not in header]
    if missing:
        problems.append(
            f"{path}: missing column(s) {missing}; the header has {header}. "
            "Set --text_column_names / --label_column_names to match your file."
        )
    return problems


def scan_file(path: Path, spec: ColumnSpec, label_columns: Sequence[str]) -> FileReport:
    """Check one file's structure and texts, and collect its distinct label values."""
    report = FileReport(path=str(path))
    header = read_header(path)
    report.problems += _check_header(path, header, [*spec.text_columns, *label_columns])
    if report.problems:
        return report
    n_text = len(spec.text_columns)
    both_empty: list[int] = []
    ragged: list[str] = []
    for row_number, line, cells in iter_records(path, [*spec.text_columns, *label_columns]):
        report.rows += 1
        if cells is None:
            ragged.append(f"{row_number} (line {line})")
            continue
        if all(not c.strip() for c in cells[:n_text]):
            both_empty.append(row_number)
        report.label_values.update(v.strip() for v in cells[n_text:])
    if report.rows == 0:
        report.problems.append(f"{path}: no data rows, only a header")
    if ragged:
        report.problems.append(
            f"{path}: rows {', '.join(ragged[:_MAX_LISTED_ROWS])} have a different number "
            f"of fields than the header's {len(header)} ({len(ragged)} in all); check quoting"
        )
    if both_empty:
        report.problems.append(
            f"{path}: {_row_list(both_empty)}: all text columns {list(spec.text_columns)} are empty; "
            "a row needs text in at least one of them"
        )
    return report


def detect_label_format(values: set[str], requested: str) -> str:
    """The label format; for `auto`, decided from the training file's distinct label cells.

    Any 0/1/true/false cell means `indicator`: then a stray value ("2", "yes") is
    reported as an error instead of silently becoming a label name. Files of label
    names hold names and blanks; a names file whose labels are called "0" or "1" needs
    `--label_format names`.
    """
    if requested not in LABEL_FORMATS:
        raise ValueError(f"label_format: expected one of {LABEL_FORMATS}, found {requested!r}")
    if requested != AUTO_FORMAT:
        return requested
    values = {v.lower() for v in values}
    chosen = INDICATOR_FORMAT if values & (_TRUE | _FALSE) else NAMES_FORMAT
    logger.info("label format: %s (detected from the training file's label values)", chosen)
    return chosen


def check_label_cells(
    path: Path, spec: ColumnSpec, schema: LabelSchema, known: set[str] | None
) -> tuple[list[str], dict[str, int]]:
    """Per-cell label checks for one file; returns (problems, positives per label name).

    In indicator format each cell must be 0/1/true/false. In names format, a name not
    in `known` (the training file's names; None for the training file itself) is an error.
    """
    bad: dict[str, list[int]] = {}
    found: dict[str, set[str]] = {}
    positives = dict.fromkeys(schema.label_names, 0)
    n_text = len(spec.text_columns)
    for row_number, _, cells in iter_records(path, [*spec.text_columns, *schema.label_columns]):
        if cells is None:
            continue
        for column, value in zip(schema.label_columns, cells[n_text:], strict=False):
            v = value.strip()
            if schema.label_format == INDICATOR_FORMAT:
                if v.lower() not in _TRUE | _FALSE:
                    bad.setdefault(column, []).append(row_number)
                    found.setdefault(column, set()).add(value)
                elif v.lower() in _TRUE:
                    positives[column] += 1
            elif v:
                if known is not None and v not in known:
                    bad.setdefault(column, []).append(row_number)
                    found.setdefault(column, set()).add(value)
                else:
                    positives[v] += 1
    problems = []
    for column, rows in bad.items():
        values = sorted(found[column])[:5]
        if schema.label_format == INDICATOR_FORMAT:
            expected = "expected 0/1 or true/false"
        else:
            expected = "label name(s) never seen in the training file"
        problems.append(f"{path}: column '{column}', {_row_list(rows)}: {expected}, found {values}")
    return problems, positives


def validate_files(
    files: dict[str, str | os.PathLike | None],
    spec: ColumnSpec | None = None,
    label_format: str = AUTO_FORMAT,
) -> LabelSchema:
    """Validate the train / validation / test files (each a CSV or a directory of CSVs).

    Collects every problem in every file and raises one `DataValidationError`; returns
    the label schema learnt from the training file. Warnings (a label with no positive
    example in train) are logged.
    """
    spec = spec or ColumnSpec()
    if not files.get("train"):
        raise DataValidationError(["no training file: pass --train_file or set SM_CHANNEL_TRAIN"])
    problems: list[str] = []
    paths: dict[str, list[Path]] = {}
    for split, where in files.items():
        if where:
            try:
                paths[split] = list_csv_files(where)
            except DataValidationError as err:
                problems += err.problems
    if "train" not in paths:
        raise DataValidationError(problems)

    train_header = read_header(paths["train"][0])
    label_columns = spec.resolve_label_columns(train_header)
    if not label_columns and train_header:
        problems.append(
            f"{paths['train'][0]}: no label columns: none is named '{LABEL_COLUMN_PREFIX}*' "
            f"in the header {train_header}; set --label_column_names"
        )
    reports = {
        split: [scan_file(p, spec, label_columns) for p in split_paths]
        for split, split_paths in paths.items()
    }
    for split_reports in reports.values():
        for report in split_reports:
            problems += report.problems
    if problems:
        raise DataValidationError(problems)

    train_values = set().union(*(r.label_values for r in reports["train"]))
    fmt = detect_label_format(train_values, label_format)
    if fmt == INDICATOR_FORMAT:
        names = tuple(label_columns)
    else:
        names = tuple(sorted(v for v in train_values if v))
        if not names:
            raise DataValidationError(
                [f"{paths['train'][0]}: the label columns {list(label_columns)} are all empty"]
            )
    schema = LabelSchema(label_format=fmt, label_columns=tuple(label_columns), label_names=names)

    train_positives = dict.fromkeys(names, 0)
    for split, split_paths in paths.items():
        known = None if split == "train" else set(names)
        for p in split_paths:
            file_problems, positives = check_label_cells(p, spec, schema, known)
            problems += file_problems
            if split == "train":
                for name, count in positives.items():
                    train_positives[name] += count
    if problems:
        raise DataValidationError(problems)
    for name, count in train_positives.items():
        if count == 0:
            logger.warning(
                "label '%s' has no positive example in the training data: the model cannot "
                "learn it, and its threshold falls back to 0.5",
                name,
            )
    logger.info(
        "validated %s; %d labels (%s format)",
        ", ".join(f"{s}: {sum(r.rows for r in rs)} rows" for s, rs in reports.items()),
        len(names),
        fmt,
    )
    return schema
