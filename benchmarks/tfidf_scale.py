"""The hybrid's TF-IDF half at scale: fit time, peak memory and the saved model's size.

train.py's hybrid (`--hybrid auto`, the default) fits TF-IDF + one logistic regression per
label on the training rows before the encoder trains. This measures that fit (`multilabel.text.tfidf.fit`, the
code train.py runs) on N training rows of a Debtags label set, each size in a fresh process
so that its peak resident memory is its own, with the size of `tfidf.npz` and the numpy
scoring time of the endpoint's side.

The N rows are made from the set's training split: row k joins the first text of one random
record with the second text of another, and carries both records' tags. So the rows are
distinct and the labels as learnable as in the real set, but the vocabulary is the real
set's (plus the word pairs across each join): a corpus with a larger vocabulary holds more
distinct terms while the vectoriser counts them (the 200,000-term cap bounds what is kept,
not what is counted).

    python benchmarks/tfidf_scale.py --rows 20000 100000 300000 --sets original many \\
        --json outputs/tfidf_scale.json
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine, print_table, write_json
from debtags import write_label_set
from label_sets import read_set

from multilabel.text import tfidf

SCORED = 1000  # records scored with numpy, as the endpoint scores them


def synthetic_rows(
    texts: list[str], labels: np.ndarray, rows: int, seed: int = 0
) -> tuple[dict[str, list[str]], np.ndarray]:
    """`rows` training rows (casePart1, casePart2): one record's first text with another's
    second, and both records' tags."""
    rng = random.Random(seed)
    parts = [[*text.split("\n", 1), ""] for text in texts]
    first = [rng.randrange(len(texts)) for _ in range(rows)]
    second = [rng.randrange(len(texts)) for _ in range(rows)]
    columns = {"casePart1": [parts[i][0] for i in first], "casePart2": [parts[j][1] for j in second]}
    return columns, labels[first] | labels[second]


def loaded(columns: dict[str, list[str]], labels: np.ndarray, folder: Path):
    """The rows as train.py holds them: a CSV in the default schema, validated and loaded into
    an Arrow-backed, memory-mapped `datasets.Dataset` by train.py's own functions."""
    from multilabel.data.dataset import load_split
    from multilabel.data.schema import ColumnSpec, validate_files

    path = folder / "train.csv"
    names = [f"label{k}" for k in range(1, labels.shape[1] + 1)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*columns, *names])
        for k, texts in enumerate(zip(*columns.values(), strict=True)):  # row by row: bounded memory
            writer.writerow([*texts, *labels[k].tolist()])
    spec = ColumnSpec()
    schema = validate_files({"train": path}, spec)
    return load_split(path, spec, schema, cache_dir=str(folder / "cache")), spec


def measure(name: str, rows: int, train_step: bool = False) -> dict:
    """Fit, save and score the TF-IDF half on `rows` synthetic rows of label set `name` (in this process)."""
    with tempfile.TemporaryDirectory() as tmp:
        columns, texts, labels = read_set(write_label_set(name, Path(tmp) / name))
        train_columns, train_labels = synthetic_rows(texts["train"], labels["train"], rows)
        if train_step:  # train.py's step (pipeline.fit_tfidf) on the rows as train.py loads them
            from multilabel.data.dataset import label_matrix
            from multilabel.training.pipeline import fit_tfidf

            dataset, spec = loaded(train_columns, train_labels, Path(tmp))
            del train_columns
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            began = time.perf_counter()
            model = fit_tfidf({"train": dataset}, spec, label_matrix(dataset))
        else:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            began = time.perf_counter()
            model = tfidf.fit(tfidf.column_texts(train_columns, list(train_columns)), train_labels)
        fit_seconds = time.perf_counter() - began
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        saved = model.save(tmp)
        began = time.perf_counter()
        model.probabilities(texts["test"][:SCORED])
        score_ms = (time.perf_counter() - began) * 1000 / min(SCORED, len(texts["test"]))
        return {
            "set": name,
            "labels": len(columns),
            "rows": rows,
            "fitted_on": min(rows, tfidf.MAX_FIT_ROWS) if train_step else rows,
            "terms": len(model.terms),
            "fit_s": round(fit_seconds, 1),
            "rows_per_s": round(rows / fit_seconds),
            "peak_rss_mb": round(peak),
            "rss_before_fit_mb": round(before),
            "npz_mb": round(saved.stat().st_size / 2**20, 1),
            "coef_mb": round(model.coef.nbytes / 2**20, 1),
            "score_ms_per_record": round(score_ms, 3),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--sets", nargs="+", default=["original", "many"])
    parser.add_argument(
        "--train-step",
        action="store_true",
        help="through train.py's step (pipeline.fit_tfidf), which fits on at most tfidf.MAX_FIT_ROWS rows",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", nargs=2, metavar=("SET", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child process: one measurement as a JSON line
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.train_step)))
        return 0
    results = []
    for name in args.sets:
        for rows in args.rows:
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    name,
                    str(rows),
                    *(["--train-step"] if args.train_step else []),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
            write_json(args.json, {"machine": machine(), "results": results})
    print_table(results, list(results[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
