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
from multilabel.windows import (
    DEFAULT_POOLING,
    WINDOW_COUNTS,
    WindowCollator,
    WindowSettings,
    default_overlap,
    pool_logits,
)

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
    """`Trainer` whose BCE loss can weight each label's positives (`pos_weight`), whose
    length grouping reads the `length` column, and which pools each record's windows
    (`windows.pool_logits`) when its batches are records of several windows."""

    def __init__(
        self, *args, pos_weight: torch.Tensor | None = None, window_pooling: str = DEFAULT_POOLING, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.pos_weight = pos_weight
        self.window_pooling = window_pooling

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

    def record_logits(self, model, inputs: dict) -> tuple[torch.Tensor, Any]:
        """Logits per record (the windows pooled, where a batch has windows) and the model's output."""
        counts = inputs.pop(WINDOW_COUNTS, None)
        outputs = model(**inputs)
        if counts is None:
            return outputs.logits, outputs
        return pool_logits(outputs.logits, counts, self.window_pooling), outputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.pos_weight is None and WINDOW_COUNTS not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        logits, outputs = self.record_logits(model, inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits,
            labels.to(logits.dtype),
            pos_weight=None if self.pos_weight is None else self.pos_weight.to(logits.device, logits.dtype),
        )
        outputs.logits = logits
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Trainer's step, but for batches of windows: one row of logits per record."""
        if WINDOW_COUNTS not in inputs:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        with torch.no_grad():
            if labels is not None:
                loss, outputs = self.compute_loss(model, dict(inputs), return_outputs=True)
                loss, logits = loss.detach(), outputs.logits.detach()
            else:
                loss, logits = None, self.record_logits(model, dict(inputs))[0].detach()
        if prediction_loss_only:
            return loss, None, None
        return loss, logits, labels


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
    windows: WindowSettings,
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
                windows.max_windows,
                windows.overlap,
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
    raw = {split: data.load_split(where, spec, schema) for split, where in files.items() if where}
    if "validation" not in raw:
        raw["train"], raw["validation"] = data.stratified_split(raw["train"], validation_split_size, seed)
    return raw


def load_model_and_tokenizer(
    model_args: ModelArguments, schema: LabelSchema
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The encoder with a fresh multi-label head sized and named by the label schema.

    A model type that no sequence-classification class serves is refused with a
    `TrainingSetupError`. The tokenizer returns token type ids only if the model embeds
    more than one type (BERT's segment A / B): DistilBERT and ModernBERT take none,
    RoBERTa has one type and DeBERTa-v3 none (`type_vocab_size` 0), while a tokenizer
    may still make them (DeBERTa-v3's does; a BERT tokenizer on a DistilBERT would pass
    DistilBERT an input it does not take). The choice is saved with the tokenizer, so
    the endpoint encodes the same inputs.
    """
    import inspect

    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    names = list(schema.label_names)
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(names),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        cache_dir=model_args.cache_dir,
    )
    if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise TrainingSetupError(
            f"--model_name_or_path {model_args.model_name_or_path}: a {config.model_type!r} model "
            f"({type(config).__name__}), for which transformers {transformers.__version__} has no "
            "sequence-classification head (AutoModelForSequenceClassification maps no class to it). "
            "Choose an encoder of a family that has one, such as BERT, RoBERTa, DistilBERT, "
            "DeBERTa-v2 or ModernBERT."
        )
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, cache_dir=model_args.cache_dir
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        model_args.model_name_or_path, config=config, cache_dir=model_args.cache_dir
    )
    takes_types = (
        "token_type_ids" in inspect.signature(model.forward).parameters
        and getattr(config, "type_vocab_size", 2) > 1
    )
    if not takes_types and "token_type_ids" in tokenizer.model_input_names:
        inputs = [name for name in tokenizer.model_input_names if name != "token_type_ids"]
        tokenizer.model_input_names = inputs
        tokenizer.init_kwargs["model_input_names"] = inputs  # what save_pretrained writes
        logger.info("%s embeds no token types: the inputs are %s", type(model).__name__, inputs)
    return model, tokenizer


TRUNCATE = WindowSettings()  # one window per record


def window_settings(data_args: DataArguments, max_length: int) -> WindowSettings:
    """The run's windowing from its flags (overlap by default an eighth of the window)."""
    overlap = default_overlap(max_length) if data_args.window_overlap is None else data_args.window_overlap
    return WindowSettings(data_args.max_windows, min(overlap, max_length // 2 - 1), data_args.window_pooling)


def effective_max_length(requested: int, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> int:
    """`max_seq_length`, capped by what the tokenizer and the position embeddings allow.

    A model takes at most `max_position_embeddings` tokens, RoBERTa's lineage
    `pad_token_id + 1` fewer (its positions are numbered after the padding index). A
    DeBERTa without absolute positions (`position_biased_input` false, as DeBERTa-v3) has
    no such limit: its relative positions are bucketed, whatever the length.
    """
    config = model.config
    limits = [requested, tokenizer.model_max_length]
    positions = getattr(config, "max_position_embeddings", None)
    relative_only = config.model_type in ("deberta", "deberta-v2") and not getattr(
        config, "position_biased_input", True
    )
    if positions and not relative_only:
        after_padding = (
            "roberta",
            "xlm-roberta",
            "xlm-roberta-xl",
            "camembert",
            "roberta-prelayernorm",
            "data2vec-text",
            "longformer",
            "ibert",
            "luke",
            "mpnet",
            "xmod",
        )
        pad = getattr(config, "pad_token_id", None)
        offset = (pad or 0) + 1 if config.model_type in after_padding else 0
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
    windows: WindowSettings = TRUNCATE,
) -> MultiLabelTrainer:
    """The Trainer; batches padded to their longest row (window), or all to `pad_to_length`."""
    if windows.enabled:
        collator = WindowCollator(
            tokenizer.pad_token_id, pad_to_length or (8 if torch.cuda.is_available() else None)
        )
    elif pad_to_length:
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
        window_pooling=windows.pooling,
    )
    trainer.remove_callback(PrinterCallback)  # MetricLogCallback logs the same, once
    return trainer


def evaluate_with_thresholds(
    trainer: Trainer,
    splits: Splits,
    label_names: Sequence[str],
    threshold_strategy: str = metrics.DEFAULT_THRESHOLD_STRATEGY,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, metrics.SplitEvaluation], metrics.ThresholdChoice]:
    """Choose thresholds on validation (`metrics.choose_thresholds`); metrics before and after, per split.

    Returns the thresholds (in label order), each evaluated split's probabilities, labels
    and metrics (validation, then test when a test set exists), and how the thresholds
    were chosen.
    """
    predicted = {"validation": predict_in_order(trainer, splits.validation)}
    choice = metrics.choose_thresholds(*predicted["validation"], strategy=threshold_strategy, seed=seed)
    thresholds = choice.thresholds
    log_threshold_choice(choice, label_names)
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
    return thresholds, evaluations, choice


def log_threshold_choice(choice: metrics.ThresholdChoice, label_names: Sequence[str]) -> None:
    """Which thresholds, how chosen, and the labels whose threshold rests on few positives."""
    if choice.cv_scores is not None:
        logger.info(
            "thresholds: %d-fold cross-validation on validation chose '%s' (out-of-fold micro/macro-F1: %s); "
            "expected gain over per-label tuning: micro %+.4f, macro %+.4f",
            metrics.CV_FOLDS,
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
        if p < metrics.MIN_TRUSTED_POSITIVES
    ]
    if few:
        logger.warning(
            "thresholds of %s rest on fewer than %d validation positives: noisy (see label_report.md)",
            ", ".join(few),
            metrics.MIN_TRUSTED_POSITIVES,
        )


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
    windows = window_settings(data_args, max_length)
    lengths = data.length_report(
        raw["train"], tokenizer, spec.text_columns, max_length, windows, tokenizer.model_max_length
    )
    logger.info("%s", lengths.lengths)  # the other window sizes: in label_report.md
    logger.info("%s", lengths.this_run)
    with training_args.main_process_first(desc="tokenising"):
        splits = tokenize_splits(raw, tokenizer, spec, max_length, data_args, windows)
    pos_weight = prepare_head(model, data.label_matrix(splits.train), model_args)
    pad_to_length = max_length if data_args.pad_to_max_length else None
    trainer = build_trainer(model, tokenizer, splits, training_args, pos_weight, pad_to_length, windows)

    train_result = trainer.train(resume_from_checkpoint=resume)

    thresholds, evaluations, threshold_choice = evaluate_with_thresholds(
        trainer, splits, schema.label_names, data_args.threshold_strategy, training_args.seed
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
            max_windows=windows.max_windows,
            window_overlap=windows.overlap,
            window_pooling=windows.pooling,
            threshold_selection=threshold_choice.record(schema.label_names),
        )
        staging.publish(
            model_dir,
            output_data_dir,
            write_model=lambda folder: save_model_dir(trainer, tokenizer, folder, classifier_config),
            write_data=lambda folder: reporting.write_results(
                folder, results, evaluations, thresholds, schema.label_names, lengths.lines
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
