"""Column configuration, label formats and validation of the input CSV files.

Pure standard library (the files are read by `csv_files`), so that `launch.py` can
validate a user's files on a laptop without torch, datasets or pandas, with exactly the
rules that `train.py` applies.

Two label formats are understood:

* ``indicator``: each label column holds 0/1 (or true/false, yes/no, y/n); the label
  names are the column names.
* ``names``: each label column holds label names or nothing: one name, several joined by
  ``--label_separator`` (``billing|refund``), or a JSON list (``["billing", "refund"]``).
  A row's label set is the union of its cells, and the label names are the distinct
  names seen in the training file.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from multilabel.core.artifact import LABEL_SEPARATOR, file_sha256
from multilabel.core.errors import ArgumentError, DataValidationError
from multilabel.data.csv_files import DEFAULT_ENCODING, iter_records, list_csv_files, read_header

logger = logging.getLogger(__name__)

DEFAULT_TEXT_COLUMNS: tuple[str, str] = ("casePart1", "casePart2")
LABEL_COLUMN_PREFIX = "label"
INDICATOR_FORMAT = "indicator"
NAMES_FORMAT = "names"
AUTO_FORMAT = "auto"
LABEL_FORMATS = (AUTO_FORMAT, INDICATOR_FORMAT, NAMES_FORMAT)

_TRUE = {"1", "true", "1.0", "yes", "y"}
_FALSE = {"0", "false", "0.0", "no", "n"}
# Separators a cell of several label names is commonly written with (`billing|refund`);
# under `auto`, label values holding one are refused unless --label_separator reads them.
_LABEL_SEPARATORS = ("|", ";", ",")
_MAX_LISTED_ROWS = 10
_OTHER_DELIMITERS = (";", "\t", "|")


def cell_labels(value: str, separator: str | None = None) -> list[str] | None:
    """The label names one names-format cell holds; None for a cell that cannot be read.

    Blank: none. `["a", "b"]` (a JSON list of strings): those. With `separator`, the
    parts between separators; else the whole cell. Names are stripped, blanks dropped.
    """
    import json

    text = value.strip()
    if not text:
        return []
    if text.startswith("[") and text.endswith("]"):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            return None
        return [i.strip() for i in items if i.strip()]
    parts = text.split(separator) if separator else [text]
    return [p.strip() for p in parts if p.strip()]


def split_names(names: str) -> tuple[str, ...]:
    """A comma-separated list of column names, blanks around the commas removed."""
    return tuple(n.strip() for n in names.split(",") if n.strip())


def parse_display_names(value: str) -> dict[str, str]:
    """`--label_display_names`: label column -> the name the model, log and endpoint show.

    Either `column=name` pairs separated by commas (`label1=role::program,label2=works-with::text`),
    a JSON object, or the path of a JSON file holding one (such as data/labels.json).
    Raises `ArgumentError` naming every problem: bad syntax, an empty or repeated column or name.
    """
    import json

    flag = "--label_display_names"
    text = value.strip()
    if text.startswith("{") or text.endswith(".json") or os.path.isfile(text):
        where = "the JSON object"
        try:
            if not text.startswith("{"):
                where = text
                text = Path(text).read_text(encoding="utf-8")
            pairs = json.loads(text)
        except OSError as err:
            raise ArgumentError([f"{flag}: cannot read {value!r} ({err.strerror or err})"]) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ArgumentError([f"{flag}: {where} is not valid JSON ({err})"]) from None
        if not isinstance(pairs, dict) or not all(isinstance(v, str) for v in pairs.values()):
            raise ArgumentError(
                [
                    f"{flag}: {where} must be a JSON object of label column -> name (strings), found {pairs!r:.80}"
                ]
            )
        items = [(str(k).strip(), v.strip()) for k, v in pairs.items()]
    else:
        items = []
        for part in (p for p in text.split(",") if p.strip()):
            column, sep, name = part.partition("=")
            if not sep:
                raise ArgumentError(
                    [
                        f"{flag}: expected column=name pairs separated by commas, found {part.strip()!r}; "
                        "for example label1=role::program,label2=works-with::text, or a JSON file"
                    ]
                )
            items.append((column.strip(), name.strip()))
    problems = [f"{flag}: column {c!r} has an empty name" for c, n in items if not n]
    problems += [f"{flag}: an empty column name (for {n!r})" for c, n in items if not c]
    columns, names = [c for c, _ in items], [n for _, n in items]
    problems += [
        f"{flag}: column {c!r} is named more than once"
        for c in sorted({c for c in columns if columns.count(c) > 1})
    ]
    problems += [
        f"{flag}: the name {n!r} is given to several columns {[c for c, m in items if m == n]}; "
        "each label needs its own name"
        for n in sorted({n for n in names if n and names.count(n) > 1})
    ]
    if problems:
        raise ArgumentError(problems)
    return dict(items)


@dataclass(frozen=True)
class ColumnSpec:
    """Which CSV columns hold the text pair and the labels, and how the files are encoded."""

    text_columns: tuple[str, ...] = DEFAULT_TEXT_COLUMNS
    label_columns: tuple[str, ...] | None = None  # None: every column named label*
    encoding: str = DEFAULT_ENCODING
    # (column, display name) pairs of indicator-format label columns; others keep their column name.
    display_names: tuple[tuple[str, str], ...] = ()
    # Names-format cells holding several names joined by this (`billing|refund`); None: one a cell.
    label_separator: str | None = None
    # A column of row ids, carried to every prediction and never read by the model.
    id_column: str | None = None

    def __post_init__(self) -> None:
        """Every problem of the column lists and the encoding, in one `ArgumentError`."""
        problems = []
        texts, labels = self.text_columns, self.label_columns
        if not 1 <= len(texts) <= 2:
            problems.append(
                f"--text_column_names: expected one or two column names (text, text pair), "
                f"found {len(texts)}: {list(texts)}"
            )
        for flag, names in (("--text_column_names", texts), ("--label_column_names", labels or ())):
            for name in sorted({n for n in names if names.count(n) > 1}):
                problems.append(f"{flag}: column '{name}' is listed more than once; list it once")
        if labels is not None and not labels:
            problems.append(
                "--label_column_names: no column name given; list the label columns, "
                f"or leave the flag out to use every column named {LABEL_COLUMN_PREFIX}*"
            )
        for name in [n for n in dict.fromkeys(texts) if n in (labels or ())]:
            problems.append(
                f"column '{name}' is in both --text_column_names and --label_column_names; "
                "a column is either text or a label"
            )
        if self.label_separator is not None and not self.label_separator.strip():
            problems.append(
                f"--label_separator: expected a character such as '|', ';' or ',', found {self.label_separator!r}"
            )
        if self.id_column is not None:
            if not self.id_column.strip():
                problems.append(
                    "--id_column: an empty column name; name the column of row ids, or leave it out"
                )
            elif self.id_column in (*texts, *(labels or ())):
                problems.append(
                    f"--id_column {self.id_column!r} is also a text or label column; the id column is "
                    "never read by the model"
                )
        try:
            "".encode(self.encoding)  # LookupError for unknown and for non-text codecs (base64)
        except LookupError:
            problems.append(
                f"--encoding: unknown text encoding {self.encoding!r}; for example utf-8, cp1252 or latin-1"
            )
        if problems:
            raise ArgumentError(problems)

    @classmethod
    def from_flags(
        cls,
        text_column_names: str,
        label_column_names: str | None,
        encoding: str = DEFAULT_ENCODING,
        label_display_names: str | None = None,
        label_separator: str | None = None,
        id_column: str | None = None,
    ) -> ColumnSpec:
        """The spec from the comma-separated lists that train.py and launch.py take as flags."""
        labels = split_names(label_column_names) if label_column_names is not None else None
        display = tuple(parse_display_names(label_display_names).items()) if label_display_names else ()
        id_column = id_column.strip() if id_column is not None else None
        return cls(split_names(text_column_names), labels, encoding, display, label_separator, id_column)

    def resolve_label_columns(self, header: Sequence[str]) -> tuple[str, ...]:
        """The label columns for a file with this header (never the id column)."""
        if self.label_columns is not None:
            return self.label_columns
        return tuple(c for c in header if c.startswith(LABEL_COLUMN_PREFIX) and c != self.id_column)


@dataclass
class LabelSchema:
    """What the training file says about labels: their format and their names, in order."""

    label_format: str
    label_columns: tuple[str, ...]
    label_names: tuple[str, ...]
    separator: str | None = None  # names format: what joins several names in one cell

    def encode(self, values: Sequence[str]) -> list[float]:
        """One row's label cells (in `label_columns` order) as a multi-hot vector."""
        if self.label_format == INDICATOR_FORMAT:
            return [1.0 if v.strip().lower() in _TRUE else 0.0 for v in values]
        index = {name: i for i, name in enumerate(self.label_names)}
        hot = [0.0] * len(self.label_names)
        for value in values:
            for name in cell_labels(value, self.separator) or ():
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


def _row_list(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_MAX_LISTED_ROWS])
    more = f" and {len(rows) - _MAX_LISTED_ROWS} more" if len(rows) > _MAX_LISTED_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more} ({len(rows)} in all)"


def _other_delimiter(header: Sequence[str]) -> str | None:
    """The delimiter a one-column header seems to use instead of a comma, if any."""
    if len(header) != 1:
        return None
    counts = {d: header[0].count(d) for d in _OTHER_DELIMITERS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else None


def _check_header(path: Path, header: list[str], needed: Sequence[str]) -> list[str]:
    """Problems of a header: empty, another delimiter than commas, duplicate or missing columns."""
    problems = []
    if not header:
        return [f"{path}: empty file, expected a header row naming the columns"]
    delimiter = _other_delimiter(header)
    if delimiter:
        shown = header[0] if len(header[0]) <= 60 else header[0][:60] + "..."
        return [
            f"{path}: the header is one column, {shown!r}, that looks delimited by {delimiter!r}; "
            "a comma-separated CSV is expected: save the file with commas as delimiters"
        ]
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
    try:
        header = read_header(path, spec.encoding)
        ids = [spec.id_column] if spec.id_column else []
        report.problems += _check_header(path, header, [*spec.text_columns, *label_columns, *ids])
        if report.problems:
            return report
        n_text = len(spec.text_columns)
        both_empty: list[int] = []
        ragged: list[str] = []
        columns = [*spec.text_columns, *label_columns]
        for row_number, line, cells in iter_records(path, columns, spec.encoding):
            report.rows += 1
            if cells is None:
                ragged.append(f"{row_number} (line {line})")
                continue
            if all(not c.strip() for c in cells[:n_text]):
                both_empty.append(row_number)
            report.label_values.update(v.strip() for v in cells[n_text:])
    except DataValidationError as err:
        report.problems += err.problems
        return report
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


def detect_label_format(values: set[str], requested: str, separator: str | None = None) -> str:
    """The label format; for `auto`, decided from the training file's distinct label cells.

    A `separator` means `names`. Otherwise any 0/1/true/false/yes/no cell means
    `indicator`: then a stray value ("2", "maybe") is reported as an error instead of
    silently becoming a label name. Files of label names hold names and blanks; a names
    file whose labels are called "0" or "yes" needs `--label_format names` (and some blank
    cell, else it is taken for indicator data).
    """
    if requested not in LABEL_FORMATS:
        raise ValueError(f"label_format: expected one of {LABEL_FORMATS}, found {requested!r}")
    if requested != AUTO_FORMAT:
        return requested
    if separator:
        logger.info("label format: names (--label_separator %r)", separator)
        return NAMES_FORMAT
    values = {v.lower() for v in values}
    chosen = INDICATOR_FORMAT if values & (_TRUE | _FALSE) else NAMES_FORMAT
    logger.info("label format: %s (detected from the training file's label values)", chosen)
    return chosen


def check_label_cells(
    path: Path, spec: ColumnSpec, schema: LabelSchema, known: set[str] | None
) -> tuple[list[str], dict[str, int]]:
    """Per-cell label checks for one file; returns (problems, positives per label name).

    In indicator format each cell must be 0/1/true/false/yes/no. In names format, a cell
    that is no readable JSON list, or a name not in `known` (the training file's names;
    None for the training file itself), is an error.
    """
    bad: dict[str, list[int]] = {}
    found: dict[str, set[str]] = {}
    positives = dict.fromkeys(schema.label_names, 0)
    n_text = len(spec.text_columns)
    columns = [*spec.text_columns, *schema.label_columns]
    # Indicator columns count for their label name (the column's display name, if given).
    name_of = dict(zip(schema.label_columns, schema.label_names, strict=False))
    for row_number, _, cells in iter_records(path, columns, spec.encoding):
        if cells is None:
            continue
        for column, value in zip(schema.label_columns, cells[n_text:], strict=False):
            v = value.strip()
            if schema.label_format == INDICATOR_FORMAT:
                if v.lower() not in _TRUE | _FALSE:
                    bad.setdefault(column, []).append(row_number)
                    found.setdefault(column, set()).add(value)
                elif v.lower() in _TRUE:
                    positives[name_of[column]] += 1
            elif v:
                names = cell_labels(v, schema.separator)
                if names is None or (known is not None and not set(names) <= known):
                    bad.setdefault(column, []).append(row_number)
                    found.setdefault(column, set()).add(value)
                else:
                    for name in set(names):
                        positives[name] += 1
    problems = []
    for column, rows in bad.items():
        values = sorted(found[column])[:5]
        hint = ""
        if schema.label_format == INDICATOR_FORMAT:
            expected = "expected 0/1, true/false or yes/no"
        elif known is None or all(cell_labels(v, schema.separator) is None for v in values):
            expected = "a JSON list of label names (strings), as the cell starts with '[' and ends with ']'"
        else:
            expected = "label name(s) never seen in the training file"
            folded = {_fold(k): k for k in known or ()}
            close = [f"{v.strip()!r} for {folded[_fold(v)]!r}" for v in values if _fold(v) in folded]
            hint = f" (spelt differently from the training file: {', '.join(close)})" if close else ""
        problems.append(f"{path}: column '{column}', {_row_list(rows)}: {expected}, found {values}{hint}")
    return problems, positives


def _fold(name: str) -> str:
    """A label name without case and spacing differences."""
    return " ".join(name.split()).casefold()


def rows_needed_for_split(size: float) -> int:
    """The fewest training rows whose stratified split keeps at least 2 rows on each side.

    sklearn accepts 1 row a side, but then iterstrat's greedy assignment often leaves that
    side empty (338 of 6,480 small random label sets); with 2 a side it did in 3 of 1,500
    at 5 rows and size 0.5, and in none of 7,000 others.
    """
    n = max(4, math.floor(1 / size) + 1, math.ceil(2 / (1 - size)))
    while math.ceil(size * n) < 2 or n - math.ceil(size * n) < 2:
        n += 1
    return n


def _label_column_problems(
    paths: dict[str, list[Path]], spec: ColumnSpec, first: Path, label_columns: Sequence[str]
) -> list[str]:
    """Files of any split with label* columns that the first training file lacks."""
    if spec.label_columns is not None:  # listed by name: other columns are not labels
        return []
    problems = []
    for p in [f for split_paths in paths.values() for f in split_paths if f != first]:
        try:
            extra = [
                c for c in spec.resolve_label_columns(read_header(p, spec.encoding)) if c not in label_columns
            ]
        except DataValidationError:
            continue  # scan_file reports it
        if extra:
            problems.append(
                f"{p}: label column(s) {extra} are not in {first}, the first training file, whose "
                f"label columns are {list(label_columns)}; give every file the same label columns, "
                "or list the ones to use with --label_column_names"
            )
    return problems


def _variant_problems(
    train: str | os.PathLike,
    train_paths: list[Path],
    spec: ColumnSpec,
    label_columns: Sequence[str],
    names: Sequence[str],
    separator: str | None,
) -> list[str]:
    """Label names that differ only in case or spacing, with the rows of each spelling."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_fold(name), []).append(name)
    variants = {n for group in groups.values() if len(group) > 1 for n in group}
    if not variants:
        return []
    rows: dict[str, dict[Path, list[int]]] = {}
    n_text = len(spec.text_columns)
    for p in train_paths:
        for row_number, _, cells in iter_records(p, [*spec.text_columns, *label_columns], spec.encoding):
            held = {n for c in cells[n_text:] for n in cell_labels(c, separator) or ()}
            for value in held & variants:
                rows.setdefault(value, {}).setdefault(p, []).append(row_number)
    problems = []
    for group in (g for g in groups.values() if len(g) > 1):
        where = "; ".join(
            f"{name!r}{f' in {p.name}' if len(train_paths) > 1 else ''} {_row_list(found)}"
            for name in group
            for p, found in rows[name].items()
        )
        problems.append(
            f"{train}: label names {group} differ only in case or spacing and would become {len(group)} "
            f"separate labels: {where}; write each label the same way in every row"
        )
    return problems


def _display_names(first: Path, label_columns: Sequence[str], display: dict[str, str]) -> tuple[str, ...]:
    """The label names of indicator data: each column's display name, else the column's own."""
    unknown = [c for c in display if c not in label_columns]
    problems = (
        [
            f"--label_display_names: column(s) {unknown} are not label columns of {first}, whose label "
            f"columns are {list(label_columns)}"
        ]
        if unknown
        else []
    )
    names = tuple(display.get(c, c) for c in label_columns)
    problems += [
        f"--label_display_names: the name {n!r} is also the name of another label column; "
        "each label needs its own name"
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    if problems:
        raise DataValidationError(problems)
    return names


def _joined_label_problems(first: Path, values: set[str], requested: str, separator: str | None) -> list[str]:
    """Label values that hold several labels but would each become one label.

    Without `separator`, values joined by one of _LABEL_SEPARATORS (two distinct values
    holding the same one, under `auto`) are refused with the flag that reads them: a label
    per combination is never what a user meant. A name holding LABEL_SEPARATOR is always
    refused: it joins predicted labels in the prediction CSVs.
    """
    names = {n for v in values for n in cell_labels(v, separator) or ()}
    problems = []
    if separator is None and requested == AUTO_FORMAT:
        for candidate in _LABEL_SEPARATORS:
            joined = sorted(v for v in names if candidate in v)
            if len(joined) >= 2 or (candidate == LABEL_SEPARATOR and joined):
                problems.append(
                    f"{first}: label cells such as {joined[:3]} hold several labels joined by "
                    f"{candidate!r}; pass --label_separator '{candidate}' to read each name as its own "
                    "label (or --label_format names to keep every cell as one label)"
                )
                return problems
    joined = sorted(n for n in names if LABEL_SEPARATOR in n)
    if joined:
        problems.append(
            f"{first}: label name(s) {joined[:3]} contain {LABEL_SEPARATOR!r}, which joins the predicted "
            f"labels in prediction CSVs; pass --label_separator '{LABEL_SEPARATOR}' if it separates labels, "
            "or rename them"
        )
    return problems


def _content_key(path: Path) -> tuple[int, str]:
    """A file's size and SHA-256: equal for two copies of the same rows."""
    return path.stat().st_size, file_sha256(path)


def _same_file_problems(paths: dict[str, list[Path]]) -> list[str]:
    """Validation or test files that are training files (the same file, or a copy): checkpoints
    and thresholds chosen on training rows, or test scores of rows the model learnt, mean
    nothing. A test file equal to the validation file is allowed, with a warning."""
    sizes = {p.stat().st_size for p in paths["train"]}
    train = {_content_key(p): p for p in paths["train"]}
    problems = []
    for split, flag in (("validation", "--validation_file"), ("test", "--test_file")):
        same = [(p, train.get(_content_key(p))) for p in paths.get(split, []) if p.stat().st_size in sizes]
        for path, twin in [(p, t) for p, t in same if t is not None][:1]:
            how = "is" if path.resolve() == twin.resolve() else "has the same content as"
            problems.append(
                f"{path} ({flag}) {how} the training file {twin}: {split} rows must be rows the model "
                f"does not train on; pass another file{' or leave it out (validation is then split off train)' if split == 'validation' else ''}"
            )
    validation = {p.stat().st_size: p for p in paths.get("validation", [])}
    if any(
        p.stat().st_size in validation and _content_key(p) == _content_key(validation[p.stat().st_size])
        for p in paths.get("test", [])
    ):
        logger.warning(
            "the test file is the validation file: test scores then come from the rows the thresholds were tuned on"
        )
    return problems


def validate_files(
    files: dict[str, str | os.PathLike | None],
    spec: ColumnSpec | None = None,
    label_format: str = AUTO_FORMAT,
    validation_split_size: float | None = None,
) -> LabelSchema:
    """Validate the train / validation / test files (each a CSV or a directory of CSVs).

    Collects every problem in every file and raises one `DataValidationError`; returns
    the label schema learnt from the training file. Warnings (a label with no positive
    example in train) are logged. With `validation_split_size` and no validation file,
    the training rows must be enough for the stratified split. The spec's `label_separator`
    splits a names-format cell into several names (`billing|refund`).

    The steps, each raising once it has found every problem it can: the files
    (`_csv_paths`), the label columns (`_label_columns`), every row's shape
    (`scan_file`), the label format and names (`_label_names`), then every label cell
    against them (`_label_cell_problems`).
    """
    spec = spec or ColumnSpec()
    if not files.get("train"):
        raise DataValidationError(["no training file: pass --train_file or set SM_CHANNEL_TRAIN"])
    paths, problems = _csv_paths(files)
    first = paths["train"][0]
    label_columns, column_problems = _label_columns(first, spec)
    problems += column_problems
    if problems and set(spec.text_columns) & set(label_columns):
        raise DataValidationError(problems)
    problems += _label_column_problems(paths, spec, first, label_columns)
    reports = {
        split: [scan_file(p, spec, label_columns) for p in split_paths]
        for split, split_paths in paths.items()
    }
    problems += [
        problem for split_reports in reports.values() for r in split_reports for problem in r.problems
    ]
    # Too few rows does not stop the cell checks below: every problem is reported at once.
    train_rows = sum(r.rows for r in reports["train"])
    split_problems = _split_size_problems(files, train_rows, validation_split_size)
    if problems:
        raise DataValidationError(problems + split_problems)
    train_values = set().union(*(r.label_values for r in reports["train"]))
    fmt, names = _label_names(files["train"], paths["train"], spec, label_columns, train_values, label_format)
    schema = LabelSchema(
        label_format=fmt,
        label_columns=tuple(label_columns),
        label_names=names,
        separator=spec.label_separator if fmt == NAMES_FORMAT else None,
    )
    cell_problems, train_positives = _label_cell_problems(paths, spec, schema)
    if cell_problems or split_problems:
        raise DataValidationError(cell_problems + split_problems)
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


def _csv_paths(files: dict[str, str | os.PathLike | None]) -> tuple[dict[str, list[Path]], list[str]]:
    """Each given split's CSV files, and the problems with them (raised at once when the
    training files cannot be listed)."""
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
    return paths, problems + _same_file_problems(paths)


def _label_columns(first: Path, spec: ColumnSpec) -> tuple[list[str], list[str]]:
    """The label columns of the first training file's header, and what is wrong with them."""
    try:
        header = read_header(first, spec.encoding)
    except DataValidationError:
        header = []  # scan_file reports it
    label_columns = spec.resolve_label_columns(header)
    problems = []
    if not label_columns and header and not _other_delimiter(header):
        problems.append(
            f"{first}: no label columns: none is named '{LABEL_COLUMN_PREFIX}*' "
            f"in the header {header}; set --label_column_names"
        )
    for column in [c for c in spec.text_columns if c in label_columns]:
        problems.append(
            f"{first}: column '{column}' is both a text column (--text_column_names) and a label "
            f"column (named {LABEL_COLUMN_PREFIX}*); list the label columns with --label_column_names"
        )
    return label_columns, problems


def _split_size_problems(
    files: dict[str, str | os.PathLike | None], train_rows: int, validation_split_size: float | None
) -> list[str]:
    """Without a validation file: whether the training rows are enough to hold one out."""
    if validation_split_size is None or files.get("validation") or not train_rows:
        return []
    needed = rows_needed_for_split(validation_split_size)
    if train_rows >= needed:
        return []
    return [
        f"{files['train']}: {train_rows} training row(s) are too few to hold out "
        f"--validation_split_size {validation_split_size} for validation: the stratified "
        f"split needs at least {needed} rows; add rows or pass --validation_file"
    ]


def _label_names(
    train: str | os.PathLike,
    train_paths: list[Path],
    spec: ColumnSpec,
    label_columns: list[str],
    train_values: set[str],
    label_format: str,
) -> tuple[str, tuple[str, ...]]:
    """The label format (`detect_label_format`) and the label names, from the training
    file's label cells; raises on a format that the cells contradict."""
    first, separator = train_paths[0], spec.label_separator
    if separator is not None and label_format == INDICATOR_FORMAT:
        raise DataValidationError(
            [
                f"--label_separator {separator!r} splits cells of label names, but --label_format "
                "is indicator (0/1 cells); leave one of the two out"
            ]
        )
    fmt = detect_label_format(train_values, label_format, separator)
    if label_format == NAMES_FORMAT and train_values and {v.lower() for v in train_values} <= _TRUE | _FALSE:
        raise DataValidationError(
            [
                f"{train}: --label_format names, but every label cell is 0/1 or true/false "
                f"(found {sorted(train_values)}): they look like indicators; use --label_format "
                "indicator (or auto)"
            ]
        )
    if fmt == INDICATOR_FORMAT:
        return fmt, _display_names(first, label_columns, dict(spec.display_names))
    if spec.display_names:
        raise DataValidationError(
            [
                f"{first}: --label_display_names renames indicator (0/1) label columns, but the "
                "label columns hold label names already; leave the flag out, or rename the values"
            ]
        )
    problems = _joined_label_problems(first, train_values, label_format, separator)
    if problems:
        raise DataValidationError(problems)
    names = tuple(sorted({n for v in train_values for n in cell_labels(v, separator) or ()}))
    if not names and all(cell_labels(v, separator) is not None for v in train_values):
        raise DataValidationError([f"{first}: the label columns {list(label_columns)} are all empty"])
    problems = _variant_problems(train, train_paths, spec, label_columns, names, separator)
    if problems:
        raise DataValidationError(problems)
    return fmt, names


def _label_cell_problems(
    paths: dict[str, list[Path]], spec: ColumnSpec, schema: LabelSchema
) -> tuple[list[str], dict[str, int]]:
    """Every label cell of every file checked against the schema (a validation or test file
    may not bring a label that train lacks); and each label's positives in train."""
    problems: list[str] = []
    train_positives = dict.fromkeys(schema.label_names, 0)
    for split, split_paths in paths.items():
        known = None if split == "train" else set(schema.label_names)
        for p in split_paths:
            file_problems, positives = check_label_cells(p, spec, schema, known)
            problems += file_problems
            if split == "train":
                for name, count in positives.items():
                    train_positives[name] += count
    return problems, train_positives
