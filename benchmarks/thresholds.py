"""Threshold strategies on a fixed model's scores: which decisions hold on rows nobody tuned on.

Takes a finished run's `validation_predictions.csv` and `test_predictions.csv` (its
output-data directory) and the labelled CSVs they were predicted from, pools the two
sets' probabilities and labels, and re-splits them many times at random into a tuning
part (the validation set's size, or --tune-rows) and an evaluation part (the rest). On each
split every strategy (`multilabel.training.metrics.THRESHOLD_STRATEGIES`) fits its thresholds on
the tuning part, and its micro- and macro-F1 are measured on the evaluation part. The
model is fixed: only the thresholds vary.

    python benchmarks/thresholds.py --predictions outputs/int8/minilm/data \
        --validation benchmarks/data/debian-tags/validation.csv \
        --test benchmarks/data/debian-tags/test.csv --json outputs/thresholds.json

`--tfidf TRAIN_CSV` adds a second model on the same rows: TF-IDF + one-vs-rest logistic
regression (benchmarks/quality.py's baseline) fitted on TRAIN_CSV.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from multilabel.training import metrics

PROB_PREFIX = "prob_"


def read_csv(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(2**31 - 1)
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_probabilities(path: Path) -> tuple[list[str], np.ndarray]:
    """A predictions file's label names (its prob_ columns, in order) and probabilities, in row order."""
    rows = read_csv(path)
    names = [c.removeprefix(PROB_PREFIX) for c in rows[0] if c.startswith(PROB_PREFIX)]
    rows.sort(key=lambda r: int(r["row"]))
    return names, np.array([[float(r[PROB_PREFIX + n]) for n in names] for r in rows])


def read_labels(path: Path, columns: list[str] | None) -> tuple[list[str], np.ndarray]:
    """The 0/1 label columns (default: every column named label*) of a labelled CSV."""
    rows = read_csv(path)
    columns = columns or [c for c in rows[0] if c.startswith("label")]
    return columns, np.array([[int(float(r[c] or 0)) for c in columns] for r in rows], dtype=np.int64)


def texts(path: Path, columns: tuple[str, str] = ("casePart1", "casePart2")) -> list[str]:
    return ["\n".join(r.get(c, "") or "" for c in columns) for r in read_csv(path)]


def tfidf_probabilities(train: Path, files: list[Path], label_columns: list[str]) -> list[np.ndarray]:
    """TF-IDF word 1-2 grams + one-vs-rest logistic regression (class_weight="balanced"), fitted on `train`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    _, train_y = read_labels(train, label_columns)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    model = OneVsRestClassifier(LogisticRegression(class_weight="balanced", max_iter=2000))
    model.fit(vectorizer.fit_transform(texts(train)), train_y)
    return [model.predict_proba(vectorizer.transform(texts(f))) for f in files]


def strategies(prior_positives: list[float]) -> dict[str, dict]:
    """Row name -> choose_thresholds keyword arguments: every strategy, SHRUNK at each prior."""
    out = {}
    for name in (metrics.PER_LABEL, metrics.GLOBAL, metrics.FIXED):
        out[name] = {"strategy": name}
    for k in prior_positives:
        suffix = "" if k == metrics.SHRINK_POSITIVES else f" (k={k:g})"
        out[metrics.SHRUNK + suffix] = {"strategy": metrics.SHRUNK, "prior_positives": k}
    # Anchored at each label's share of the tuning rows (no training file here).
    out[metrics.PREVALENCE] = {"strategy": metrics.PREVALENCE}
    out[metrics.CROSS_VALIDATED] = {"strategy": metrics.CROSS_VALIDATED}
    return out


def resplit(
    probs: np.ndarray,
    labels: np.ndarray,
    tune_rows: int,
    splits: int,
    seed: int,
    prior_positives: list[float],
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, int]]:
    """Per strategy, micro/macro-F1 on the evaluation part of each re-split; how often cv chose each candidate."""
    rng = np.random.default_rng(seed)
    rows = strategies(prior_positives)
    scores = {name: {"micro": np.zeros(splits), "macro": np.zeros(splits)} for name in rows}
    chosen = dict.fromkeys(metrics.CANDIDATES, 0)
    for i in range(splits):
        order = rng.permutation(len(labels))
        tune, held = order[:tune_rows], order[tune_rows:]
        for name, kwargs in rows.items():
            choice = metrics.choose_thresholds(probs[tune], labels[tune], seed=i, **kwargs)
            if kwargs["strategy"] == metrics.CROSS_VALIDATED:
                chosen[choice.applied] += 1
            result = metrics.micro_macro_f1(labels[held], metrics.decide(probs[held], choice.thresholds))
            scores[name]["micro"][i] = result["micro"]
            scores[name]["macro"][i] = result["macro"]
    return scores, chosen


def table(scores: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """Mean ± sd per strategy, and its paired gain over per-label tuning (mean ± sd, share of splits won)."""
    base = scores[metrics.PER_LABEL]
    out = []
    for name, s in scores.items():
        row = {"strategy": name}
        for avg in ("micro", "macro"):
            gain = s[avg] - base[avg]
            row[f"{avg}_f1_mean"] = float(s[avg].mean())
            row[f"{avg}_f1_sd"] = float(s[avg].std(ddof=1))
            row[f"{avg}_gain_mean"] = float(gain.mean())
            row[f"{avg}_gain_sd"] = float(gain.std(ddof=1))
            row[f"{avg}_better_share"] = float((gain > 0).mean())
        out.append(row)
    return out


def markdown(rows: list[dict]) -> list[str]:
    lines = [
        "| strategy | micro-F1 | macro-F1 | micro gain vs per-label | macro gain vs per-label | splits better (micro / macro) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['strategy']} | {r['micro_f1_mean']:.4f} ± {r['micro_f1_sd']:.4f} "
            f"| {r['macro_f1_mean']:.4f} ± {r['macro_f1_sd']:.4f} "
            f"| {100 * r['micro_gain_mean']:+.2f} ± {100 * r['micro_gain_sd']:.2f} "
            f"| {100 * r['macro_gain_mean']:+.2f} ± {100 * r['macro_gain_sd']:.2f} "
            f"| {100 * r['micro_better_share']:.0f} % / {100 * r['macro_better_share']:.0f} % |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=Path, required=True, help="a run's output-data directory")
    parser.add_argument("--validation", type=Path, required=True, help="the labelled validation CSV")
    parser.add_argument("--test", type=Path, required=True, help="the labelled test CSV")
    parser.add_argument("--label-columns", default=None, help="comma-separated; default: every label* column")
    parser.add_argument(
        "--tune-rows",
        type=int,
        default=None,
        help="rows of each tuning part (default: the validation file's); fewer simulate a smaller validation set",
    )
    parser.add_argument("--splits", type=int, default=200, help="random re-splits (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--prior-positives",
        default=str(metrics.SHRINK_POSITIVES),
        help=f"comma-separated prior strengths of '{metrics.SHRUNK}' to compare "
        f"(default {metrics.SHRINK_POSITIVES}, the library's)",
    )
    parser.add_argument(
        "--tfidf", type=Path, default=None, help="also TF-IDF + LR fitted on this training CSV"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    label_columns = args.label_columns.split(",") if args.label_columns else None
    priors = [float(k) for k in args.prior_positives.split(",")]
    columns, val_y = read_labels(args.validation, label_columns)
    _, test_y = read_labels(args.test, columns)
    models = {}
    names, val_p = read_probabilities(args.predictions / "validation_predictions.csv")
    _, test_p = read_probabilities(args.predictions / "test_predictions.csv")
    for split, p, y in (("validation", val_p, val_y), ("test", test_p, test_y)):
        if p.shape != y.shape:
            parser.error(f"{split}: predictions {p.shape} and labels {y.shape} (rows, labels) differ")
    models[f"run {args.predictions}"] = (val_p, test_p)
    if args.tfidf:
        models[f"TF-IDF + LR fitted on {args.tfidf}"] = tuple(
            tfidf_probabilities(args.tfidf, [args.validation, args.test], columns)
        )
    labels = np.concatenate([val_y, test_y])
    tune_rows = args.tune_rows or len(val_y)
    if not 0 < tune_rows < len(labels):
        parser.error(f"--tune-rows: expected 1 to {len(labels) - 1}, found {tune_rows}")
    print(
        f"{tune_rows} tuning + {len(labels) - tune_rows} evaluation rows, {args.splits} re-splits (seed {args.seed}); "
        f"labels {names} <- columns {columns}; positives in the pool: {labels.sum(axis=0).tolist()}"
    )
    payload = {
        "splits": args.splits,
        "seed": args.seed,
        "tune_rows": tune_rows,
        "eval_rows": len(labels) - tune_rows,
    }
    payload["models"] = []
    for model, (v, t) in models.items():
        began = time.perf_counter()
        scores, chosen = resplit(np.concatenate([v, t]), labels, tune_rows, args.splits, args.seed, priors)
        rows = table(scores)
        print(f"\n## {model} ({time.perf_counter() - began:.1f} s); cv chose: {chosen}\n")
        print("\n".join(markdown(rows)))
        payload["models"].append({"model": model, "rows": rows, "cv_chose": chosen})
    if args.json:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
