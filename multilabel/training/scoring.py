"""`train.py --do_train False`: evaluate or predict with a model directory trained here.

The model directory (`--model_name_or_path`) is read, never written. Its `config.json`
gives the label names; its `classifier_config.json` the text columns, the label columns
and format, `max_seq_length`, truncation and the tuned thresholds, which decide every
label. The head is used as trained (never re-initialised), and nothing is written to
`--output_dir` (no checkpoints) or `--model_dir` (not used in this mode).

`--do_eval` scores the validation file at the saved thresholds (`eval_results.json`, as
a training run writes it); `--do_predict` writes `test_predictions.csv` for a test file
with or without label columns, and its metrics only when it has them. The results
replace a previous scoring run's in `--output_data_dir`; a training run's results there
(which describe the model and cannot all be recomputed) are replaced only with
`--overwrite_output_dir`.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from multilabel.core import metric_names
from multilabel.core.artifact import CLASSIFIER_CONFIG, ClassifierConfig, read_model_dir
from multilabel.core.errors import DataValidationError, UsageError
from multilabel.core.run_paths import (
    ALL_RESULTS,
    LABEL_PLOT,
    LABEL_REPORT,
    OUTPUT_DATA_FILES,
    predictions_file,
    resolve_run_paths,
    results_file,
)
from multilabel.data.csv_files import list_csv_files, read_header
from multilabel.data.dataset import LABELS, label_matrix, load_split, tokenize
from multilabel.data.schema import (
    DEFAULT_TEXT_COLUMNS,
    INDICATOR_FORMAT,
    NAMES_FORMAT,
    ColumnSpec,
    LabelSchema,
    check_label_cells,
    scan_file,
    split_names,
)
from multilabel.text import tfidf
from multilabel.text.decisions import saved_thresholds
from multilabel.training import metrics, reporting, staging
from multilabel.training.arguments import DataArguments, ModelArguments
from multilabel.training.pipeline import resolve_data_files
from multilabel.training.trainer import Splits, build_trainer, predict_rows

logger = logging.getLogger(__name__)

# Only a training run writes it: its presence marks the folder as a training run's results.
TRAINING_RESULTS = results_file(metric_names.split_prefix("train"))


class ModelDirError(UsageError):
    """--model_name_or_path is not a model directory that train.py wrote."""


@dataclass(frozen=True)
class TrainedModel:
    """What a model directory written by train.py says about the data it reads."""

    path: Path
    config: ClassifierConfig
    label_names: tuple[str, ...]
    tfidf: tfidf.TfidfModel | None = None  # a hybrid model's TF-IDF half


def read_trained_model(path: str) -> TrainedModel:
    """The model directory's label names and classifier config; `ModelDirError` if it is not one."""
    root = Path(path)
    need = (
        "--do_train False evaluates or predicts with a model trained here: --model_name_or_path must "
        "be the --model_dir that train.py wrote (config.json, classifier_config.json, weights, tokenizer)"
    )
    names, config, problems = read_model_dir(root)
    if config is not None and not problems:
        tfidf_model, tfidf_problem = tfidf.load_tfidf(root, config, len(names))
        problems += [tfidf_problem] if tfidf_problem else []
    if problems:
        raise ModelDirError(f"{need}; " + "; ".join(problems))
    return TrainedModel(root, config, names, tfidf_model)


def column_spec(model: TrainedModel, data_args: DataArguments) -> ColumnSpec:
    """The model's text columns (a different --text_column_names is refused); its label columns
    unless --label_column_names names others."""
    given = split_names(data_args.text_column_names)
    if given not in (model.config.text_columns, DEFAULT_TEXT_COLUMNS):
        raise ModelDirError(
            f"--text_column_names {','.join(given)}: the model in {model.path} reads the text "
            f"column(s) {list(model.config.text_columns)}; leave the flag out (its {CLASSIFIER_CONFIG} decides)"
        )
    labels = model.config.label_columns
    if data_args.label_column_names is not None:
        labels = split_names(data_args.label_column_names)
    return ColumnSpec(
        model.config.text_columns,
        labels,
        data_args.encoding,
        label_separator=model.config.label_separator,
        id_column=data_args.id_column or model.config.id_column,
    )


def drop_missing_saved_id(spec: ColumnSpec, files: Mapping[str, str], data_args: DataArguments) -> ColumnSpec:
    """The spec without the model's saved id column when the files lack it (an id column
    given as --id_column is required)."""
    if data_args.id_column or not spec.id_column:
        return spec
    try:
        headers = [read_header(p, spec.encoding) for where in files.values() for p in list_csv_files(where)]
    except DataValidationError:
        return spec  # `validate` names the unreadable file
    if all(spec.id_column in header for header in headers):
        return spec
    logger.info(
        "the files have no %r column (the model's id column): predictions carry row numbers", spec.id_column
    )
    return dataclasses.replace(spec, id_column=None)


def label_schema(model: TrainedModel, spec: ColumnSpec, header: Sequence[str]) -> LabelSchema:
    """How the label cells read: the saved format (models from before it was saved: indicator
    when the label columns are the label names, else names)."""
    columns = spec.resolve_label_columns(header)
    fmt = model.config.label_format
    if fmt is None:
        fmt = INDICATOR_FORMAT if tuple(columns) == model.label_names else NAMES_FORMAT
    if fmt == INDICATOR_FORMAT and len(columns) != len(model.label_names):
        raise DataValidationError(
            [
                f"the model in {model.path} has {len(model.label_names)} labels, one 0/1 column each "
                f"{list(model.config.label_columns or model.label_names)}; found the label columns {list(columns)}"
            ]
        )
    return LabelSchema(fmt, tuple(columns), model.label_names, model.config.label_separator)


def check_file(
    path: Path, split: str, model: TrainedModel, spec: ColumnSpec, schema: LabelSchema
) -> tuple[bool, list[str]]:
    """(whether the file has the label columns, its problems): the model's text columns,
    all or none of its label columns (validation: all), then the endpoint's row and cell rules."""
    header = read_header(path, spec.encoding)
    missing_text = [c for c in spec.text_columns if c not in header]
    present = [c for c in schema.label_columns if c in header]
    missing_labels = [c for c in schema.label_columns if c not in header]
    problems = []
    if missing_text:
        problems.append(
            f"{path}: missing column(s) {missing_text}: the model in {model.path} reads the text "
            f"column(s) {list(spec.text_columns)}; the header has {header}"
        )
    labelled = bool(present) or split == "validation"
    if labelled and missing_labels:
        why = "the validation file needs every label column" if split == "validation" else "give all or none"
        problems.append(
            f"{path}: missing label column(s) {missing_labels} of the model's {list(schema.label_columns)} "
            f"({why}); the header has {header}"
        )
    if problems:
        return labelled, problems
    report = scan_file(path, spec, schema.label_columns if labelled else ())
    problems += report.problems
    if labelled and not problems:
        # check_label_cells counts indicator positives by column name
        cells = LabelSchema(schema.label_format, schema.label_columns, schema.label_columns)
        known = None if schema.label_format == INDICATOR_FORMAT else set(schema.label_names)
        problems += check_label_cells(path, spec, cells if known is None else schema, known)[0]
    return labelled, problems


def validate(
    files: dict[str, str], model: TrainedModel, spec: ColumnSpec
) -> tuple[LabelSchema, dict[str, bool]]:
    """The label schema and, per split, whether its files have labels; every problem at once."""
    paths, problems = {}, []
    for split, where in files.items():
        try:
            paths[split] = list_csv_files(where)
        except DataValidationError as err:
            problems += err.problems
    if problems:
        raise DataValidationError(problems)
    first = next(iter(paths.values()))[0]
    schema = label_schema(model, spec, read_header(first, spec.encoding))
    labelled = {}
    for split, split_paths in paths.items():
        found = {}
        for path in split_paths:
            found[path], file_problems = check_file(path, split, model, spec, schema)
            problems += file_problems
        if len(set(found.values())) > 1:
            problems.append(
                f"{files[split]}: some files have the label columns and some do not; give all or none"
            )
        labelled[split] = all(found.values())
    if problems:
        raise DataValidationError(problems)
    return schema, labelled


def load(where: str, spec: ColumnSpec, schema: LabelSchema, labelled: bool) -> Dataset:
    """One split's rows, with a `labels` column only when the file has labels."""
    if labelled:
        return load_split(where, spec, schema)
    return load_split(where, spec, LabelSchema(INDICATOR_FORMAT, (), ())).remove_columns(LABELS)


def probabilities(trainer: Trainer, dataset: Dataset) -> np.ndarray:
    """Sigmoid probabilities in row order (prediction never length-grouped)."""
    return metrics.sigmoid(predict_rows(trainer, dataset).predictions)


def blend_with_saved_tfidf(
    model: TrainedModel, probs: dict[str, np.ndarray], raw: dict[str, Dataset], spec: ColumnSpec
) -> dict[str, np.ndarray]:
    """A hybrid model's probabilities: the encoder's blended with its saved TF-IDF model's."""
    tfidf_model, weight = model.tfidf, model.config.blend_weights(model.label_names)
    return {
        split: tfidf.blend(
            p, tfidf_model.probabilities(tfidf.column_texts(raw[split], spec.text_columns)), weight
        )
        for split, p in probs.items()
    }


def chosen_files(data_args: DataArguments, training_args: TrainingArguments) -> dict[str, str]:
    """The validation file (scored when given) and, with --do_predict, the test file."""
    files = resolve_data_files(data_args, resolve_run_paths())
    chosen = {}
    if files["validation"] and training_args.do_eval:
        chosen["validation"] = files["validation"]
    if training_args.do_predict:
        if not files["test"]:
            raise UsageError("--do_predict: no test file; pass --test_file (or set SM_CHANNEL_TEST)")
        chosen["test"] = files["test"]
    elif files["test"]:
        logger.warning("the test file %s is not read without --do_predict", files["test"])
    if not chosen:
        raise UsageError(
            "--do_train False: nothing to do; pass --do_eval with --validation_file (scored at the "
            "saved thresholds) and/or --do_predict with --test_file"
        )
    return chosen


def run(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> dict[str, float]:
    """Check the model directory and the files, score them, write the results. Returns the metrics."""
    model = read_trained_model(model_args.model_name_or_path)
    files = chosen_files(data_args, training_args)
    output_data_dir = data_args.output_data_dir or resolve_run_paths().output_data_dir
    if Path(output_data_dir).resolve().is_relative_to(model.path.resolve()):
        raise staging.OutputLocationError(
            f"--output_data_dir {output_data_dir} is inside the model directory {model.path}, "
            "which this mode never writes; choose a folder outside it"
        )
    staging.check_writable(output_data_dir, "--output_data_dir")
    check_training_results_kept(output_data_dir, training_args.overwrite_output_dir)
    spec = column_spec(model, data_args)
    spec = drop_missing_saved_id(spec, files, data_args)
    schema, labelled = validate(files, model, spec)
    if data_args.model_dir:
        logger.warning(
            "--model_dir %s is not used with --do_train False: no model is written", data_args.model_dir
        )
    logger.info(
        "--do_train False: scoring %s with the model in %s at its saved thresholds; no training, "
        "no checkpoints, the model directory is only read",
        ", ".join(f"{split} {where}" for split, where in files.items()),
        model.path,
    )

    raw = {split: load(where, spec, schema, labelled[split]) for split, where in files.items()}
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    hf_model = AutoModelForSequenceClassification.from_pretrained(model.path, use_safetensors=True)
    saved_config = model.config
    tokenised = {
        split: tokenize(
            dataset,
            tokenizer,
            spec.text_columns,
            saved_config.max_seq_length,
            saved_config.truncation,
            data_args.preprocessing_num_workers,
            saved_config.windows,
        )
        for split, dataset in raw.items()
    }
    thresholds = saved_thresholds(model.config, model.label_names)
    pad_to_length = model.config.max_seq_length if data_args.pad_to_max_length else None
    splits = Splits(None, tokenised.get("validation"), tokenised.get("test"))
    saved = training_args.output_dir, training_args.eval_strategy
    with tempfile.TemporaryDirectory(prefix="multilabel-scoring-") as scratch:
        # Trainer creates its output_dir (not the checkpoints' then), and wants an eval
        # dataset for an eval strategy: it only predicts here.
        training_args.output_dir, training_args.eval_strategy = scratch, IntervalStrategy.NO
        try:
            trainer = build_trainer(
                hf_model, tokenizer, splits, training_args, None, pad_to_length, saved_config.windows
            )
            probs = {split: probabilities(trainer, dataset) for split, dataset in tokenised.items()}
        finally:
            training_args.output_dir, training_args.eval_strategy = saved
    if saved_config.hybrid_weight is not None:
        probs = blend_with_saved_tfidf(model, probs, raw, spec)
    evaluations = {
        split: metrics.evaluate_split(p, label_matrix(tokenised[split]), thresholds, model.label_names)
        for split, p in probs.items()
        if labelled[split]
    }
    results = {
        metric_names.split_prefix(split): metric_names.split_results(split, e.tuned, e.untuned)
        for split, e in evaluations.items()
    }
    all_metrics = {k: v for values in results.values() for k, v in values.items()}
    if all_metrics:
        logger.info("%s", metric_names.final_line(all_metrics))
    if trainer.is_world_process_zero():
        staged = staging.staging_dir(output_data_dir)
        try:
            ids = (
                {split: (spec.id_column, raw[split][spec.id_column]) for split in raw}
                if spec.id_column
                else {}
            )
            weights = saved_config.encoder_weights(model.label_names)
            write_outputs(staged, results, evaluations, probs, thresholds, model.label_names, ids, weights)
            staging.replace_files(staged, output_data_dir, OUTPUT_DATA_FILES)
        finally:
            staging.discard(staged)
        logger.info("results written to %s: %s", output_data_dir, ", ".join(sorted(written(probs, results))))
    return all_metrics


def check_training_results_kept(output_data_dir: str | Path, overwrite: bool) -> None:
    """Refuse to replace a training run's results (its `train_results.json` and the rest)
    unless `overwrite` (`--overwrite_output_dir`): scoring into the folder a training run
    wrote, the local default for both, must not silently delete what that run measured."""
    folder = Path(output_data_dir)
    if not (folder / TRAINING_RESULTS).is_file():
        return
    present = sorted(name for name in OUTPUT_DATA_FILES if (folder / name).exists())
    if not overwrite:
        raise staging.OutputLocationError(
            f"--output_data_dir {folder} holds a training run's results ({', '.join(present)}), "
            "which this run would replace; choose another --output_data_dir (for example "
            "outputs/predictions), or pass --overwrite_output_dir to replace them"
        )
    logger.warning(
        "--overwrite_output_dir: replacing a training run's results in %s: %s", folder, ", ".join(present)
    )


def written(probs: dict, results: dict) -> set[str]:
    files = {predictions_file(split) for split in probs}
    if results:
        files |= {ALL_RESULTS, LABEL_REPORT, LABEL_PLOT}
        files |= {results_file(prefix) for prefix in results}
    return files


def write_outputs(
    folder: Path,
    results: dict[str, dict[str, float]],
    evaluations: dict[str, metrics.SplitEvaluation],
    probs: dict[str, np.ndarray],
    thresholds: np.ndarray,
    label_names: Sequence[str],
    ids: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    encoder_weights: Sequence[float] | None = None,
) -> None:
    """Per-row predictions of every scored split (with their ids and, where the file has
    them, true labels); metrics and the label report of the labelled ones (with a hybrid's
    `encoder_weights`)."""
    for split, split_probs in probs.items():
        truth = evaluations[split].labels if split in evaluations else None
        reporting.write_predictions(
            folder / predictions_file(split),
            split_probs,
            thresholds,
            label_names,
            (ids or {}).get(split),
            truth,
        )
    if results:
        reporting.save_metrics(folder, results)
        split = "test" if "test" in evaluations else "validation"
        reporting.write_label_report(
            folder, split, evaluations[split], thresholds, label_names, encoder_weights=encoder_weights
        )
