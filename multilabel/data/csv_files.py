"""Reading the input CSV files: which files a split holds, their header, their records.

One reader for validation (`schema`) and loading (`data`), so what was checked is exactly
what is trained on. Problems reading a file are `DataValidationError`s that name the file
and the line. Standard library only.
"""

from __future__ import annotations

import codecs
import csv
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from multilabel.core.errors import DataValidationError

DEFAULT_ENCODING = "utf-8"
# Long descriptions are common; the csv module's default 128 KiB cap is not a data rule.
FIELD_SIZE_LIMIT = min(sys.maxsize, 2**31 - 1)


def allow_long_fields() -> None:
    """Lift the csv module's field size cap (process-wide) to FIELD_SIZE_LIMIT."""
    csv.field_size_limit(FIELD_SIZE_LIMIT)


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


def _decoding_problem(path: Path, encoding: str, error: UnicodeDecodeError) -> str:
    """Where `path` first fails to decode (line and byte), and how to fix it."""
    decoder = codecs.getincrementaldecoder(_codec(encoding))()
    place = f": {error.reason}"
    with open(path, "rb") as fh:
        for line_number, line in enumerate(fh, start=1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as err:
                bad = err.object[err.start : err.end]
                place = f", line {line_number}: byte 0x{bad.hex()} (byte {err.start + 1} of the line)"
                break
    return (
        f"{path}{place} is not valid {encoding}; save the file as UTF-8, or pass its encoding "
        "with --encoding (for example --encoding cp1252 for Windows Western European text)"
    )


def _codec(encoding: str) -> str:
    """The codec to open CSVs with: UTF-8 accepts (and drops) a byte order mark."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


@contextmanager
def open_csv(path: Path, encoding: str = DEFAULT_ENCODING) -> Iterator[Iterator[list[str]]]:
    """A csv reader over `path`, fields of any length; undecodable bytes become a
    `DataValidationError` naming the line."""
    allow_long_fields()
    reader = None
    try:
        with open(path, newline="", encoding=_codec(encoding)) as fh:
            reader = csv.reader(fh)
            yield reader
    except UnicodeDecodeError as err:
        raise DataValidationError([_decoding_problem(path, encoding, err)]) from None
    except csv.Error as err:
        line = f", line {reader.line_num}" if reader else ""
        raise DataValidationError([f"{path}{line}: not a readable CSV file: {err}"]) from None


def read_header(path: Path, encoding: str = DEFAULT_ENCODING) -> list[str]:
    """The header row of a CSV file ([] for an empty file)."""
    with open_csv(path, encoding) as reader:
        return next(reader, [])


def iter_records(
    path: Path, columns: Sequence[str], encoding: str = DEFAULT_ENCODING
) -> Iterator[tuple[int, int, list[str] | None]]:
    """Yield (row number, file line, the row's cells in `columns` order) for each data row.

    Row numbers count data rows from 1 (the header is row 0). A row whose field count
    differs from the header's yields ``None`` as its cells, for the caller to report.
    """
    with open_csv(path, encoding) as reader:
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
