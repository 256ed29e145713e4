"""The pretrained encoder with a new multi-label head: loading any family, its window,
the loss's positive weights and the head's starting bias.

`training.run` calls these before it builds the Trainer (`trainer.py`).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

from multilabel.core.artifact import CLASSIFIER_CONFIG
from multilabel.core.errors import TrainingSetupError
from multilabel.data.schema import LabelSchema
from multilabel.training.arguments import ModelArguments

logger = logging.getLogger(__name__)


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
    names = list(schema.label_names)
    previous = trained_labels(model_args)
    if previous is not None and previous != tuple(names):
        raise TrainingSetupError(
            f"--model_name_or_path {model_args.model_name_or_path} is a multi-label model trained on the "
            f"labels {list(previous)[:12]}{' ...' if len(previous) > 12 else ''}; this data's labels are "
            f"{names[:12]}{' ...' if len(names) > 12 else ''}. Continuing keeps the trained head, so the labels "
            "must be the same, in the same order; to train on other labels, start from the base encoder."
        )
    if previous is not None:
        logger.info("continuing from a model trained on the same %d labels: its head is kept", len(names))
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


def trained_labels(model_args: ModelArguments) -> tuple[str, ...] | None:
    """The label names of the model to start from when train.py wrote it (a folder with
    `classifier_config.json`); None for any other encoder."""
    if not (Path(model_args.model_name_or_path) / CLASSIFIER_CONFIG).is_file():
        return None
    config = AutoConfig.from_pretrained(model_args.model_name_or_path)
    return tuple(config.id2label[i] for i in range(config.num_labels))


def prepare_head(
    model: PreTrainedModel, train_labels: np.ndarray, model_args: ModelArguments, trained: bool = False
) -> torch.Tensor | None:
    """The loss's positive weights (`--pos_weight`), and the head's starting bias
    (`--head_bias_init`), except for a `trained` head (continuing from a trained model),
    whose bias is kept."""
    pos_weight = compute_pos_weight(train_labels, model_args.pos_weight, model_args.max_pos_weight)
    if model_args.head_bias_init == "prior" and not trained:
        initialise_head_bias(model, train_labels, pos_weight)
    return pos_weight
