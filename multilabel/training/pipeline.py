"""The training pipeline: validated CSVs -> fine-tuned multi-label model directory.

Each step is a function; `run` calls them in order. See train.py for the command line;
`reporting` writes the results, `staging` swaps them and the model into place.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import (
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)

from multilabel.core import metric_names, threshold_strategies
from multilabel.core.artifact import (
    CLASSIFIER_CONFIG,
    ClassifierConfig,
    copy_serving_code,
    file_sha256,
    max_window_overlap,
)
from multilabel.core.errors import TrainingSetupError
from multilabel.core.run_paths import OUTPUT_DATA_FILES, SPLITS, RunPaths, resolve_run_paths
from multilabel.data.csv_files import list_csv_files
from multilabel.data.dataset import label_matrix, length_report, load_split, stratified_split, tokenize
from multilabel.data.schema import ColumnSpec, LabelSchema, validate_files
from multilabel.text import tfidf
from multilabel.text.pair_encoding import TruncationError
from multilabel.text.windows import (
    WindowSettings,
    default_overlap,
)
from multilabel.training import checkpoints, metrics, reporting, staging
from multilabel.training.arguments import DataArguments, ModelArguments
from multilabel.training.encoder import (
    effective_max_length,
    load_model_and_tokenizer,
    prepare_head,
    trained_labels,
)
from multilabel.training.trainer import Splits, build_trainer, predict_in_order

logger = logging.getLogger(__name__)

# TrainingArguments that shape the model or its schedule: a checkpoint is resumed only
# by a run that agrees on all of them (and on the data, labels and base model).
SCHEDULE_ARGUMENTS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "world_size",
    "seed",
    "data_seed",
    "weight_decay",
    "warmup_ratio",
    "warmup_steps",
    "lr_scheduler_type",
    "optim",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "group_by_length",
)


def resolve_data_files(data_args: DataArguments, paths: RunPaths) -> dict[str, str | None]:
    """Each split's file or directory: the flag if given, else its SageMaker channel."""
    given = {
        "train": data_args.train_file,
        "validation": data_args.validation_file,
        "test": data_args.test_file,
    }
    return {split: given[split] or paths.channels.get(split) for split in SPLITS}


def training_steps(train_rows: int, args: TrainingArguments) -> int:
    """The optimizer steps Trainer will take, as it computes them."""
    if args.max_steps > 0:
        return args.max_steps
    per_step = args.per_device_train_batch_size * max(args.world_size, 1)
    updates_per_epoch = max(math.ceil(train_rows / per_step) // args.gradient_accumulation_steps, 1)
    return math.ceil(args.num_train_epochs * updates_per_epoch)


def check_training_steps(train_rows: int, args: TrainingArguments) -> None:
    """Refuse a schedule of zero steps: it would save an untrained head as deployable."""
    if training_steps(train_rows, args) < 1:
        raise TrainingSetupError(
            f"--num_train_epochs {args.num_train_epochs} with --max_steps {args.max_steps} gives 0 "
            "training steps; the model would not be trained. Set --num_train_epochs >= 1 or --max_steps >= 1."
        )


def tokenize_splits(
    raw: Mapping[str, Dataset],
    tokenizer: PreTrainedTokenizerBase,
    spec: ColumnSpec,
    max_length: int,
    data_args: DataArguments,
    windows: WindowSettings,
) -> Splits:
    """Each split tokenised; rows that the truncation mode cannot fit are refused by split."""
    tokenised = {}
    for split, dataset in raw.items():
        try:
            tokenised[split] = tokenize(
                dataset,
                tokenizer,
                spec.text_columns,
                max_length,
                data_args.truncation,
                data_args.preprocessing_num_workers,
                windows,
            )
        except TruncationError as err:
            raise TrainingSetupError(f"{split} data: {err}") from None
    return Splits(tokenised["train"], tokenised["validation"], tokenised.get("test"))


def run_fingerprint(
    files: Mapping[str, str | None],
    spec: ColumnSpec,
    schema: LabelSchema,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """What makes two runs the same run: data content, labels, base model, schedule."""
    return {
        "data": {
            split: {p.name: file_sha256(p) for p in list_csv_files(where)}
            for split, where in files.items()
            if where
        },
        "text_columns": list(spec.text_columns),
        "label_columns": list(schema.label_columns),
        "label_names": list(schema.label_names),
        "label_format": schema.label_format,
        "model_name_or_path": model_args.model_name_or_path,
        "tokenizer_name": model_args.tokenizer_name,
        "pos_weight": [model_args.pos_weight, model_args.max_pos_weight],
        "head_bias_init": model_args.head_bias_init,
        "max_seq_length": data_args.max_seq_length,
        "truncation": data_args.truncation,
        "validation_split_size": data_args.validation_split_size,
        **{name: getattr(training_args, name) for name in SCHEDULE_ARGUMENTS},
        # Only when set, so that a run without windows resumes checkpoints made before them.
        **(
            {"windows": [data_args.max_windows, data_args.window_overlap, data_args.window_pooling]}
            if data_args.max_windows > 1
            else {}
        ),
    }


def load_datasets(
    files: Mapping[str, str | None],
    spec: ColumnSpec,
    schema: LabelSchema,
    validation_split_size: float,
    seed: int,
) -> dict[str, Dataset]:
    """Read the validated files; split validation off train when no file is given."""
    raw = {split: load_split(where, spec, schema) for split, where in files.items() if where}
    if "validation" not in raw:
        raw["train"], raw["validation"] = stratified_split(raw["train"], validation_split_size, seed)
    return raw


def row_ids(raw: Mapping[str, Dataset], spec: ColumnSpec) -> dict[str, tuple[str, list[str]]] | None:
    """Each split's row ids in row order (`--id_column`), as the prediction files carry them."""
    if not spec.id_column:
        return None
    return {split: (spec.id_column, dataset[spec.id_column]) for split, dataset in raw.items()}


def window_settings(data_args: DataArguments, max_length: int) -> WindowSettings:
    """The run's windowing from its flags (overlap by default an eighth of the window)."""
    overlap = default_overlap(max_length) if data_args.window_overlap is None else data_args.window_overlap
    return WindowSettings(
        data_args.max_windows, min(overlap, max_window_overlap(max_length)), data_args.window_pooling
    )


def fit_tfidf(
    raw: Mapping[str, Dataset],
    spec: ColumnSpec,
    train_labels: np.ndarray,
    required: bool = True,
    seed: int = 0,
) -> tfidf.TfidfModel | None:
    """The TF-IDF half of a hybrid model (`--hybrid`), fitted on the training rows (a random
    `tfidf.MAX_FIT_ROWS` of them, drawn with `seed`, when there are more).

    Fitted before the encoder trains, so training rows it cannot learn from are known in
    seconds rather than after the whole training run: an error when the hybrid is `required`
    (`--hybrid tfidf`), else (`--hybrid auto`) None and a warning, and the encoder alone.
    """
    train = raw["train"]
    rows = tfidf.fit_rows(len(train), seed)
    if rows is not None:
        logger.info(
            "hybrid: the TF-IDF half is fitted on a random %d of the %d training rows (its time and "
            "memory grow with the rows)",
            len(rows),
            len(train),
        )
        train, train_labels = train.select(rows), train_labels[rows]
    try:
        model = tfidf.fit(tfidf.column_texts(train, spec.text_columns), train_labels)
    except ValueError as err:  # scikit-learn: no term left after min_df
        problem = (
            f"the TF-IDF half cannot be fitted on the {len(train_labels)} training rows ({err}); "
            f"it needs words that occur in at least {tfidf.MIN_DF} records"
        )
        if not required:
            logger.warning("--hybrid auto: %s. Training the encoder alone.", problem)
            return None
        raise TrainingSetupError(
            f"--hybrid tfidf: {problem}. Train with --hybrid none, or with more training rows."
        ) from None
    logger.info(
        "hybrid: TF-IDF + logistic regression fitted on %d training rows, %d terms",
        len(train_labels),
        len(model.terms),
    )
    return model


def blend_with_tfidf(
    predicted: dict[str, tuple[np.ndarray, np.ndarray]],
    texts: Mapping[str, list[str]],
    model: tfidf.TfidfModel,
    label_names: Sequence[str],
    blend_mode: str = tfidf.PER_LABEL_BLEND,
) -> float | dict[str, float]:
    """Blend each split's encoder probabilities (in place) with the TF-IDF model's.

    'global': the one encoder weight that ranks validation best (`metrics.choose_blend_weight`);
    'per_label': each label's own, pulled toward that one by its validation positives
    (`metrics.choose_blend_weights`), returned as {label: weight}.
    """
    other = {split: model.probabilities(texts[split]) for split in predicted}
    encoder, labels = predicted["validation"]
    if blend_mode == tfidf.PER_LABEL_BLEND:
        choice = metrics.choose_blend_weights(encoder, other["validation"], labels)
        weights = choice.weights
        logger.info(
            "hybrid: per-label encoder weights chosen on validation by average precision, each "
            "pulled toward the shared %.1f by its positives: %.2f to %.2f, median %.2f (each "
            "label's in label_report.md)",
            choice.shared,
            weights.min(),
            weights.max(),
            float(np.median(weights)),
        )
        weight: float | dict[str, float] = dict(zip(label_names, weights.tolist(), strict=True))
    else:
        weights, scores = metrics.choose_blend_weight(encoder, other["validation"], labels)
        logger.info(
            "hybrid: encoder weight %.1f chosen on validation (macro average precision: encoder "
            "alone %.4f, TF-IDF alone %.4f, blend %.4f)",
            weights,
            scores[1.0],
            scores[0.0],
            scores[weights],
        )
        weight = weights
    for split, (probs, split_labels) in predicted.items():
        predicted[split] = (tfidf.blend(probs, other[split], weights), split_labels)
    return weight


def evaluate_with_thresholds(
    trainer: Trainer,
    splits: Splits,
    label_names: Sequence[str],
    threshold_strategy: str = threshold_strategies.DEFAULT_THRESHOLD_STRATEGY,
    seed: int = 0,
    hybrid: tuple[tfidf.TfidfModel, Mapping[str, list[str]]] | None = None,
    blend_mode: str = tfidf.PER_LABEL_BLEND,
) -> tuple[
    np.ndarray, dict[str, metrics.SplitEvaluation], metrics.ThresholdChoice, float | dict[str, float] | None
]:
    """Choose thresholds on validation (`metrics.choose_thresholds`); metrics before and after, per split.

    With `hybrid` (the TF-IDF model and each split's record texts), the probabilities are
    first blended with the TF-IDF model's (`blend_with_tfidf`). Returns the thresholds (in
    label order), each evaluated split's probabilities, labels and metrics (validation,
    then test when a test set exists), how the thresholds were chosen, and the blend's
    encoder weight(s) (None without `hybrid`; {label: weight} with blend_mode 'per_label').
    """
    predicted = {"validation": predict_in_order(trainer, splits.validation)}
    if splits.test is not None:
        predicted["test"] = predict_in_order(trainer, splits.test)
    train_share = label_matrix(splits.train).mean(axis=0)
    weight = blend_with_tfidf(predicted, hybrid[1], hybrid[0], label_names, blend_mode) if hybrid else None
    choice = metrics.choose_thresholds(
        *predicted["validation"],
        strategy=threshold_strategy,
        seed=seed,
        train_share=train_share,
    )
    thresholds = choice.thresholds
    log_threshold_choice(choice, label_names)
    evaluations = {}
    for split, (probs, labels) in predicted.items():
        evaluation = evaluations[split] = metrics.evaluate_split(probs, labels, thresholds, label_names)
        before, after = evaluation.untuned, evaluation.tuned
        logger.info(
            "%s: micro-F1 %.4f -> %.4f, macro-F1 %.4f -> %.4f with tuned thresholds",
            split,
            before["micro_f1"],
            after["micro_f1"],
            before["macro_f1"],
            after["macro_f1"],
        )
    return thresholds, evaluations, choice, weight


def log_threshold_choice(choice: metrics.ThresholdChoice, label_names: Sequence[str]) -> None:
    """Which thresholds, how chosen, and the labels whose threshold rests on few positives."""
    if choice.cv_scores is not None:
        logger.info(
            "thresholds: %d-fold cross-validation on validation chose '%s' (out-of-fold micro/macro-F1: %s); "
            "expected gain over per-label tuning: micro %+.4f, macro %+.4f",
            threshold_strategies.CV_FOLDS,
            choice.applied,
            ", ".join(f"{s} {v['micro']:.4f}/{v['macro']:.4f}" for s, v in choice.cv_scores.items()),
            choice.expected_gain["micro"],
            choice.expected_gain["macro"],
        )
    else:
        logger.info("thresholds: '%s' (global threshold %.3f)", choice.applied, choice.global_threshold)
    few = [
        f"{n} ({int(p)})"
        for n, p in zip(label_names, choice.positives, strict=True)
        if p < threshold_strategies.MIN_TRUSTED_POSITIVES
    ]
    if few:
        logger.warning(
            "thresholds of %s rest on fewer than %d validation positives: noisy (see label_report.md)",
            ", ".join(few),
            threshold_strategies.MIN_TRUSTED_POSITIVES,
        )


def save_model_dir(
    trainer: Trainer,
    tokenizer: PreTrainedTokenizerBase,
    model_dir: Path,
    classifier_config: ClassifierConfig,
    tfidf_model: tfidf.TfidfModel | None = None,
) -> None:
    """The deployable model directory: weights, tokenizer, classifier config, code/
    (and tfidf.npz for a hybrid model)."""
    trainer.model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    classifier_config.save(model_dir)
    if tfidf_model is not None:
        tfidf_model.save(model_dir)
    copy_serving_code(model_dir)


def log_replaced_model(model_dir: str) -> None:
    """Say which earlier model this run replaces, and what it leaves stale."""
    previous = Path(model_dir) / CLASSIFIER_CONFIG
    if not previous.is_file():
        return
    written = datetime.fromtimestamp(previous.stat().st_mtime).isoformat(sep=" ", timespec="seconds")
    logger.warning(
        "replacing the model in %s (trained %s); a model.tar.gz packed from it and its earlier "
        "predictions now describe the old model",
        model_dir,
        written,
    )


def resume_checkpoint(training_args: TrainingArguments, fingerprint: Mapping[str, Any]) -> str | None:
    """The checkpoint to resume from, decided by the main process first (it may set
    unusable checkpoints aside), then by the other ranks, which then agree with it."""
    with training_args.main_process_first(desc="checking checkpoints"):
        resume = checkpoints.choose_resume_checkpoint(
            training_args.output_dir,
            fingerprint,
            requested=training_args.resume_from_checkpoint,
            overwrite=training_args.overwrite_output_dir,
        )
    if resume:
        logger.info("resuming from checkpoint %s", resume)
    return resume


def run(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> dict[str, float]:
    """Validate, train, tune thresholds, evaluate, save. Returns the final metrics.

    (`--do_train False` runs `scoring.run` instead: train.py chooses.)
    """
    paths = resolve_run_paths()
    model_dir = data_args.model_dir or paths.model_dir
    output_data_dir = data_args.output_data_dir or paths.output_data_dir
    files = resolve_data_files(data_args, paths)
    staging.check_output_locations(
        model_dir,
        output_data_dir,
        training_args.output_dir,
        files,
        model_args.model_name_or_path,
        model_args.tokenizer_name,
    )
    spec = data_args.column_spec()
    schema = validate_files(files, spec, data_args.label_format, data_args.validation_split_size)
    fingerprint = run_fingerprint(files, spec, schema, model_args, data_args, training_args)
    resume = resume_checkpoint(training_args, fingerprint)

    set_seed(training_args.seed)
    with training_args.main_process_first(desc="loading the CSV files"):
        raw = load_datasets(files, spec, schema, data_args.validation_split_size, training_args.seed)
    check_training_steps(len(raw["train"]), training_args)
    model, tokenizer = load_model_and_tokenizer(model_args, schema)
    max_length = effective_max_length(data_args.max_seq_length, tokenizer, model)
    windows = window_settings(data_args, max_length)
    lengths = length_report(
        raw["train"], tokenizer, spec.text_columns, max_length, windows, tokenizer.model_max_length
    )
    logger.info("%s", lengths.lengths)  # the other window sizes: in label_report.md
    logger.info("%s", lengths.this_run)
    with training_args.main_process_first(desc="tokenising"):
        splits = tokenize_splits(raw, tokenizer, spec, max_length, data_args, windows)
    trained = trained_labels(model_args) is not None
    pos_weight = prepare_head(model, label_matrix(splits.train), model_args, trained)
    pad_to_length = max_length if data_args.pad_to_max_length else None
    trainer = build_trainer(model, tokenizer, splits, training_args, pos_weight, pad_to_length, windows)

    hybrid, tfidf_model = None, None
    if model_args.hybrid != tfidf.NO_HYBRID:
        required = model_args.hybrid == tfidf.TFIDF_HYBRID
        tfidf_model = fit_tfidf(raw, spec, label_matrix(splits.train), required, training_args.seed)
    if tfidf_model is not None:
        texts = {
            split: tfidf.column_texts(raw[split], spec.text_columns)
            for split in ("validation", "test")
            if split in raw
        }
        hybrid = (tfidf_model, texts)

    train_result = trainer.train(resume_from_checkpoint=resume)
    thresholds, evaluations, threshold_choice, hybrid_weight = evaluate_with_thresholds(
        trainer,
        splits,
        schema.label_names,
        data_args.threshold_strategy,
        training_args.seed,
        hybrid,
        model_args.hybrid_blend,
    )
    results = reporting.run_results(train_result.metrics, evaluations)
    all_metrics = {k: v for values in results.values() for k, v in values.items()}
    logger.info("%s", metric_names.final_line(all_metrics))

    if trainer.is_world_process_zero():
        classifier_config = ClassifierConfig(
            text_columns=spec.text_columns,
            thresholds=dict(zip(schema.label_names, thresholds.tolist(), strict=True)),
            max_seq_length=max_length,
            truncation=data_args.truncation,
            label_format=schema.label_format,
            label_columns=schema.label_columns,
            windows=windows,
            threshold_selection=threshold_choice.record(schema.label_names),
            hybrid_weight=hybrid_weight,
            label_separator=schema.separator,
            id_column=spec.id_column,
        )
        log_replaced_model(model_dir)
        staging.publish(
            model_dir,
            output_data_dir,
            write_model=lambda folder: save_model_dir(
                trainer, tokenizer, folder, classifier_config, hybrid[0] if hybrid else None
            ),
            write_data=lambda folder: reporting.write_results(
                folder,
                results,
                evaluations,
                thresholds,
                schema.label_names,
                lengths.lines,
                row_ids(raw, spec),
                classifier_config.encoder_weights(schema.label_names),
            ),
            data_files=OUTPUT_DATA_FILES,
        )
        for line in reporting.summary_lines(model_dir, output_data_dir, evaluations):
            logger.info("%s", line)
        # Checkpoints only serve resuming; on SageMaker they are synced to S3, where a spot
        # restart or a re-run of the same job reads them, so they stay there by default.
        keep = data_args.keep_checkpoints
        if not (paths.on_sagemaker if keep is None else keep):
            checkpoints.remove_finished_checkpoints(training_args.output_dir)
    return all_metrics
