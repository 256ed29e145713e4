"""The Trainer of a run: BCE with positive weights, length grouping, windows pooled per
record, metric log lines, and predictions in row order.

`training.run` builds it with `build_trainer`; `scoring` reuses it to predict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, PredictionOutput

from multilabel.core import metric_names
from multilabel.core.run_paths import resolve_run_paths
from multilabel.data.dataset import LENGTH_COLUMN, label_matrix
from multilabel.text.windows import ONE_WINDOW, WINDOW_COUNTS, WindowCollator, WindowSettings, pool_logits
from multilabel.training import metrics

logger = logging.getLogger(__name__)


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
        self,
        *args,
        pos_weight: torch.Tensor | None = None,
        windows: WindowSettings = ONE_WINDOW,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.pos_weight = pos_weight
        self.windows = windows

    def _get_train_sampler(self, train_dataset=None):
        """Length grouping from the precomputed `length` column.

        Trainer drops columns the model does not take before it builds the sampler, so
        its own sampler would decode every row of the training set to measure it.
        """
        dataset = self.train_dataset
        if not (
            self.args.group_by_length
            and isinstance(dataset, Dataset)
            and LENGTH_COLUMN in dataset.column_names
        ):
            return super()._get_train_sampler(train_dataset)
        column = dataset.select_columns([LENGTH_COLUMN]).with_format("numpy")[:]
        lengths = column[LENGTH_COLUMN].tolist()
        return LengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=lengths
        )

    def record_logits(self, model, inputs: dict) -> tuple[torch.Tensor, Any]:
        """Logits per record (the windows pooled, where a batch has windows) and the model's output."""
        counts = inputs.pop(WINDOW_COUNTS, None)
        outputs = model(**inputs)
        if counts is None:
            return outputs.logits, outputs
        return pool_logits(outputs.logits, counts, self.windows.pooling), outputs

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
    labels = label_matrix(dataset)
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
    windows: WindowSettings = ONE_WINDOW,
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
        windows=windows,
    )
    trainer.remove_callback(PrinterCallback)  # MetricLogCallback logs the same, once
    return trainer
