"""The training pipeline: validated CSVs -> fine-tuned multi-label model directory.

Each step is a function; `run` calls them in order. See train.py for the command line.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
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
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from multilabel import checkpoints, data, metrics, reporting, staging
from multilabel.arguments import DataArguments, ModelArguments
from multilabel.artifact import ClassifierConfig, copy_serving_code
from multilabel.errors import UsageError
from multilabel.pair_encoding import TruncationError
from multilabel.run_paths import SPLITS, RunPaths, resolve_run_paths
from multilabel.schema import ColumnSpec, LabelSchema, list_csv_files, validate_files

logger = logging.getLogger(__name__)

# Every file a run writes into the output-data directory; a run deletes the ones it
# does not write, so the folder never mixes two runs' results.
OUTPUT_DATA_FILES = (
    *(f"{prefix}_results.json" for prefix in ("all", "train", "eval", "test")),
    *(f"{split}_predictions.csv" for split in ("validation", "test")),
    "label_report.md",
    "label_report.png",
)
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
    """Logs every Trainer log event as one `name=value` line, for people and for regexes."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            logger.info("metrics step=%d %s", state.global_step, format_metrics(logs))


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


def format_metrics(values: Mapping[str, float]) -> str:
    """`name=value` pairs; the form that SageMaker metric definitions match."""
    return " ".join(f"{k}={v:.6g}" for k, v in values.items() if isinstance(v, (int, float)))


def resolve_data_files(data_args: DataArguments, paths: RunPaths) -> dict[str, str | None]:
    """Each split's file or directory: the flag if given, else its SageMaker channel."""
    given = {
        "train": data_args.train_file,
        "validation": data_args.validation_file,
        "test": data_args.test_file,
    }
    return {split: given[split] or paths.channels.get(split) for split in SPLITS}


class TrainingSetupError(UsageError):
    """An output location or a schedule that cannot work; reported before training."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_locations(
    model_dir: str, output_data_dir: str, checkpoint_dir: str, data_files: Mapping[str, str | None]
) -> None:
    """Every output location is writable, and replacing the model folder destroys nothing else.

    The model folder is replaced whole at the end of a run, so checkpoints, results and
    input files must not live inside it, and an existing folder must be a model folder.
    """
    model = Path(model_dir).resolve()
    for path, what in (
        (checkpoint_dir, "--output_dir (checkpoints)"),
        (output_data_dir, "--output_data_dir"),
    ):
        if _inside(Path(path).resolve(), model):
            raise TrainingSetupError(
                f"{what} {path} is inside --model_dir {model_dir}, which becomes model.tar.gz "
                "and is replaced whole at the end of the run; choose a folder outside it."
            )
    for split, where in data_files.items():
        if where and _inside(Path(where).resolve(), model):
            raise TrainingSetupError(
                f"the {split} data {where} is inside --model_dir {model_dir}, which is replaced "
                "at the end of the run; move the data or choose another --model_dir."
            )
    if model.is_dir() and any(model.iterdir()) and not (model / "config.json").is_file():
        raise TrainingSetupError(
            f"--model_dir {model_dir} holds files but no config.json: it is not a model folder, and "
            "the run would replace it. Choose a new or empty folder."
        )
    staging.check_writable(model_dir, "--model_dir")
    staging.check_writable(output_data_dir, "--output_data_dir")
    staging.check_writable(checkpoint_dir, "--output_dir (checkpoints)")


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
) -> dict[str, Dataset]:
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
    return tokenised


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
    data_args: DataArguments,
    schema: LabelSchema,
    seed: int,
) -> dict[str, Dataset]:
    """Read the validated files; split validation off train when no file is given."""
    spec = data_args.column_spec()
    raw = {split: data.load_split(where, spec, schema) for split, where in files.items() if where}
    if "validation" not in raw:
        raw["train"], raw["validation"] = data.stratified_split(
            raw["train"], data_args.validation_split_size, seed
        )
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


def compute_pos_weight(train: Dataset, mode: str, cap: float) -> torch.Tensor | None:
    """negatives / positives per label from train ('auto') or its square root ('sqrt'),
    capped; None when mode is 'none'."""
    if mode == "none":
        return None
    labels = data.label_matrix(train)
    positives = labels.sum(axis=0)
    ratio = (len(labels) - positives) / np.maximum(positives, 1.0)
    weight = np.clip(np.sqrt(ratio) if mode == "sqrt" else ratio, 1.0, cap)
    logger.info("pos_weight per label: %s", np.round(weight, 2).tolist())
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


def initialise_head_bias(model: PreTrainedModel, train: Dataset, pos_weight: torch.Tensor | None) -> None:
    """Start each label's logit at the constant that minimises the training loss.

    With frequency p and positive weight w that constant is log(w * p / (1 - p)): the
    prior log-odds without `pos_weight`, 0 under an uncapped `pos_weight` auto (w = (1 - p) / p).
    A zero bias instead starts every label at probability 0.5, and at fine-tuning
    learning rates the bias moves about one learning rate per step: thousands of steps
    pass before a rare label's bias reaches its prior (-3.4 for a label on 3 % of rows),
    and until then the encoder's updates go into undoing the wrong starting point.
    """
    labels = data.label_matrix(train)
    # A label that is never (always) on counts as half a row on (off): a finite bias.
    half_row = 0.5 / len(labels)
    frequency = np.clip(labels.mean(axis=0, dtype=np.float64), half_row, 1.0 - half_row)
    weight = pos_weight.numpy().astype(np.float64) if pos_weight is not None else 1.0
    bias = np.log(weight * frequency / (1.0 - frequency))
    layer = classification_layer(model)
    if layer.bias is None:
        logger.warning("the classification layer has no bias; --head_bias_init prior does nothing")
        return
    with torch.no_grad():
        layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))
    logger.info("classification bias initialised from label frequencies: %s", np.round(bias, 2).tolist())


def compute_eval_metrics(label_names: list[str]):
    """`compute_metrics` for Trainer: metrics at the default threshold, in Trainer's order."""

    def compute(eval_pred) -> dict[str, float]:
        probs = metrics.sigmoid(eval_pred.predictions)
        return metrics.multilabel_metrics(probs, eval_pred.label_ids, label_names=label_names)

    return compute


def predict_in_order(trainer: Trainer, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) in dataset row order.

    With `group_by_length`, Trainer also length-groups prediction, which returns rows
    shuffled; it is switched off for the call, and the order is checked.
    """
    grouped = trainer.args.group_by_length
    trainer.args.group_by_length = False
    try:
        output = trainer.predict(dataset, metric_key_prefix="predict")
    finally:
        trainer.args.group_by_length = grouped
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
        callbacks=[MetricLogCallback(), SyncBestCheckpointCallback()],
        pos_weight=pos_weight,
    )
    trainer.remove_callback(PrinterCallback)  # MetricLogCallback logs the same, once
    return trainer


def evaluate_with_thresholds(
    trainer: Trainer, splits: Splits, label_names: list[str]
) -> tuple[np.ndarray, dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Tune per-label thresholds on validation; metrics before and after, per split.

    Returns (thresholds, metrics by split name, test probabilities when a test set exists).
    """
    val_probs, val_labels = predict_in_order(trainer, splits.validation)
    thresholds = metrics.tune_thresholds(val_probs, val_labels)
    results: dict[str, dict[str, float]] = {}
    probs = {"validation": (val_probs, val_labels)}
    if splits.test is not None:
        probs["test"] = predict_in_order(trainer, splits.test)
    for split, (p, y) in probs.items():
        prefix = "eval" if split == "validation" else split
        before = metrics.multilabel_metrics(p, y, metrics.DEFAULT_THRESHOLD, label_names)
        after = metrics.multilabel_metrics(p, y, thresholds, label_names)
        results[prefix] = {
            **{f"{prefix}_{k}": v for k, v in after.items()},
            **{f"{prefix}_untuned_{k}": v for k, v in before.items()},
        }
        logger.info(
            "%s: micro-F1 %.4f -> %.4f, macro-F1 %.4f -> %.4f with tuned thresholds",
            split,
            before["micro_f1"],
            after["micro_f1"],
            before["macro_f1"],
            after["macro_f1"],
        )
    return thresholds, results, {split: p for split, (p, _) in probs.items()}


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


def save_metrics(output_dir: Path, results: Mapping[str, Mapping[str, float]]) -> None:
    """`<split>_results.json` for each split and `all_results.json`, this run's only."""
    merged: dict[str, float] = {}
    for split, values in results.items():
        (output_dir / f"{split}_results.json").write_text(
            json.dumps(dict(values), indent=4, sort_keys=True) + "\n"
        )
        merged.update(values)
    (output_dir / "all_results.json").write_text(json.dumps(merged, indent=4, sort_keys=True) + "\n")


def write_results(
    output_dir: Path,
    results: Mapping[str, Mapping[str, float]],
    probs: Mapping[str, np.ndarray],
    splits: Splits,
    thresholds: np.ndarray,
    label_names: list[str],
) -> None:
    """Metrics, per-row predictions and the per-label report (test set, else validation)."""
    save_metrics(output_dir, results)
    for split, split_probs in probs.items():
        reporting.write_predictions(
            output_dir / f"{split}_predictions.csv", split_probs, thresholds, label_names
        )
    report_split = "test" if "test" in probs else "validation"
    report_labels = data.label_matrix(splits.test if report_split == "test" else splits.validation)
    reporting.write_label_report(
        output_dir, report_split, probs[report_split], report_labels, thresholds, label_names
    )


def publish_outputs(
    model_dir: str,
    output_data_dir: str,
    write_model: Callable[[Path], None],
    write_data: Callable[[Path], None],
) -> None:
    """Write the model and the results into staging folders, then swap both into place.

    Nothing that was at `model_dir` changes unless every file of the new model was
    written; results go first, the model last, so a failure leaves the old model.
    """
    staged_model = staged_data = None
    try:
        staged_model = staging.staging_dir(model_dir)
        staged_data = staging.staging_dir(output_data_dir)
        write_model(staged_model)
        write_data(staged_data)
        staging.replace_files(staged_data, output_data_dir, OUTPUT_DATA_FILES)
        staged_data = None
        staging.replace_dir(staged_model, model_dir)
        staged_model = None
    finally:
        staging.discard(staged_model)
        staging.discard(staged_data)
    logger.info("model saved to %s, results to %s", model_dir, output_data_dir)


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
    """Validate, train, tune thresholds, evaluate, save. Returns the final metrics."""
    paths = resolve_run_paths()
    model_dir = data_args.model_dir or paths.model_dir
    output_data_dir = data_args.output_data_dir or paths.output_data_dir
    files = resolve_data_files(data_args, paths)
    check_output_locations(model_dir, output_data_dir, training_args.output_dir, files)
    spec = data_args.column_spec()
    schema = validate_files(files, spec, data_args.label_format, data_args.validation_split_size)
    fingerprint = run_fingerprint(files, spec, schema, model_args, data_args, training_args)
    resume = resume_checkpoint(training_args, fingerprint)

    set_seed(training_args.seed)
    with training_args.main_process_first(desc="loading the CSV files"):
        raw = load_datasets(files, data_args, schema, training_args.seed)
    check_training_steps(len(raw["train"]), training_args)
    model, tokenizer = load_model_and_tokenizer(model_args, schema)
    max_length = effective_max_length(data_args.max_seq_length, tokenizer, model)
    with training_args.main_process_first(desc="tokenising"):
        tokenised = tokenize_splits(raw, tokenizer, spec, max_length, data_args)
    splits = Splits(tokenised["train"], tokenised["validation"], tokenised.get("test"))
    pos_weight = compute_pos_weight(splits.train, model_args.pos_weight, model_args.max_pos_weight)
    if model_args.head_bias_init == "prior":
        initialise_head_bias(model, splits.train, pos_weight)
    pad_to_length = max_length if data_args.pad_to_max_length else None
    trainer = build_trainer(model, tokenizer, splits, training_args, pos_weight, pad_to_length)

    train_result = trainer.train(resume_from_checkpoint=resume)

    label_names = list(schema.label_names)
    thresholds, results, probs = evaluate_with_thresholds(trainer, splits, label_names)
    results = {"train": train_result.metrics, **results}
    all_metrics = {k: v for values in results.values() for k, v in values.items()}
    logger.info("final %s", format_metrics({k: v for k, v in all_metrics.items() if "_untuned_" not in k}))

    if trainer.is_world_process_zero():
        classifier_config = ClassifierConfig(
            text_columns=spec.text_columns,
            thresholds={name: float(t) for name, t in zip(label_names, thresholds, strict=True)},
            max_seq_length=max_length,
            truncation=data_args.truncation,
        )
        publish_outputs(
            model_dir,
            output_data_dir,
            write_model=lambda folder: save_model_dir(trainer, tokenizer, folder, classifier_config),
            write_data=lambda folder: write_results(folder, results, probs, splits, thresholds, label_names),
        )
    return all_metrics
