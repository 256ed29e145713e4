"""The hybrid (train.py's default, `--hybrid auto`) on debian-tags, from runs train.py already made.

A run of the encoder alone (`--hybrid none`, as the benchmarks train) keeps its encoder's
probabilities per record in `validation_predictions.csv` and `test_predictions.csv`; this
script fits the TF-IDF model on the training rows once (`multilabel.text.tfidf.fit`, as
train.py does), then for each run scores on the test set, with thresholds chosen on
validation by train.py's default strategy (`metrics.choose_thresholds`): the encoder alone,
TF-IDF alone, and their blend at the weight train.py would choose
(`metrics.choose_blend_weight`). The same functions as train.py's, without retraining the
encoder; mean and spread over the runs at the end.

    python benchmarks/hybrid.py outputs/gpu/*/ --json outputs/hybrid.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from common import DEBIAN_TAGS, machine, print_table, write_json
from generalisation import probabilities, test_f1
from quality import read

from multilabel.core.threshold_strategies import DEFAULT_THRESHOLD_STRATEGY
from multilabel.text import tfidf
from multilabel.training import metrics

LABELS = [f"label{i}" for i in range(1, 11)]


def scored(validation: np.ndarray, test: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Test micro/macro-F1 at the thresholds train.py's default strategy chooses on validation."""
    f1 = test_f1(validation, test, labels, DEFAULT_THRESHOLD_STRATEGY, seed=0)
    return {"micro_f1": f1["micro"], "macro_f1": f1["macro"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", type=Path, nargs="+", help="train.py run folders (with data/*_predictions.csv)"
    )
    parser.add_argument("--data", type=Path, default=DEBIAN_TAGS, help="the runs' train/validation/test CSVs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    texts, labels = {}, {}
    for name in ("train", "validation", "test"):
        texts[name], rows = read(args.data / f"{name}.csv")  # records as train.py's TF-IDF reads them
        labels[name] = np.array(rows)
    model = tfidf.fit(texts["train"], labels["train"])
    other = {name: model.probabilities(texts[name]) for name in ("validation", "test")}
    at_half = metrics.micro_macro_f1(labels["test"], metrics.decide(other["test"], 0.5))
    rows = [
        {
            "run": "TF-IDF at 0.5 (benchmarks/quality.py's baseline)",
            "micro_f1": at_half["micro"],
            "macro_f1": at_half["macro"],
        },
        {"run": "TF-IDF, tuned thresholds", **scored(other["validation"], other["test"], labels)},
    ]
    for run in args.runs:
        encoder = {name: probabilities(run, name) for name in ("validation", "test")}
        weight, _ = metrics.choose_blend_weight(
            encoder["validation"], other["validation"], labels["validation"]
        )
        blended = {name: tfidf.blend(encoder[name], other[name], weight) for name in encoder}
        rows.append({"run": f"{run.name}: encoder", **scored(encoder["validation"], encoder["test"], labels)})
        rows.append(
            {
                "run": f"{run.name}: hybrid",
                "weight": weight,
                **scored(blended["validation"], blended["test"], labels),
            }
        )
    for kind in ("encoder", "hybrid"):
        chosen = [r for r in rows if r["run"].endswith(f": {kind}")]
        for key in ("micro_f1", "macro_f1"):
            values = [r[key] for r in chosen]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"{kind}: {key} mean {statistics.mean(values):.4f} +- {spread:.4f} over {len(values)} runs")
    print_table(rows, ["run", "weight", "micro_f1", "macro_f1"])
    write_json(args.json, {"machine": machine(), "terms": len(model.terms), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
