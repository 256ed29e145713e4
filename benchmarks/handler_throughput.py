"""Endpoint handler throughput against a bare forward pass, measured side by side.

For requests of 1, 8 and 32 records, times the whole handler path (JSON body ->
input_fn -> predict_fn -> output_fn -> JSON text) and a bare `model(**batch)` on the
same records, tokenised and padded beforehand, under `torch.inference_mode()`. The
ratio is handler records/s over bare records/s (1.0 = no overhead).

    python benchmarks/handler_throughput.py [--model-dir DIR] [--json out.json]

Without --model-dir it builds a RoBERTa of 4 layers, 256 wide (random weights, the
sample data's tokenizer): big enough that the forward pass dominates as it does for a
real model, small enough for a laptop CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, root_script

from multilabel.core.artifact import ClassifierConfig
from multilabel.text.pair_encoding import encode_pairs, pad_batch

inference = root_script("inference")  # the endpoint's handler, as the toolkit imports it

SIZES = (1, 8, 32)


def build_model_dir(out: Path, max_seq_length: int) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.support.tiny_model import build_tiny_roberta

    base = build_tiny_roberta(
        out / "base",
        [ROOT / "data" / "train.csv"],
        hidden_size=256,
        layers=4,
        max_positions=max_seq_length + 2,
    )
    labels = [f"label{i}" for i in range(1, 11)]
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=10,
        problem_type="multi_label_classification",
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    model_dir = out / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(model_dir)
    ClassifierConfig(("casePart1", "casePart2"), dict.fromkeys(labels, 0.5), max_seq_length).save(model_dir)
    return model_dir


def records(n: int) -> list[dict[str, str]]:
    with open(ROOT / "data" / "test.csv", newline="", encoding="utf-8") as fh:
        rows = [{"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in csv.DictReader(fh)]
    return (rows * (n // len(rows) + 1))[:n]


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(model_dir: Path, repeats: int) -> list[dict]:
    classifier = inference.model_fn(str(model_dir))
    config = classifier.config
    rows = []
    for size in SIZES:
        batch_records = records(size)
        body = json.dumps({"inputs": batch_records})

        def handler(body: str = body) -> str:
            request = inference.input_fn(body, "application/json")
            return inference.output_fn(inference.predict_fn(request, classifier), "application/json")

        features, _ = encode_pairs(
            classifier.tokenizer,
            [r["casePart1"] for r in batch_records],
            [r["casePart2"] for r in batch_records],
            config.max_seq_length,
        )
        batch = pad_batch(features, classifier.tokenizer.pad_token_id, 0, size)

        def bare(batch: dict = batch) -> torch.Tensor:
            with torch.inference_mode():
                return classifier.model(**batch).logits

        handler_s, bare_s = best_seconds(handler, repeats), best_seconds(bare, repeats)
        rows.append(
            {
                "records": size,
                "handler_records_per_s": round(size / handler_s, 1),
                "bare_forward_records_per_s": round(size / bare_s, 1),
                "ratio": round(bare_s / handler_s, 3),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or build_model_dir(Path(tmp), args.max_seq_length)
        rows = measure(model_dir, args.repeats)
    print(f"{'records':>8} {'handler rec/s':>14} {'bare rec/s':>11} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['records']:>8} {r['handler_records_per_s']:>14} {r['bare_forward_records_per_s']:>11} {r['ratio']:>6}"
        )
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
