"""CSV files -> `datasets.Dataset` -> tokenised features, plus the validation split.

Rows are read by the same parser that validated them (`csv_files.iter_records`), so what
was checked is exactly what is trained on. Datasets are written as Arrow files and
memory-mapped, so memory stays bounded however large the CSV is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Sequence, Value
from transformers import PreTrainedTokenizerBase

from multilabel.core.artifact import file_sha256
from multilabel.data.csv_files import iter_records, list_csv_files
from multilabel.data.schema import ColumnSpec, LabelSchema
from multilabel.text.pair_encoding import TruncationError, encode_pairs
from multilabel.text.windows import (
    ONE_WINDOW,
    WindowSettings,
    WindowStats,
    default_overlap,
    encode_windows,
    group_windows,
    plan_windows,
    token_lengths,
)

logger = logging.getLogger(__name__)

LABELS = "labels"


def _generate_rows(
    paths: list[str], spec: ColumnSpec, schema: LabelSchema, fingerprint: list[str]
) -> Iterator[dict]:
    """Rows of already validated files, labels as multi-hot floats.

    `fingerprint` (the SHA-256 of each file's content) only feeds `datasets`' cache
    key: a file replaced in place, even with the same size and mtime, is read afresh.
    """
    del fingerprint
    n_text, n_labels = len(spec.text_columns), len(schema.label_columns)
    ids = [spec.id_column] if spec.id_column else []
    columns = [*spec.text_columns, *schema.label_columns, *ids]
    for path in paths:
        for _, _, cells in iter_records(Path(path), columns, spec.encoding):
            row = dict(zip(spec.text_columns, cells[:n_text], strict=True))
            row[LABELS] = schema.encode(cells[n_text : n_text + n_labels])
            if ids:
                row[ids[0]] = cells[-1]
            yield row


def load_split(
    where: str | os.PathLike, spec: ColumnSpec, schema: LabelSchema, cache_dir: str | None = None
) -> Dataset:
    """One split (a CSV file or a channel directory of CSVs) as a Dataset with float labels."""
    paths = [str(p) for p in list_csv_files(where)]
    ids = {spec.id_column: Value("string")} if spec.id_column else {}
    features = Features(
        {**{c: Value("string") for c in spec.text_columns}, LABELS: Sequence(Value("float32")), **ids}
    )
    dataset = Dataset.from_generator(
        _generate_rows,
        features=features,
        cache_dir=cache_dir,
        gen_kwargs={
            "paths": paths,
            "spec": spec,
            "schema": schema,
            "fingerprint": [file_sha256(p) for p in paths],
        },
    )
    logger.info("loaded %s: %d rows", where, len(dataset))
    return dataset


def label_matrix(dataset: Dataset) -> np.ndarray:
    """The multi-hot label matrix of a dataset, rows x labels."""
    return np.asarray(dataset.with_format("numpy")[LABELS], dtype=np.float32)


def stratified_split(dataset: Dataset, size: float, seed: int) -> tuple[Dataset, Dataset]:
    """A deterministic multi-label-stratified (train, validation) split."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    if not 0.0 < size < 1.0:
        raise ValueError(f"validation_split_size: expected a fraction in (0, 1), found {size}")
    labels = label_matrix(dataset)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed)
    # iterstrat refuses a single label column ("binary"); its complement makes it two.
    strata = np.hstack([labels, 1.0 - labels]) if labels.shape[1] == 1 else labels
    train_idx, val_idx = next(splitter.split(np.zeros(len(labels)), strata))
    logger.info(
        "no validation file: held out %d of %d training rows (%.0f%%, multi-label "
        "stratified, seed %d) for validation and threshold tuning",
        len(val_idx),
        len(labels),
        100 * size,
        seed,
    )
    return dataset.select(np.sort(train_idx)), dataset.select(np.sort(val_idx))


LENGTH_COLUMN = "length"


def tokenize(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    text_columns: tuple[str, ...],
    max_seq_length: int,
    truncation: str,
    num_proc: int | None = None,
    windows: WindowSettings = ONE_WINDOW,
) -> Dataset:
    """Tokenise the first text column as text and the second as text pair, unpadded.

    Padding happens per batch in the collator. Adds a `length` column (tokens per row),
    which the length-grouped sampler reads instead of decoding every row. With windows
    (`windows.enabled`), each row holds its record's windows (`windows.encode_windows`):
    every model input is a list of windows, and `length` counts the tokens of all of them.
    """
    if windows.enabled:
        return _tokenize_windows(dataset, tokenizer, text_columns, max_seq_length, windows)

    def encode(batch: dict, indices: list[int]) -> dict:
        pairs = batch[text_columns[1]] if len(text_columns) > 1 else None
        try:
            features, truncated = encode_pairs(
                tokenizer, batch[text_columns[0]], pairs, max_seq_length, truncation
            )
        except TruncationError as err:  # rows of the batch -> data rows, counted from 1
            raise TruncationError([indices[r] + 1 for r in err.rows], truncation, max_seq_length) from None
        lengths = [len(ids) for ids in features["input_ids"]]
        return {**features, LENGTH_COLUMN: lengths, "truncated": truncated}

    tokenised = dataset.map(
        encode,
        batched=True,
        with_indices=True,
        num_proc=num_proc,
        remove_columns=[c for c in dataset.column_names if c != LABELS],  # texts, ids
        desc="tokenising",
    )
    n_truncated = int(np.sum(tokenised.with_format("numpy")["truncated"]))
    logger.info(
        "%d of %d rows (%.1f%%) were truncated to max_seq_length=%d (%s)",
        n_truncated,
        len(tokenised),
        100 * n_truncated / max(len(tokenised), 1),
        max_seq_length,
        truncation,
    )
    return tokenised.remove_columns("truncated")


def _tokenize_windows(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    text_columns: tuple[str, ...],
    max_seq_length: int,
    windows: WindowSettings,
) -> Dataset:
    """`tokenize` with each row's record as a list of windows; logs what windowing dropped."""
    totals = WindowStats()

    def encode(batch: dict) -> dict:
        pairs = batch[text_columns[1]] if len(text_columns) > 1 else None
        features, counts, stats = encode_windows(
            tokenizer, batch[text_columns[0]], pairs, max_seq_length, windows.max_windows, windows.overlap
        )
        totals.add(stats)
        grouped = group_windows(features, counts)
        lengths = [sum(map(len, windows)) for windows in grouped["input_ids"]]
        return {**grouped, LENGTH_COLUMN: lengths}

    # In one process, so that the totals are counted (windowing is a tokenizer pass: fast).
    tokenised = dataset.map(
        encode,
        batched=True,
        remove_columns=[c for c in dataset.column_names if c != LABELS],  # texts, ids
        desc="tokenising windows",
        load_from_cache_file=False,
    )
    logger.info("%s", totals.summary(max_seq_length, windows.max_windows))
    return tokenised


LENGTH_SAMPLE = 20_000  # rows whose lengths the report measures (the first ones)
REPORTED_WINDOWS = (64, 128, 256, 512)  # window sizes the report compares, with the run's own


@dataclass
class LengthReport:
    """`length_report`'s lines: the lengths, then one line per window size (this run's too)."""

    lengths: str
    sizes: list[str] = field(default_factory=list)
    this_run: str = ""

    @property
    def lines(self) -> list[str]:
        """Every line, for the report."""
        return [self.lengths, *self.sizes]


def length_report(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    text_columns: tuple[str, ...],
    max_length: int,
    windows: WindowSettings,
    limit: int,
    sample: int = LENGTH_SAMPLE,
) -> LengthReport:
    """The texts' token lengths, and what each window size would drop.

    Per text column: median, 90th and 99th percentile and longest, in tokens. Per window
    size up to the model's `limit` (and this run's `max_length`): the share of records
    longer than one window, the share of all text tokens that truncation drops, and the
    share that windows drop (this run's `--max_windows`, or 8 to show what they would do).
    """
    rows = dataset.select(range(min(len(dataset), sample)))
    lengths = {column: np.array(token_lengths(tokenizer, list(rows[column]))) for column in text_columns}
    measured = (
        f"the first {len(rows)} of {len(dataset)} training rows"
        if len(rows) < len(dataset)
        else (f"{len(rows)} training rows")
    )
    report = LengthReport(
        f"text lengths in tokens ({measured}): "
        + "; ".join(
            f"{column} median {np.median(n):.0f}, 90th percentile {np.percentile(n, 90):.0f}, "
            f"99th {np.percentile(n, 99):.0f}, longest {n.max()}"
            for column, n in lengths.items()
        )
    )
    first = lengths[text_columns[0]]
    second = lengths[text_columns[1]] if len(text_columns) > 1 else None
    total = first + (second if second is not None else 0)
    cap = windows.max_windows if windows.enabled else 8
    specials = tokenizer.num_special_tokens_to_add(pair=second is not None)
    for size in sorted({s for s in REPORTED_WINDOWS if s <= limit} | {max_length}):
        room = size - specials
        overlap = windows.overlap if size == max_length and windows.enabled else default_overlap(size)
        dropped_by_windows = sum(
            plan_windows(int(a), None if second is None else int(second[i]), room, cap, overlap).dropped
            for i, a in enumerate(first)
        )
        line = (
            f"max_seq_length {size}{' (this run)' if size == max_length else ''}: "
            f"{np.mean(total > room):.1%} of records are longer; truncation drops "
            f"{np.maximum(total - room, 0).sum() / max(total.sum(), 1):.1%} of the text tokens, "
            f"--max_windows {cap} {dropped_by_windows / max(total.sum(), 1):.1%}"
        )
        report.sizes.append(line)
        if size == max_length:
            report.this_run = line
    return report
