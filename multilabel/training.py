"""The training pipeline: validated CSVs -> fine-tuned multi-label model directory.

Each step is a function; `run` calls them in order. See train.py for the command line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from multilabel import data, metrics, reporting
from multilabel.arguments import DataArguments, ModelArguments
from multilabel.artifact import ClassifierConfig, copy_serving_code
from multilabel.environment import RunPaths, resolve_run_paths
from multilabel.schema import LabelSchema, validate_files

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


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


def check_output_locations(model_dir: str, checkpoint_dir: str) -> None:
    """Checkpoints must never land inside the model directory (it becomes model.tar.gz)."""
    model, checkpoints = Path(model_dir).resolve(), Path(checkpoint_dir).resolve()
    if checkpoints == model or model in checkpoints.parents:
        raise ValueError(
            f"output_dir (checkpoints) {checkpoint_dir} is inside model_dir {model_dir}; "
            "checkpoints would end up in model.tar.gz. Choose another --output_dir."
        )


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


def last_complete_checkpoint(checkpoint_dir: str) -> str | None:
    """The newest `checkpoint-N` that was written to the end (its trainer state exists).

    Trainer writes `trainer_state.json` last, so a checkpoint cut short by a spot
    interruption is skipped rather than resumed from.
    """
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return None
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    candidates = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := pattern.match(p.name)) and (p / TRAINER_STATE_NAME).is_file()
    ]
    return str(max(candidates)[1]) if candidates else None


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
    model_dir: str,
    classifier_config: ClassifierConfig,
) -> None:
    """The deployable model directory: weights, tokenizer, classifier config, code/."""
    path = Path(model_dir)
    path.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    classifier_config.save(path)
    copy_serving_code(path)
    logger.info("model saved to %s", path)


def save_metrics(output_dir: Path, split: str, values: Mapping[str, float]) -> None:
    """`<split>_results.json` and the merged `all_results.json`, as Trainer.save_metrics writes them."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{split}_results.json").write_text(
        json.dumps(dict(values), indent=4, sort_keys=True) + "\n"
    )
    all_path = output_dir / "all_results.json"
    merged = json.loads(all_path.read_text()) if all_path.exists() else {}
    merged.update(values)
    all_path.write_text(json.dumps(merged, indent=4, sort_keys=True) + "\n")


def run(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> dict[str, float]:
    """Validate, train, tune thresholds, evaluate, save. Returns the final metrics."""
    paths = resolve_run_paths()
    model_dir = data_args.model_dir or paths.model_dir
    output_data_dir = Path(data_args.output_data_dir or paths.output_data_dir)
    check_output_locations(model_dir, training_args.output_dir)
    files = resolve_data_files(data_args, paths)
    spec = data_args.column_spec()
    schema = validate_files(files, spec, data_args.label_format)

    set_seed(training_args.seed)
    with training_args.main_process_first(desc="loading the CSV files"):
        raw = load_datasets(files, data_args, schema, training_args.seed)
    model, tokenizer = load_model_and_tokenizer(model_args, schema)
    max_length = effective_max_length(data_args.max_seq_length, tokenizer, model)
    with training_args.main_process_first(desc="tokenising"):
        tokenised = {
            split: data.tokenize(
                ds,
                tokenizer,
                spec.text_columns,
                max_length,
                data_args.truncation,
                data_args.preprocessing_num_workers,
            )
            for split, ds in raw.items()
        }
    splits = Splits(tokenised["train"], tokenised["validation"], tokenised.get("test"))
    pos_weight = compute_pos_weight(splits.train, model_args.pos_weight, model_args.max_pos_weight)
    if model_args.head_bias_init == "prior":
        initialise_head_bias(model, splits.train, pos_weight)
    pad_to_length = max_length if data_args.pad_to_max_length else None
    trainer = build_trainer(model, tokenizer, splits, training_args, pos_weight, pad_to_length)

    resume = training_args.resume_from_checkpoint
    if resume is None and not training_args.overwrite_output_dir:
        resume = last_complete_checkpoint(training_args.output_dir)
    if resume:
        logger.info("resuming from checkpoint %s", resume)
    train_result = trainer.train(resume_from_checkpoint=resume)

    label_names = list(schema.label_names)
    thresholds, results, probs = evaluate_with_thresholds(trainer, splits, label_names)
    all_metrics = {**train_result.metrics}
    for values in results.values():
        all_metrics.update(values)
    logger.info("final %s", format_metrics({k: v for k, v in all_metrics.items() if "_untuned_" not in k}))

    if trainer.is_world_process_zero():
        classifier_config = ClassifierConfig(
            text_columns=spec.text_columns,
            thresholds={name: float(t) for name, t in zip(label_names, thresholds, strict=False)},
            max_seq_length=max_length,
            truncation=data_args.truncation,
        )
        save_model_dir(trainer, tokenizer, model_dir, classifier_config)
        save_metrics(output_data_dir, "train", train_result.metrics)
        for prefix, values in results.items():
            save_metrics(output_data_dir, prefix, values)
        report_split = "test" if "test" in probs else "validation"
        report_probs = probs[report_split]
        report_labels = data.label_matrix(splits.test if report_split == "test" else splits.validation)
        for split, split_probs in probs.items():
            reporting.write_predictions(
                output_data_dir / f"{split}_predictions.csv", split_probs, thresholds, label_names
            )
        reporting.write_label_report(
            output_data_dir, report_split, report_probs, report_labels, thresholds, label_names
        )
    return all_metrics
