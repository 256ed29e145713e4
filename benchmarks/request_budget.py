"""How long one request at the endpoint's token budget holds a worker, for a roberta-base-size model.

The budget (`MULTILABEL_MAX_TOKENS`) counts a request's tokens after truncation; the
endpoint refuses a request above it, so that one request cannot hold a worker past
SageMaker's 60 s invocation limit. This times the whole handler path (JSON body ->
input_fn -> predict_fn -> output_fn) for requests of max-length records (the most
expensive tokens: attention grows with length) filling budgets of 1,024 to 8,192
tokens, and for one record.

    python benchmarks/request_budget.py [--budgets 1024 2048 4096 8192] [--json out.json]

The model has RoBERTa-base's shape (`RobertaConfig()` defaults: 12 layers, 768 wide,
3,072 feed-forward, 125M parameters) with random weights, which cost the same time as
trained ones; the tokenizer is the sample data's, built by tests/support/tiny_model.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, root_script

from multilabel.core.artifact import ClassifierConfig
from multilabel.serving.classifier import Classifier

inference = root_script("inference")  # the endpoint's handler, as the toolkit imports it

LABELS = [f"label{i}" for i in range(1, 11)]


def build_classifier(tmp: Path, max_seq_length: int) -> Classifier:
    """A roberta-base-size classifier with random weights, as `model_fn` would return it."""
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    from tests.support.tiny_model import build_tiny_roberta

    base = build_tiny_roberta(tmp / "tokenizer", [ROOT / "data" / "train.csv"], max_positions=514)
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = RobertaConfig(
        num_labels=len(LABELS),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(config).eval()
    serving = ClassifierConfig(("casePart1", "casePart2"), dict.fromkeys(LABELS, 0.5), max_seq_length)
    return Classifier(model, tokenizer, serving, LABELS, torch.device("cpu"), max_tokens=10**9)


def long_records(n: int) -> list[dict[str, str]]:
    """`n` records whose text pair is far longer than any max_seq_length: cut to exactly it."""
    with open(ROOT / "data" / "test.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    text = " ".join(r["casePart1"] + " " + r["casePart2"] for r in rows[:20])
    return [{"casePart1": text, "casePart2": text} for _ in range(n)]


def time_request(
    classifier: Classifier, records: list[dict[str, str]], repeats: int
) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds of all this process's threads) for the handler path, per repeat.

    On a machine shared with other work the wall time is inflated; CPU seconds divided by
    the cores used estimates the wall time the same request takes on idle cores.
    """
    body = json.dumps({"inputs": records})
    times = []
    for _ in range(repeats):
        began, cpu_began = time.perf_counter(), time.process_time()
        request = inference.input_fn(body, "application/json")
        inference.output_fn(inference.predict_fn(request, classifier), "application/json")
        times.append((time.perf_counter() - began, time.process_time() - cpu_began))
    return times


def main() -> int:
    """Time requests at each budget and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        classifier = build_classifier(Path(tmp), args.max_seq_length)
    time_request(classifier, long_records(1), 1)  # warm-up
    lengths = {
        len(
            classifier.tokenizer(
                r["casePart1"], r["casePart2"], truncation=True, max_length=args.max_seq_length
            )["input_ids"]
        )
        for r in long_records(1)
    }
    assert lengths == {args.max_seq_length}, lengths  # every record costs exactly max_seq_length tokens
    rows = []
    for budget in [args.max_seq_length, *args.budgets]:
        records = long_records(budget // args.max_seq_length)
        times = time_request(classifier, records, args.repeats)
        wall, cpu = statistics.median(t for t, _ in times), statistics.median(c for _, c in times)
        rows.append(
            {
                "budget_tokens": budget,
                "records": len(records),
                "wall_s_median": round(wall, 2),
                "wall_s_max": round(max(t for t, _ in times), 2),
                "cpu_s_median": round(cpu, 2),
                "idle_wall_s_estimate": round(cpu / torch.get_num_threads(), 2),
            }
        )
        r = rows[-1]
        print(
            f"{budget:>6} tokens {len(records):>4} records: wall {r['wall_s_median']:>6} s "
            f"(max {r['wall_s_max']}), CPU {r['cpu_s_median']:>6} s, "
            f"on idle cores ~{r['idle_wall_s_estimate']} s",
            flush=True,
        )
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads",
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "max_seq_length": args.max_seq_length,
        "batch_size": classifier.batch_size,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
