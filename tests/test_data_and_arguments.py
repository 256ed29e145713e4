"""Loading, splitting and tokenising; argument parsing as SageMaker passes it; run paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

import train
from multilabel.arguments import parse_arguments
from multilabel.data import LABELS, label_matrix, load_split, stratified_split, tokenize
from multilabel.pair_encoding import encode_pairs, pad_batch
from multilabel.run_paths import resolve_run_paths
from multilabel.schema import ArgumentError, ColumnSpec, rows_needed_for_split, validate_files
from tests.helpers import DATA, HEADER, read_csv, run_train, write_csv


def test_load_split_keeps_every_row_in_order_with_float_labels(tmp_path: Path) -> None:
    schema = validate_files({"train": DATA / "train.csv"})
    dataset = load_split(DATA / "train.csv", ColumnSpec(), schema, cache_dir=str(tmp_path))
    rows = read_csv(DATA / "train.csv")
    assert len(dataset) == len(rows) == 300
    assert dataset.features["labels"].feature.dtype == "float32"
    assert dataset[7]["casePart2"] == rows[7]["casePart2"]
    expected = np.array([[float(r[f"label{i}"]) for i in range(1, 11)] for r in rows])
    np.testing.assert_array_equal(label_matrix(dataset), expected)


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [["a", "b", 1, *[0] * 9]])
    schema = validate_files({"train": path})
    first = load_split(path, ColumnSpec(), schema, cache_dir=str(tmp_path / "cache"))
    write_csv(path, [["a", "b", 1, *[0] * 9], ["c", "d", 0, 1, *[0] * 8]])
    second = load_split(path, ColumnSpec(), schema, cache_dir=str(tmp_path / "cache"))
    assert (len(first), len(second)) == (1, 2)


def test_stratified_split_is_deterministic_and_keeps_rare_labels(tmp_path: Path) -> None:
    schema = validate_files({"train": DATA / "train.csv"})
    dataset = load_split(DATA / "train.csv", ColumnSpec(), schema, cache_dir=str(tmp_path))
    train_a, val_a = stratified_split(dataset, 0.2, seed=1)
    _, val_b = stratified_split(dataset, 0.2, seed=1)
    assert val_a["casePart1"] == val_b["casePart1"]
    assert len(train_a) + len(val_a) == 300
    # Every label with at least 5 positives shows up in validation.
    total, held_out = label_matrix(dataset).sum(0), label_matrix(val_a).sum(0)
    assert np.all(held_out[total >= 5] >= 1)
    with pytest.raises(
        ValueError, match=r"validation_split_size: expected a fraction in \(0, 1\), found 1.5"
    ):
        stratified_split(dataset, 1.5, seed=1)


def test_tokenisation_pairs_truncates_and_reports(tiny_model: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    features, truncated = encode_pairs(tokenizer, ["short", "word " * 100], ["pair", "more " * 100], 32)
    assert [len(ids) for ids in features["input_ids"]][1] == 32
    assert truncated == [False, True]
    # The pair is a second segment: <s> text </s></s> pair </s>.
    ids = features["input_ids"][0]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.eos_token_id) == 3
    with pytest.raises(ValueError, match="truncation: expected one of"):
        encode_pairs(tokenizer, ["a"], None, 8, truncation="sideways")

    schema = validate_files({"train": DATA / "validation.csv"})
    dataset = load_split(DATA / "validation.csv", ColumnSpec(), schema, cache_dir=str(tmp_path))
    tokenised = tokenize(dataset, tokenizer, ("casePart1", "casePart2"), 48, "longest_first")
    assert set(tokenised.column_names) == {"input_ids", "attention_mask", "length", "labels"}
    assert max(len(ids) for ids in tokenised["input_ids"]) == 48
    assert tokenised["length"] == [len(ids) for ids in tokenised["input_ids"]]


def test_bert_pairs_carry_segment_ids_and_pad_them(tmp_path: Path) -> None:
    """BERT-family models get token_type_ids (0 for the text, 1 for the pair), padded with 0."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(["a first text", "and its pair", "more words here"] * 5, vocab_size=60)
    wordpiece.save_model(str(tmp_path))
    tokenizer = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    features, _ = encode_pairs(tokenizer, ["a first text", "a"], ["and its pair", "pair"], 32)
    assert set(features) == {"input_ids", "token_type_ids", "attention_mask"}
    first_segment = len(tokenizer("a first text")["input_ids"])
    assert features["token_type_ids"][0] == [0] * first_segment + [1] * (
        len(features["input_ids"][0]) - first_segment
    )
    batch = pad_batch(features, tokenizer.pad_token_id, 0, 2)
    width = len(features["input_ids"][0])
    assert batch["token_type_ids"].shape == (2, width)
    short = len(features["input_ids"][1])
    assert batch["token_type_ids"][1, :short].tolist() == features["token_type_ids"][1]
    assert batch["token_type_ids"][1, short:].sum() == 0
    assert batch["input_ids"][1, short:].tolist() == [tokenizer.pad_token_id] * (width - short)
    assert batch["attention_mask"][1].tolist() == [1] * short + [0] * (width - short)


def test_sagemaker_style_arguments_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    model_args, data_args, training_args = parse_arguments(
        [
            "--group_by_length",
            "False",
            "--overwrite_output_dir",
            "True",
            "--load_best_model_at_end",
            "False",
            "--learning_rate",
            "3e-05",
            "--text_column_names",
            "title, body",
            "--label_column_names",
            "a,b",
        ]
    )
    assert training_args.group_by_length is False
    assert training_args.overwrite_output_dir is True
    assert training_args.load_best_model_at_end is False
    assert training_args.learning_rate == 3e-5
    assert data_args.column_spec() == ColumnSpec(text_columns=("title", "body"), label_columns=("a", "b"))
    assert model_args.model_name_or_path == "roberta-base"
    assert training_args.output_dir == "outputs/checkpoints"
    assert training_args.metric_for_best_model == "macro_average_precision"


def test_defaults_group_by_length_and_start_the_head_at_the_prior(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    model_args, _, training_args = parse_arguments([])
    assert training_args.group_by_length is True
    assert model_args.head_bias_init == "prior" and model_args.pos_weight == "sqrt"
    assert training_args.eval_strategy == "epoch" and training_args.report_to == []


def test_argument_errors_name_the_flag() -> None:
    with pytest.raises(ArgumentError, match="--max_seq_length: expected at least 8, found 4"):
        parse_arguments(["--max_seq_length", "4"])
    with pytest.raises(SystemExit):
        parse_arguments(["--pos_weight", "sometimes"])


def test_every_argument_problem_is_reported_at_once() -> None:
    with pytest.raises(ArgumentError) as info:
        parse_arguments(
            [
                "--max_pos_weight=0.5",
                "--max_seq_length=0",
                "--validation_split_size=1.5",
                "--preprocessing_num_workers=0",
                "--encoding=klingon",
                "--text_column_names=label3,label3",
                "--label_column_names=label1,label1,label3",
                "--save_strategy=steps",  # TrainingArguments' own check: best model needs matching strategies
            ]
        )
    assert str(info.value).startswith("9 problem(s) in the arguments:\n  - --max_pos_weight")
    assert info.value.problems[:8] == [
        "--max_pos_weight: expected a number >= 1 (1 means no extra weight), found 0.5",
        "--max_seq_length: expected at least 8, found 0",
        "--validation_split_size: expected a fraction between 0 and 1 (exclusive), found 1.5",
        "--preprocessing_num_workers: expected at least 1, found 0; leave it out to tokenise in the "
        "main process",
        "--text_column_names: column 'label3' is listed more than once; list it once",
        "--label_column_names: column 'label1' is listed more than once; list it once",
        "column 'label3' is in both --text_column_names and --label_column_names; a column is either "
        "text or a label",
        "--encoding: unknown text encoding 'klingon'; for example utf-8, cp1252 or latin-1",
    ]
    assert info.value.problems[8].startswith("--load_best_model_at_end requires the save and eval strategy")
    with pytest.raises(ArgumentError, match="--label_column_names: no column name given"):
        parse_arguments(["--label_column_names", ","])
    with pytest.raises(ArgumentError, match=r"--max_pos_weight: expected a number >= 1 .*found nan"):
        parse_arguments(["--max_pos_weight", "nan"])


def test_train_main_exits_2_on_bad_arguments_and_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(train, "configure_logging", lambda level=None: None)  # keep pytest's handlers
    assert train.main(["--max_seq_length=0", "--validation_split_size=0"]) == 2
    assert "2 problem(s) in the arguments:\n  - --max_seq_length: expected at least 8" in caplog.text
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes((",".join(HEADER) + "\ncaf\xe9,pair" + ",1" * 10 + "\n").encode("latin-1"))
    outputs = [f"--model_dir={tmp_path / 'm'}", f"--output_data_dir={tmp_path / 'o'}"]
    code = train.main([f"--train_file={latin1}", *outputs, f"--output_dir={tmp_path / 'c'}"])
    assert code == 2
    assert f"{latin1}, line 2: byte 0xe9 (byte 4 of the line) is not valid utf-8" in caplog.text


def test_train_py_exits_2_with_every_argument_problem() -> None:
    result = run_train(["--max_seq_length=0", "--validation_split_size=2"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--max_seq_length: expected at least 8, found 0" in result.stdout
    assert (
        "--validation_split_size: expected a fraction between 0 and 1 (exclusive), found 2.0" in result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_encoding_reaches_loading(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes((",".join(HEADER) + "\ncaf\xe9 cr\xe8me,pair" + ",1" * 10 + "\n").encode("latin-1"))
    spec = ColumnSpec(encoding="latin-1")
    dataset = load_split(path, spec, validate_files({"train": path}, spec), cache_dir=str(tmp_path / "c"))
    assert dataset["casePart1"] == ["café crème"]


def test_the_minimum_rows_split_into_two_non_empty_sides() -> None:
    """At validate_files' minimum, iterstrat leaves neither side empty (1 row a side often does)."""
    from datasets import Dataset

    rng = np.random.default_rng(0)
    for size in (0.1, 0.2, 0.5):
        n = rows_needed_for_split(size)
        for seed in range(20):
            labels = (rng.random((n, 2 + seed % 8)) < 0.3).astype(np.float32)
            train_part, validation = stratified_split(
                Dataset.from_dict({LABELS: labels.tolist()}), size, seed
            )
            assert len(train_part) and len(validation), (size, n, seed)


def test_run_paths_on_sagemaker_and_locally() -> None:
    local = resolve_run_paths({})
    assert (local.on_sagemaker, local.model_dir, local.checkpoint_dir) == (
        False,
        "outputs/model",
        "outputs/checkpoints",
    )
    sm = resolve_run_paths(
        {
            "SM_MODEL_DIR": "/opt/ml/model",
            "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
            "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
            "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
        }
    )
    assert sm.on_sagemaker and sm.checkpoint_dir == "/opt/ml/checkpoints"
    assert dict(sm.channels) == {"train": "/opt/ml/input/data/train", "test": "/opt/ml/input/data/test"}
