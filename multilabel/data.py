"""CSV files -> `datasets.Dataset` -> tokenised features, plus the validation split.

Rows are read by the same parser that validated them (`csv_files.iter_records`), so what
was checked is exactly what is trained on. Datasets are written as Arrow files and
memory-mapped, so memory stays bounded however large the CSV is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Sequence, Value
from transformers import PreTrainedTokenizerBase

from multilabel.checkpoints import file_sha256
from multilabel.csv_files import iter_records, list_csv_files
from multilabel.pair_encoding import TruncationError, encode_pairs
from multilabel.schema import ColumnSpec, LabelSchema

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
    n_text = len(spec.text_columns)
    columns = [*spec.text_columns, *schema.label_columns]
    for path in paths:
        for _, _, cells in iter_records(Path(path), columns, spec.encoding):
            row = dict(zip(spec.text_columns, cells[:n_text], strict=True))
            row[LABELS] = schema.encode(cells[n_text:])
            yield row


def load_split(
    where: str | os.PathLike, spec: ColumnSpec, schema: LabelSchema, cache_dir: str | None = None
) -> Dataset:
    """One split (a CSV file or a channel directory of CSVs) as a Dataset with float labels."""
    paths = [str(p) for p in list_csv_files(where)]
    features = Features(
        {**{c: Value("string") for c in spec.text_columns}, LABELS: Sequence(Value("float32"))}
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
) -> Dataset:
    """Tokenise the first text column as text and the second as text pair, unpadded.

    Padding happens per batch in the collator. Adds a `length` column (tokens per row),
    which the length-grouped sampler reads instead of decoding every row.
    """

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
        remove_columns=list(text_columns),
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
