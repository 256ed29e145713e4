"""The training pipeline: validated CSVs -> fine-tuned multi-label model directory.

Each step is a function; `run` calls them in order. See train.py for the command line;
`reporting` writes the results, `staging` swaps them and the model into place.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, PredictionOutput

from multilabel import checkpoints, data, metric_names, metrics, reporting, staging
from multilabel.arguments import DataArguments, ModelArguments
from multilabel.artifact import ClassifierConfig, copy_serving_code
from multilabel.csv_files import list_csv_files
from multilabel.errors import UsageError
from multilabel.pair_encoding import TruncationError
from multilabel.run_paths import SPLITS, RunPaths, resolve_run_paths
from multilabel.schema import ColumnSpec, LabelSchema, validate_files

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


@dataclass
class Splits:
    """The tokenised datasets of one run (validation always present, test optional)."""

    train: Dataset
    validation: Dataset
    test: Dataset | None


class MultiLabelTrainer(Trainer):
    """`Trainer` whose BCE loss can weight each label's positives (`pos_weight`), and whose
    length grouping reads the `length` column."""

    def __init__(self, *args, pos_weight: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pos_weight = pos_weight

    def _get_train_sampler(self, train_dataset=None):
        """Length grouping from the precomputed `length` column.

        Trainer drops columns the model does not take before it builds the sampler, so
        its own sampler would decode every row of the training set to measure it.
        """
        dataset = self.train_dataset
        if not (
            self.args.group_by_length
            and isinstance(dataset, Dataset)
            and data.LENGTH_COLUMN in dataset.column_names
        ):
            return super()._get_train_sampler(train_dataset)
        column = dataset.select_columns([data.LENGTH_COLUMN]).with_format("numpy")[:]
        lengths = column[data.LENGTH_COLUMN].tolist()
        return LengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=lengths
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.pos_weight is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            outputs.logits,
            labels.to(outputs.logits.dtype),
            pos_weight=self.pos_weight.to(outputs.logits.device, outputs.logits.dtype),
        )
        return (loss, outputs) if return_outputs else loss


class MetricLogCallback(TrainerCallback):
    """Logs every Trainer log event as one compact `name=value` line, for people and for regexes.

    With `detail` (on SageMaker, whose metric definitions read the log) an evaluation's other
    metrics, per-label F1 included, follow on a second line; locally they are in the output files.
    """

    def __init__(self, detail: bool = False):
        self.detail = detail

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            compact, rest = metric_names.split_log_event(logs)
            logger.info("%s", metric_names.step_line(state.global_step, compact))
            if self.detail and rest:
                logger.info("%s", metric_names.step_line(state.global_step, rest))


class SyncBestCheckpointCallback(TrainerCallback):
    """Make every DDP rank agree on the best checkpoint's path.

    Trainer records `best_model_checkpoint` only if the checkpoint folder already exists
    on disk when a rank looks. Rank 0 writes it, so another rank may look too early and
    record nothing; at the end of training the ranks then disagree about waiting at a
    barrier before loading the best model, and training hangs. The path is known from
    `best_global_step` alone, and rank 0 has written it by the time it is loaded.
    """

    def on_save(self, args, state, control, **kwargs):
        if state.best_global_step:
            state.best_model_checkpoint = str(
                Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.best_global_step}"
            )


def resolve_data_files(data_args: DataArguments, paths: RunPaths) -> dict[str, str | None]:
    """Each split's file or directory: the flag if given, else its SageMaker channel."""
    given = {
        "train": data_args.train_file,
        "validation": data_args.validation_file,
        "test": data_args.test_file,
    }
    return {split: given[split] or paths.channels.get(split) for split in SPLITS}


class TrainingSetupError(UsageError):
    """A schedule or a truncation mode that cannot work; reported before training."""


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
) -> Splits:
    """Each split tokenised; rows that the truncation mode cannot fit are refused by split."""
    tokenised = {}
    for split, dataset in raw.items():
        try:
            tokenised[split] = data.tokenize(
                dataset,
                tokenizer,
                spec.text_columns,
                max_length,
                data_args.truncation,
                data_args.preprocessing_num_workers,
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
            split: {p.name: checkpoints.file_sha256(p) for p in list_csv_files(where)}
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
    }


def load_datasets(
    files: Mapping[str, str | None],
    spec: ColumnSpec,
    schema: LabelSchema,
    validation_split_size: float,
    seed: int,
) -> dict[str, Dataset]:
    """Read the validated files; split validation off train when no file is given."""
    raw = {split: data.load_split(where, spec, schema) for split, where in files.items() if where}
    if "validation" not in raw:
        raw["train"], raw["validation"] = data.stratified_split(raw["train"], validation_split_size, seed)
    return raw


def load_model_and_tokenizer(
    model_args: ModelArguments, schema: LabelSchema
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The encoder with a fresh multi-label head sized and named by the label schema."""
    names = list(schema.label_names)
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(names),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        cache_dir=model_args.cache_dir,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, cache_dir=model_args.cache_dir
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        model_args.model_name_or_path, config=config, cache_dir=model_args.cache_dir
    )
    return model, tokenizer


def effective_max_length(requested: int, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> int:
    """`max_seq_length`, capped by what the tokenizer and the position embeddings allow."""
    limits = [requested, tokenizer.model_max_length]
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        # RoBERTa reserves padding_idx + 1 positions.
        offset = getattr(model.config, "pad_token_id", 0) + 1 if model.config.model_type == "roberta" else 0
        limits.append(positions - offset)
    length = min(limits)
    if length < requested:
        logger.warning("max_seq_length %d exceeds the model's limit; using %d", requested, length)
    return length


def compute_pos_weight(train_labels: np.ndarray, mode: str, cap: float) -> torch.Tensor | None:
    """negatives / positives per label of the training label matrix ('auto') or its square
    root ('sqrt'), capped; None when mode is 'none'."""
    if mode == "none":
        return None
    positives = train_labels.sum(axis=0)
    ratio = (len(train_labels) - positives) / np.maximum(positives, 1.0)
    weight = np.clip(np.sqrt(ratio) if mode == "sqrt" else ratio, 1.0, cap)
    logger.info("pos_weight per label: %s", np.round(weight.astype(np.float64), 2).tolist())
    return torch.tensor(weight, dtype=torch.float32)


def classification_layer(model: PreTrainedModel) -> torch.nn.Linear:
    """The layer that outputs the label logits: the last Linear with one output per label.

    Found by shape rather than by name, so it works for every architecture's head
    (`classifier` in BERT, `classifier.out_proj` in RoBERTa, ...).
    """
    layers = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and m.out_features == model.config.num_labels
    ]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no layer with {model.config.num_labels} outputs")
    return layers[-1]


def initialise_head_bias(
    model: PreTrainedModel, train_labels: np.ndarray, pos_weight: torch.Tensor | None
) -> None:
    """Start each label's logit at the constant that minimises the training loss.

    With frequency p and positive weight w that constant is log(w * p / (1 - p)): the
    prior log-odds without `pos_weight`, 0 under an uncapped `pos_weight` auto (w = (1 - p) / p).
    A zero bias instead starts every label at probability 0.5, and at fine-tuning
    learning rates the bias moves about one learning rate per step: thousands of steps
    pass before a rare label's bias reaches its prior (-3.4 for a label on 3 % of rows),
    and until then the encoder's updates go into undoing the wrong starting point.
    """
    # A label that is never (always) on counts as half a row on (off): a finite bias.
    half_row = 0.5 / len(train_labels)
    frequency = np.clip(train_labels.mean(axis=0, dtype=np.float64), half_row, 1.0 - half_row)
    weight = pos_weight.numpy().astype(np.float64) if pos_weight is not None else 1.0
    bias = np.log(weight * frequency / (1.0 - frequency))
    layer = classification_layer(model)
    if layer.bias is None:
        logger.warning("the classification layer has no bias; --head_bias_init prior does nothing")
        return
    with torch.no_grad():
        layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))
    logger.info("classification bias initialised from label frequencies: %s", np.round(bias, 2).tolist())


def prepare_head(
    model: PreTrainedModel, train_labels: np.ndarray, model_args: ModelArguments
) -> torch.Tensor | None:
    """The loss's positive weights (`--pos_weight`), and the head's starting bias (`--head_bias_init`)."""
    pos_weight = compute_pos_weight(train_labels, model_args.pos_weight, model_args.max_pos_weight)
    if model_args.head_bias_init == "prior":
        initialise_head_bias(model, train_labels, pos_weight)
    return pos_weight


def compute_eval_metrics(label_names: list[str]):
    """`compute_metrics` for Trainer: metrics at the default threshold, in Trainer's order."""

    def compute(eval_pred) -> dict[str, float]:
        probs = metrics.sigmoid(eval_pred.predictions)
        return metrics.multilabel_metrics(probs, eval_pred.label_ids, label_names=label_names)

    return compute


def predict_rows(trainer: Trainer, dataset: Dataset) -> PredictionOutput:
    """`trainer.predict` in dataset row order.

    With `group_by_length`, Trainer also length-groups prediction, which returns rows
    shuffled; it is switched off for the call.
    """
    grouped = trainer.args.group_by_length
    trainer.args.group_by_length = False
    try:
        return trainer.predict(dataset, metric_key_prefix="predict")
    finally:
        trainer.args.group_by_length = grouped


def predict_in_order(trainer: Trainer, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) in dataset row order, the order checked against the labels."""
    output = predict_rows(trainer, dataset)
    labels = data.label_matrix(dataset)
    if not np.array_equal(np.asarray(output.label_ids, dtype=np.float32), labels):
        raise RuntimeError("predictions came back out of dataset order")
    return metrics.sigmoid(output.predictions), labels


def build_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: Splits,
    training_args: TrainingArguments,
    pos_weight: torch.Tensor | None,
    pad_to_length: int | None = None,
) -> MultiLabelTrainer:
    """The Trainer; batches padded to their longest row, or all to `pad_to_length`."""
    if pad_to_length:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to_length)
    else:
        collator = DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None
        )
    trainer = MultiLabelTrainer(
        model=model,
        args=training_args,
        train_dataset=splits.train,
        eval_dataset=splits.validation,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_eval_metrics(list(model.config.id2label.values())),
        callbacks=[MetricLogCallback(detail=resolve_run_paths().on_sagemaker), SyncBestCheckpointCallback()],
        pos_weight=pos_weight,
    )
    trainer.remove_callback(PrinterCallback)  # MetricLogCallback logs the same, once
    return trainer


def evaluate_with_thresholds(
    trainer: Trainer, splits: Splits, label_names: Sequence[str]
) -> tuple[np.ndarray, dict[str, metrics.SplitEvaluation]]:
    """Tune per-label thresholds on validation; metrics before and after, per split.

    Returns the thresholds (in label order) and each evaluated split's probabilities,
    labels and metrics: validation, then test when a test set exists.
    """
    predicted = {"validation": predict_in_order(trainer, splits.validation)}
    thresholds = metrics.tune_thresholds(*predicted["validation"])
    if splits.test is not None:
        predicted["test"] = predict_in_order(trainer, splits.test)
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
    return thresholds, evaluations


def save_model_dir(
    trainer: Trainer,
    tokenizer: PreTrainedTokenizerBase,
    model_dir: Path,
    classifier_config: ClassifierConfig,
) -> None:
    """The deployable model directory: weights, tokenizer, classifier config, code/."""
    trainer.model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    classifier_config.save(model_dir)
    copy_serving_code(model_dir)


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

    With `--do_train False`, evaluates or predicts with a trained model instead (`scoring`).
    """
    if not training_args.do_train:
        from multilabel import scoring

        return scoring.run(model_args, data_args, training_args)
    paths = resolve_run_paths()
    model_dir = data_args.model_dir or paths.model_dir
    output_data_dir = data_args.output_data_dir or paths.output_data_dir
    files = resolve_data_files(data_args, paths)
    staging.check_output_locations(model_dir, output_data_dir, training_args.output_dir, files)
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
    with training_args.main_process_first(desc="tokenising"):
        splits = tokenize_splits(raw, tokenizer, spec, max_length, data_args)
    pos_weight = prepare_head(model, data.label_matrix(splits.train), model_args)
    pad_to_length = max_length if data_args.pad_to_max_length else None
    trainer = build_trainer(model, tokenizer, splits, training_args, pos_weight, pad_to_length)

    train_result = trainer.train(resume_from_checkpoint=resume)

    thresholds, evaluations = evaluate_with_thresholds(trainer, splits, schema.label_names)
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
        )
        staging.publish(
            model_dir,
            output_data_dir,
            write_model=lambda folder: save_model_dir(trainer, tokenizer, folder, classifier_config),
            write_data=lambda folder: reporting.write_results(
                folder, results, evaluations, thresholds, schema.label_names
            ),
            data_files=reporting.OUTPUT_DATA_FILES,
        )
        for line in reporting.summary_lines(model_dir, output_data_dir, evaluations):
            logger.info("%s", line)
        # Checkpoints only serve resuming; on SageMaker they are synced to S3, where a spot
        # restart or a re-run of the same job reads them, so they stay there by default.
        keep = data_args.keep_checkpoints
        if not (paths.on_sagemaker if keep is None else keep):
            checkpoints.remove_finished_checkpoints(training_args.output_dir)
    return all_metrics
