"""Label sets nobody tuned on: every Debtag of the debian-tags rows, and disjoint sets of them.

    python benchmarks/debtags.py rebuild            # Debian's archive -> data/debian-tags/tags.csv.gz (checked)
    python benchmarks/debtags.py write interface outputs/label-sets/interface   # one set as train.py's CSVs
    python benchmarks/debtags.py tfidf --json outputs/label_sets_tfidf.json     # TF-IDF on every set

The debian-tags rows (`benchmarks/data/debian-tags/`) carry ten Debtags. `rebuild` finds
each row's package in Debian 12 "bookworm" main (the amd64 Packages index and its English
translations, from deb.debian.org, both checked against the signed InRelease and against
the SHA-256 recorded below) by its synopsis and long description, and writes all of its
tags to `tags.csv.gz`: the same rows, splits and texts, with every tag. Where several
packages share a description (arch-specific builds), the one whose tags agree with the
row's ten labels is taken, then the first by name. `label_sets.json` names `original`
(the ten tags the defaults were tuned on) and six sets of ten tags from other tag families,
disjoint from it and from each other; `many` is every tag with at least 20 positives over
the 6,751 rows (104).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import lzma
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from common import DEBIAN_TAGS, PACKED_DEBIAN_TAGS, machine, print_table, write_json

ARCHIVE = "http://deb.debian.org/debian/dists/bookworm"
# The indexes the committed tags.csv.gz was built from (Debian 12.11's InRelease lists them).
INDEXES = {
    "main/binary-amd64/Packages.xz": "9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5",
    "main/i18n/Translation-en.xz": "a3d4a0bfd8e9242810b0885eda7c1a6e05dac15b333ddbaab03ba56f2dfa4bf0",
}
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
TAGS_FILE = PACKED_DEBIAN_TAGS / "tags.csv.gz"
LABEL_SETS = PACKED_DEBIAN_TAGS / "label_sets.json"
SPLITS = ("train", "validation", "test")
MANY_MIN_POSITIVES = 20


def fetch(name: str, folder: Path) -> Path:
    """Download `name` from the archive into `folder`."""
    target = folder / name.replace("/", "_")
    with urllib.request.urlopen(f"{ARCHIVE}/{name}", timeout=120) as response:
        target.write_bytes(response.read())
    return target


def verified_indexes(folder: Path, accept_new: bool) -> dict[str, Path]:
    """The two indexes, each checked against the signed InRelease and the recorded SHA-256."""
    release = fetch("InRelease", folder)
    if KEYRING.exists():
        subprocess.run(["gpgv", "--keyring", str(KEYRING), str(release)], check=True, capture_output=True)
    listed = {
        parts[2]: parts[0]
        for line in release.read_text(encoding="utf-8").splitlines()
        if len(parts := line.split()) == 3 and len(parts[0]) == 64
    }
    paths = {}
    for name, recorded in INDEXES.items():
        path = fetch(name, folder)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != listed.get(name):
            sys.exit(f"{name}: SHA-256 {digest} is not the one the InRelease lists")
        if digest != recorded and not accept_new:
            sys.exit(
                f"{name}: Debian published a new index ({digest}, recorded {recorded}); pass "
                "--accept-new-index to rebuild the tags from it (results will differ a little)"
            )
        paths[name] = path
    return paths


def stanzas(path: Path):
    """The fields of each stanza of a Debian control file (continuation lines kept)."""
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            yield fields


def normalised(text: str) -> str:
    """A description's words, without its layout (the CSV dropped the indentation and ' .' lines)."""
    return " ".join(word for word in text.split() if word != ".")


def packages_by_description(indexes: dict[str, Path]) -> dict[tuple[str, str], list[tuple[str, list[str]]]]:
    """(synopsis, long description) -> [(package, its tags)], from the Packages index and translations."""
    english = {
        s["Description-md5"]: s["Description-en"]
        for s in stanzas(indexes["main/i18n/Translation-en.xz"])
        if "Description-md5" in s
    }
    found = defaultdict(list)
    for package in stanzas(indexes["main/binary-amd64/Packages.xz"]):
        description = english.get(package.get("Description-md5", ""))
        if description is None:
            continue
        synopsis, _, long = description.partition("\n")
        tags = sorted(t.strip() for t in package.get("Tag", "").replace("\n", " ").split(",") if t.strip())
        found[(normalised(synopsis), normalised(long))].append((package["Package"], tags))
    return found


def read_split(split: str) -> list[dict[str, str]]:
    csv.field_size_limit(2**31 - 1)
    with open(DEBIAN_TAGS / f"{split}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def rebuild(accept_new: bool, work: Path) -> None:
    """Match every debian-tags row to its package and write tags.csv.gz (deterministic bytes)."""
    work.mkdir(parents=True, exist_ok=True)
    by_description = packages_by_description(verified_indexes(work, accept_new))
    ten = json.loads((DEBIAN_TAGS / "labels.json").read_text(encoding="utf-8"))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["split", "row", "package", "tags"])
    unmatched = []
    for split in SPLITS:
        for number, row in enumerate(read_split(split), start=1):
            candidates = by_description.get((normalised(row["casePart1"]), normalised(row["casePart2"])), [])
            if not candidates:
                unmatched.append(f"{split} row {number}")
                continue
            known = {ten[column] for column in ten if row[column] == "1"}

            def disagreement(candidate: tuple[str, list[str]], known: set[str] = known) -> tuple[int, str]:
                in_ten = set(candidate[1]) & set(ten.values())
                return len(in_ten ^ known), candidate[0]

            package, tags = min(candidates, key=disagreement)
            writer.writerow([split, number, package, "|".join(tags)])
    if unmatched:
        sys.exit(f"{len(unmatched)} rows match no package: {unmatched[:10]}")
    data = out.getvalue().encode("utf-8")
    TAGS_FILE.write_bytes(gzip.compress(data, mtime=0))
    print(f"wrote {TAGS_FILE}: SHA-256 of its CSV {hashlib.sha256(data).hexdigest()}")


def row_tags() -> dict[str, list[list[str]]]:
    """Each split's rows' tags, in row order."""
    with gzip.open(TAGS_FILE, "rt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    tags: dict[str, list[list[str]]] = {split: [] for split in SPLITS}
    for row in rows:
        tags[row["split"]].append(row["tags"].split("|") if row["tags"] else [])
    return tags


def label_sets() -> dict[str, list[str]]:
    """The named label sets; `many` is computed: every tag with MANY_MIN_POSITIVES or more positives."""
    sets = json.loads(LABEL_SETS.read_text(encoding="utf-8"))
    counts: dict[str, int] = defaultdict(int)
    for rows in row_tags().values():
        for tags in rows:
            for tag in tags:
                counts[tag] += 1
    sets["many"] = sorted(t for t, c in counts.items() if c >= MANY_MIN_POSITIVES)
    return sets


def write_label_set(name: str, out: Path) -> Path:
    """train/validation/test.csv (casePart1, casePart2, label1..N) and labels.json for one set."""
    tags = label_sets()[name]
    columns = [f"label{i}" for i in range(1, len(tags) + 1)]
    out.mkdir(parents=True, exist_ok=True)
    for split, rows_tags in row_tags().items():
        rows = read_split(split)
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["casePart1", "casePart2", *columns])
            for row, row_tags_ in zip(rows, rows_tags, strict=True):
                held = set(row_tags_)
                writer.writerow([row["casePart1"], row["casePart2"], *(int(t in held) for t in tags)])
    (out / "labels.json").write_text(json.dumps(dict(zip(columns, tags, strict=True)), indent=1) + "\n")
    return out


def tfidf_table(names: list[str]) -> list[dict]:
    """TF-IDF + logistic regression per label (the hybrid's half, decided at 0.5) on each set's test rows."""
    import numpy as np
    from sklearn.metrics import f1_score

    from multilabel.text import tfidf

    splits = {split: read_split(split) for split in ("train", "test")}
    texts = {s: [f"{r['casePart1']}\n{r['casePart2']}" for r in rows] for s, rows in splits.items()}
    all_tags, sets, table = row_tags(), label_sets(), []
    for name in names:
        tags = sets[name]
        truth = {s: np.array([[int(t in set(row)) for t in tags] for row in all_tags[s]]) for s in splits}
        began = time.perf_counter()
        model = tfidf.fit(texts["train"], truth["train"])
        predicted = (model.probabilities(texts["test"]) >= 0.5).astype(int)
        share = truth["train"].mean(axis=0)
        table.append(
            {
                "set": name,
                "labels": len(tags),
                "rarest_positive_share": f"{100 * share.min():.1f}%",
                "labels_under_3pct": int((share < 0.03).sum()),
                "test_positives_min": int(truth["test"].sum(axis=0).min()),
                "micro_f1": float(f1_score(truth["test"], predicted, average="micro", zero_division=0)),
                "macro_f1": float(f1_score(truth["test"], predicted, average="macro", zero_division=0)),
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("rebuild", help="rebuild tags.csv.gz from Debian's archive")
    build.add_argument(
        "--accept-new-index", action="store_true", help="build from a newer index than recorded"
    )
    build.add_argument("--work", type=Path, default=Path("outputs/debian-archive"))
    write = sub.add_parser("write", help="write one label set as train.py's CSVs")
    write.add_argument("name")
    write.add_argument("out", type=Path)
    table = sub.add_parser("tfidf", help="TF-IDF micro/macro-F1 on every label set's test rows")
    table.add_argument("--sets", nargs="*", help="the sets (default: all)")
    table.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.command == "rebuild":
        rebuild(args.accept_new_index, args.work)
    elif args.command == "write":
        print(write_label_set(args.name, args.out))
    else:
        rows = tfidf_table(args.sets or list(label_sets()))
        print_table(rows, list(rows[0]))
        write_json(args.json, {"machine": machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
