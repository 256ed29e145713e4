"""Write data/tickets/: the bundled sample in the shape of a user's own export.

    python scripts/make_tickets.py

The same 300 / 100 / 100 Debian packages as data/*.csv, laid out as a help-desk export
often is: an id column, a subject (left empty in every fourth row), a body, and one tags
column holding the row's label names joined by '|' (empty for a row without labels).
train.py reads it as it is:

    python train.py --train_file data/tickets/train.csv --validation_file data/tickets/validation.csv \\
        --text_column_names subject,body --label_column_names tags --label_separator '|' \\
        --id_column ticket_id

Deterministic: running it again rewrites the same bytes (tests/test_tickets.py checks it).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
HEADER = ["ticket_id", "subject", "body", "tags"]


def ticket_rows(source: Path, labels: dict[str, str], first_id: int) -> list[list[str]]:
    """One ticket per sample row: id, subject (empty every fourth row), body, joined tags."""
    with open(source, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    tickets = []
    for number, row in enumerate(rows):
        tags = "|".join(name for column, name in labels.items() if row[column] == "1")
        subject = "" if number % 4 == 3 else row["casePart1"]
        tickets.append([f"T-{first_id + number:05d}", subject, row["casePart2"], tags])
    return tickets


def main() -> None:
    labels = json.loads((DATA / "labels.json").read_text(encoding="utf-8"))
    out = DATA / "tickets"
    out.mkdir(exist_ok=True)
    first_id = 1
    for split in ("train", "validation", "test"):
        rows = ticket_rows(DATA / f"{split}.csv", labels, first_id)
        first_id += len(rows)
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(HEADER)
            writer.writerows(rows)


if __name__ == "__main__":
    main()
