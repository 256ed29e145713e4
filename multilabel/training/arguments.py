"""train.py's arguments: typed dataclasses parsed with `TrainingArguments`.

Every field of the three dataclasses is a command-line flag, and therefore a SageMaker
hyperparameter (the training toolkit passes hyperparameters as `--name value`).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields

from transformers import HfArgumentParser, TrainingArguments

from multilabel.core.artifact import max_window_overlap
from multilabel.core.errors import ArgumentError
from multilabel.core.metric_names import BEST_METRIC
from multilabel.core.run_paths import resolve_run_paths
from multilabel.core.threshold_strategies import (
    CV_FOLDS,
    DEFAULT_THRESHOLD_STRATEGY,
    THRESHOLD_STRATEGIES,
)
from multilabel.data.csv_files import DEFAULT_ENCODING
from multilabel.data.schema import DEFAULT_TEXT_COLUMNS, LABEL_FORMATS, ColumnSpec
from multilabel.text.pair_encoding import TRUNCATION_STRATEGIES
from multilabel.text.tfidf import AUTO_HYBRID, HYBRID_BLENDS, HYBRIDS, PER_LABEL_BLEND
from multilabel.text.windows import DEFAULT_POOLING, POOLINGS


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
    hybrid: str = field(
        default=AUTO_HYBRID,
        metadata={
            "help": "'tfidf': blend the encoder's probabilities with TF-IDF + logistic "
            "regression fitted on the training rows, weights chosen on validation, served "
            "with numpy. 'auto': 'tfidf' where the rows allow it, else (warned) 'none', "
            "the encoder alone.",
            "choices": list(HYBRIDS),
        },
    )
    hybrid_blend: str = field(
        default=PER_LABEL_BLEND,
        metadata={
            "help": "--hybrid's encoder weight: one for all, or per label (shrunk toward it).",
            "choices": list(HYBRID_BLENDS),
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
    label_display_names: str | None = field(
        default=None,
        metadata={
            "help": "A name for each 0/1 label column, shown in the log, the report and the "
            "endpoint's responses (saved in the model's config.json id2label): "
            "'label1=role::program,label2=works-with::text', a JSON object, or a JSON file "
            "such as data/labels.json. Columns left out keep their own name."
        },
    )
    label_format: str = field(
        default="auto",
        metadata={
            "help": "'indicator': label columns hold 0/1 (true/false, yes/no); 'names': each holds "
            "label names or nothing; 'auto': detected from the training file.",
            "choices": list(LABEL_FORMATS),
        },
    )
    label_separator: str | None = field(
        default=None,
        metadata={
            "help": "What joins several label names in one cell, e.g. '|' for a tags column "
            "holding 'billing|refund' (names format). A cell holding a JSON list "
            '(\'["billing", "refund"]\') is read as one without this flag.'
        },
    )
    id_column: str | None = field(
        default=None,
        metadata={
            "help": "A column of row ids (e.g. ticket_id): never read by the model, carried to "
            "every prediction file, the Python API's and the endpoint's results."
        },
    )
    max_seq_length: int = field(
        default=256, metadata={"help": "Maximum tokens per example, after truncation."}
    )
    truncation: str = field(
        default="longest_first",
        metadata={"help": "How a long text pair is cut.", "choices": list(TRUNCATION_STRATEGIES)},
    )
    max_windows: int = field(
        default=1,
        metadata={
            "help": "Read a long record as up to N overlapping windows of max_seq_length "
            "tokens, their logits pooled (README: Long records). 1: truncate."
        },
    )
    window_overlap: int | None = field(
        default=None,
        metadata={"help": "Tokens shared by consecutive windows (default: max_seq_length // 8)."},
    )
    window_pooling: str = field(
        default=DEFAULT_POOLING,
        metadata={"help": "How a record's window logits combine.", "choices": list(POOLINGS)},
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Pad every example to max_seq_length (the static recipe, much slower). "
            "Default: pad each batch to its longest example."
        },
    )
    threshold_strategy: str = field(
        default=DEFAULT_THRESHOLD_STRATEGY,
        metadata={
            "help": "Thresholds chosen on validation: 'per_label' (each label's F1-optimal one), "
            "'shrunk'/'prevalence' (pulled toward the global one / the one firing as often as "
            "in train, more for fewer positives), 'global', 'fixed' (0.5), 'cv' (best on "
            f"{CV_FOLDS} folds). See benchmarks/README.md.",
            "choices": list(THRESHOLD_STRATEGIES),
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
    keep_checkpoints: bool | None = field(
        default=None,
        metadata={
            "help": "Keep the checkpoints (--output_dir) after a successful run. They only serve "
            "resuming an interrupted run, and each costs about 3x the model (weights + optimizer "
            "state). Default: deleted after a local run, kept on SageMaker (synced to S3)."
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
        if self.max_windows < 1:
            problems.append(f"--max_windows: expected at least 1 (1: truncate), found {self.max_windows}")
        most = max_window_overlap(self.max_seq_length)
        if self.window_overlap is not None and not 0 <= self.window_overlap <= most:
            problems.append(
                f"--window_overlap: expected 0 to {most} tokens (less than "
                f"half of --max_seq_length {self.max_seq_length}), found {self.window_overlap}"
            )
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
        return ColumnSpec.from_flags(
            self.text_column_names,
            self.label_column_names,
            self.encoding,
            self.label_display_names,
            self.label_separator,
            self.id_column,
        )


# Trainer defaults that differ from transformers' own, applied as parser defaults so that
# every one of them can still be overridden from the command line or a hyperparameter.
TRAINING_DEFAULTS = {
    # train.py trains unless told `--do_train False`: then it evaluates (--do_eval) or predicts
    # (--do_predict) with the model directory given as --model_name_or_path.
    "do_train": True,
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
    # disable_tqdm: decided by `_adapt_to_terminal` unless given; log_level stays "passive":
    # the libraries log warnings only (train.py's own log says what happens).
}


def show_progress_bar(on_sagemaker: bool) -> bool:
    """The Trainer's progress bar only on a terminal: not on SageMaker (the log feeds
    CloudWatch) and not when the output goes to a file or a pipe."""
    return not on_sagemaker and sys.stdout.isatty() and sys.stderr.isatty()


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


HELP_ALL = "--help-all"
USAGE = "train.py [options]"
# The Trainer options most runs set, shown by --help after the project's own.
COMMON_TRAINER_OPTIONS = (
    "num_train_epochs",
    "learning_rate",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "warmup_ratio",
    "weight_decay",
    "seed",
    "output_dir",
    "overwrite_output_dir",
    "resume_from_checkpoint",
    "eval_strategy",
    "save_strategy",
    "logging_steps",
    "max_steps",
    "save_total_limit",
    "disable_tqdm",
    "log_level",
)

# Where this project gives a Trainer option another meaning or default than transformers' help says.
TRAINER_HELP = {
    "output_dir": "Where checkpoints go. Default: /opt/ml/checkpoints on SageMaker, else outputs/checkpoints.",
    "disable_tqdm": "Hide the progress bar. Default: shown on a terminal only, never on SageMaker.",
    "log_level": "The libraries' log level (train.py's own log is always INFO). Default 'passive': warnings only.",
}


class TrainArgumentParser(HfArgumentParser):
    """`HfArgumentParser` whose refusals show a one-line usage and suggest the closest flag."""

    def parse_args(self, args=None, namespace=None):
        namespace, unknown = self.parse_known_args(args, namespace)
        if unknown:
            flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            hints = []
            for token in (u for u in unknown if u.startswith("-")):
                name = token.split("=", 1)[0]
                close = difflib.get_close_matches(name, flags, n=1, cutoff=0.6)
                if close:
                    hints.append(f"{name}: did you mean {close[0]}?")
            self.error(f"unrecognized arguments: {' '.join(unknown)}" + "".join(f"\n  {h}" for h in hints))
        return namespace

    def error(self, message: str):
        self.exit(2, f"usage: {USAGE}   (train.py --help for the options)\ntrain.py: error: {message}\n")


def full_parser() -> HfArgumentParser:
    """Every flag: the project's own and every `TrainingArguments` field, with this project's defaults."""
    # No abbreviations: a typo such as --learning_rat must not pass as --learning_rate.
    parser = TrainArgumentParser(
        (ModelArguments, DataArguments, TrainingArguments), allow_abbrev=False, usage=USAGE
    )
    parser.set_defaults(**TRAINING_DEFAULTS)
    return parser


def _metavar(f) -> str:
    """A short placeholder by the field's type: `BOOL`, `N`, `X` or `TEXT`."""
    kind = str(f.type)
    for marker, metavar in (("bool", "BOOL"), ("int", "N"), ("float", "X")):
        if marker in kind:
            return metavar
    return "TEXT"


def short_help() -> str:
    """`--help`: the project's options, then the Trainer options most runs set, then where the rest are."""
    parser = argparse.ArgumentParser(
        prog="train.py",
        usage=USAGE,
        description="Fine-tune an encoder for multi-label text classification from CSV files. "
        "Every option is also a SageMaker hyperparameter.",
        epilog=f"Every other transformers TrainingArguments option is accepted too: `train.py {HELP_ALL}` "
        "lists all of them (https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,  # "(default: ...)" only where there is one
        add_help=False,
    )
    for dtype, title in (
        (ModelArguments, "model options"),
        (DataArguments, "data options"),
        (TrainingArguments, "most used Trainer options (this project's defaults)"),
    ):
        group = parser.add_argument_group(title)
        chosen = {f.name: f for f in fields(dtype) if f.init}
        names = COMMON_TRAINER_OPTIONS if dtype is TrainingArguments else list(chosen)
        for name in names:
            f = chosen[name]
            default = TRAINING_DEFAULTS.get(name, f.default)
            text = TRAINER_HELP.get(name) or " ".join(str(f.metadata.get("help", "")).split())
            kwargs = {"help": text or " "}
            if default is not MISSING and default is not None:
                kwargs["default"] = default
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            metavar = None if "choices" in f.metadata else _metavar(f)
            group.add_argument(f"--{name}", metavar=metavar, **kwargs)
    parser.add_argument_group("help").add_argument(
        "-h", "--help", action="help", help=f"this summary; {HELP_ALL}: every option"
    )
    return parser.format_help()


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
    argv = list(sys.argv[1:] if argv is None else argv)
    if HELP_ALL in argv:
        full_parser().print_help()
        raise SystemExit(0)
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(short_help() + "\n")  # the help text is the command's output, as argparse writes it
        raise SystemExit(0)
    parser = full_parser()
    namespace = parser.parse_args(argv)
    run_paths = resolve_run_paths()
    if namespace.output_dir is None:
        namespace.output_dir = run_paths.checkpoint_dir
    if namespace.disable_tqdm is None:
        namespace.disable_tqdm = not show_progress_bar(run_paths.on_sagemaker)
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
