"""train.py's arguments: typed dataclasses parsed with `TrainingArguments`.

Every field of the three dataclasses is a command-line flag, and therefore a SageMaker
hyperparameter (the training toolkit passes hyperparameters as `--name value`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from transformers import HfArgumentParser, TrainingArguments

from multilabel.csv_files import DEFAULT_ENCODING
from multilabel.errors import ArgumentError
from multilabel.metric_names import BEST_METRIC
from multilabel.pair_encoding import TRUNCATION_STRATEGIES
from multilabel.run_paths import resolve_run_paths
from multilabel.schema import DEFAULT_TEXT_COLUMNS, LABEL_FORMATS, ColumnSpec


@dataclass
class ModelArguments:
    """Which encoder to fine-tune, and how its loss and precision are set up."""

    model_name_or_path: str = field(
        default="roberta-base",
        metadata={"help": "Hugging Face model name or local path of the encoder to fine-tune."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer name or path, if not the model's own."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models are cached."})
    pos_weight: str = field(
        default="sqrt",
        metadata={
            "help": "Per-label positive weight of the BCE loss: 'auto' (negatives/positives "
            "in train), 'sqrt' (its square root, a milder boost for rare labels), both "
            "capped by --max_pos_weight, or 'none'.",
            "choices": ["auto", "sqrt", "none"],
        },
    )
    max_pos_weight: float = field(
        default=30.0, metadata={"help": "Upper bound of an automatic positive weight."}
    )
    head_bias_init: str = field(
        default="prior",
        metadata={
            "help": "Initial bias of the new classification layer: 'prior' (each label's "
            "log-odds in train, so training starts from the label frequencies) or 'zero' "
            "(transformers' own initialisation: every label starts at probability 0.5).",
            "choices": ["prior", "zero"],
        },
    )
    mixed_precision: str = field(
        default="auto",
        metadata={
            "help": "'auto': bf16 on GPUs that support it, else fp16, with TF32 matmuls; "
            "fp32 on CPU. 'no': always fp32. An explicit --bf16/--fp16 wins.",
            "choices": ["auto", "no"],
        },
    )

    def __post_init__(self) -> None:
        """Every out-of-range value, each naming its flag, in one `ArgumentError`."""
        if not self.max_pos_weight >= 1:  # also NaN
            found = self.max_pos_weight
            raise ArgumentError(
                [f"--max_pos_weight: expected a number >= 1 (1 means no extra weight), found {found}"]
            )


@dataclass
class DataArguments:
    """Where the CSV files are, which columns to use, and how texts are tokenised."""

    train_file: str | None = field(
        default=None,
        metadata={"help": "Training CSV, or a directory of CSVs. Default: SM_CHANNEL_TRAIN."},
    )
    validation_file: str | None = field(
        default=None,
        metadata={
            "help": "Validation CSV or directory. Default: SM_CHANNEL_VALIDATION; without "
            "one, a stratified split of the training data."
        },
    )
    test_file: str | None = field(
        default=None, metadata={"help": "Test CSV or directory. Default: SM_CHANNEL_TEST."}
    )
    text_column_names: str = field(
        default=",".join(DEFAULT_TEXT_COLUMNS),
        metadata={"help": "One or two comma-separated text columns: the text, then the text pair."},
    )
    label_column_names: str | None = field(
        default=None,
        metadata={"help": "Comma-separated label columns. Default: every column named label*."},
    )
    label_format: str = field(
        default="auto",
        metadata={
            "help": "'indicator': label columns hold 0/1; 'names': each holds a label name "
            "or nothing; 'auto': detected from the training file.",
            "choices": list(LABEL_FORMATS),
        },
    )
    max_seq_length: int = field(
        default=256, metadata={"help": "Maximum tokens per example, after truncation."}
    )
    truncation: str = field(
        default="longest_first",
        metadata={"help": "How a long text pair is cut.", "choices": list(TRUNCATION_STRATEGIES)},
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Pad every example to max_seq_length (the static recipe, much slower). "
            "Default: pad each batch to its longest example."
        },
    )
    validation_split_size: float = field(
        default=0.1,
        metadata={"help": "Fraction of train held out for validation when no validation file is given."},
    )
    model_dir: str | None = field(
        default=None,
        metadata={"help": "Where the final model goes. Default: SM_MODEL_DIR, else outputs/model."},
    )
    output_data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where metrics, predictions and the report go. Default: "
            "SM_OUTPUT_DATA_DIR, else outputs/data."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenisation."}
    )
    encoding: str = field(
        default=DEFAULT_ENCODING,
        metadata={
            "help": "Text encoding of the CSV files, e.g. cp1252 or latin-1 (utf-8 also "
            "accepts a byte order mark)."
        },
    )

    def __post_init__(self) -> None:
        """Every out-of-range value and column-list problem, each naming its flag, at once."""
        problems = []
        if self.max_seq_length < 8:
            problems.append(f"--max_seq_length: expected at least 8, found {self.max_seq_length}")
        if not 0 < self.validation_split_size < 1:
            problems.append(
                "--validation_split_size: expected a fraction between 0 and 1 (exclusive), "
                f"found {self.validation_split_size}"
            )
        if self.preprocessing_num_workers is not None and self.preprocessing_num_workers < 1:
            problems.append(
                f"--preprocessing_num_workers: expected at least 1, found {self.preprocessing_num_workers}; "
                "leave it out to tokenise in the main process"
            )
        try:
            self.column_spec()
        except ArgumentError as err:
            problems += err.problems
        if problems:
            raise ArgumentError(problems)

    def column_spec(self) -> ColumnSpec:
        """The text and label columns and the encoding, as the schema module takes them."""
        return ColumnSpec.from_flags(self.text_column_names, self.label_column_names, self.encoding)


# Trainer defaults that differ from transformers' own, applied as parser defaults so that
# every one of them can still be overridden from the command line or a hyperparameter.
TRAINING_DEFAULTS = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "logging_strategy": "steps",
    "logging_steps": 50,
    "load_best_model_at_end": True,
    "metric_for_best_model": BEST_METRIC,
    "greater_is_better": True,
    "save_total_limit": 2,
    "learning_rate": 5e-5,
    "num_train_epochs": 5,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 64,
    # Batches of rows of similar length: almost no padding (see benchmarks/README.md).
    "group_by_length": True,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "report_to": "none",
    "log_level": "info",
    "disable_tqdm": True,
}


def _adapt_to_device(namespace) -> None:
    """On a GPU: bf16 (or fp16) and TF32 unless the user decided. On CPU: no pinned memory."""
    import torch

    if not torch.cuda.is_available() or namespace.use_cpu:
        namespace.dataloader_pin_memory = False
        return
    if namespace.mixed_precision != "auto":
        return
    if not (namespace.bf16 or namespace.fp16):
        if torch.cuda.is_bf16_supported():
            namespace.bf16 = True
        else:
            namespace.fp16 = True
    if namespace.tf32 is None and torch.cuda.get_device_capability()[0] >= 8:
        namespace.tf32 = True


def parse_arguments(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parse the command line (or `argv`) into the three argument dataclasses.

    Unknown flags are errors, not silently ignored (argparse exits with status 2). The
    values of all three dataclasses are then checked together: every problem, each naming
    its flag, is raised in one `ArgumentError`. `--output_dir` (the checkpoint directory)
    defaults to `/opt/ml/checkpoints` on SageMaker, else outputs/checkpoints.
    """
    # No abbreviations: a typo such as --learning_rat must not pass as --learning_rate.
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments), allow_abbrev=False)
    parser.set_defaults(**TRAINING_DEFAULTS)
    namespace = parser.parse_args(argv)
    if namespace.output_dir is None:
        namespace.output_dir = resolve_run_paths().checkpoint_dir
    _adapt_to_device(namespace)
    parsed, problems = [], []
    for dtype in parser.dataclass_types:
        try:
            parsed.append(dtype(**{f.name: getattr(namespace, f.name) for f in fields(dtype) if f.init}))
        except ArgumentError as err:
            problems += err.problems
        except ValueError as err:  # TrainingArguments' own checks; they name the flags with --
            problems.append(str(err))
    if problems:
        raise ArgumentError(problems)
    return tuple(parsed)
