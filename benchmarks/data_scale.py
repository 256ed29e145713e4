"""Validation, loading and tokenisation at scale: rows per second and peak memory.

Writes a CSV of N rows in the default schema by resampling the debian-tags data, then
runs train.py's own steps on it: validate (streaming, standard library), load into an
Arrow-backed, memory-mapped `datasets.Dataset`, and tokenise the text pairs. Peak
resident memory of the process is reported after each step.

    python benchmarks/data_scale.py --rows 1000000 --json outputs/data_scale.json
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from common import DEBIAN_TAGS, ROOT, machine, print_table, write_json


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_resampled(source: Path, out: Path, rows: int, seed: int = 0) -> None:
    csv.field_size_limit(2**31 - 1)
    with open(source, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        pool = list(reader)
    rng = random.Random(seed)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for _ in range(rows):
            writer.writerow(rng.choice(pool))


def tokenizer_for_benchmark(work: Path):
    from transformers import AutoTokenizer

    try:
        from common import pretrained_encoder

        return AutoTokenizer.from_pretrained(pretrained_encoder())
    except ImportError:  # without the MiniLM package: the sample data's tiny BPE tokenizer
        from tests.support.tiny_model import build_tiny_roberta

        return AutoTokenizer.from_pretrained(build_tiny_roberta(work / "tiny", [ROOT / "data" / "train.csv"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--num-proc", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from multilabel.data.dataset import load_split, tokenize
    from multilabel.data.schema import ColumnSpec, validate_files

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "big.csv"
        began = time.perf_counter()
        write_resampled(DEBIAN_TAGS / "train.csv", path, args.rows)
        size_mb = path.stat().st_size / 2**20
        print(f"wrote {args.rows} rows, {size_mb:.0f} MiB, in {time.perf_counter() - began:.0f}s")
        tokenizer = tokenizer_for_benchmark(work)
        spec = ColumnSpec()

        def step(name, fn):
            began = time.perf_counter()
            result = fn()
            seconds = time.perf_counter() - began
            rows.append(
                {
                    "step": name,
                    "seconds": round(seconds, 1),
                    "rows_per_second": round(args.rows / seconds),
                    "peak_rss_mb": round(peak_rss_mb()),
                }
            )
            return result

        schema = step("validate", lambda: validate_files({"train": path}, spec))
        dataset = step("load (Arrow)", lambda: load_split(path, spec, schema, cache_dir=str(work / "cache")))
        step(
            "tokenise",
            lambda: tokenize(
                dataset, tokenizer, spec.text_columns, args.max_seq_length, "longest_first", args.num_proc
            ),
        )
    print_table(rows, ["step", "seconds", "rows_per_second", "peak_rss_mb"])
    write_json(
        args.json,
        {
            "machine": machine(),
            "rows": args.rows,
            "csv_mib": round(size_mb),
            "steps": rows,
            "tokenizer": type(tokenizer).__name__,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
