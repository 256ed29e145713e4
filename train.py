"""Fine-tune an encoder (default roberta-base) for multi-label classification from CSV.

Locally:
    python train.py --model_name_or_path roberta-base --train_file data/train.csv \
        --validation_file data/validation.csv --test_file data/test.csv

On SageMaker the same script runs unchanged: files come from the SM_CHANNEL_* channels,
the model goes to SM_MODEL_DIR, and every flag below is a hyperparameter.
`python train.py --help` lists every option, the Trainer's included.
"""

from __future__ import annotations

import logging
import sys

from multilabel.core.errors import ArgumentError, DataValidationError, UsageError
from multilabel.training.arguments import parse_arguments

logger = logging.getLogger("train")
PROJECT_LOGGERS = ("train", "multilabel")

EXIT_BAD_DATA = 2


def configure_logging(level: int = logging.INFO, library_level: int = logging.WARNING) -> None:
    """One format, one line per message: this project's logs at `level`, the libraries' at
    `library_level` (WARNING unless --log_level says otherwise), datasets' progress bars off."""
    import datasets
    import transformers

    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout, force=True
    )
    logging.getLogger().setLevel(library_level)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)
    # datasets has a handler of its own: without this, each of its messages would print twice.
    datasets.utils.logging.get_logger().handlers.clear()
    datasets.utils.logging.set_verbosity(library_level)
    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity(library_level)
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, train: 0, or 2 for bad arguments, data or outputs (every problem logged)."""
    try:
        model_args, data_args, training_args = parse_arguments(argv)
    except ArgumentError as err:
        configure_logging()
        logger.error("%s", err)
        return EXIT_BAD_DATA
    # Ours: INFO on the main process, WARNING on the other DDP ranks; the libraries' follow
    # --log_level / --log_level_replica (WARNING by default).
    configure_logging(
        logging.INFO if training_args.should_log else logging.WARNING,
        training_args.get_process_log_level(),
    )
    # Heavy imports after argument errors are reported. `--do_train False` scores a trained model.
    if training_args.do_train:
        from multilabel.training.pipeline import run
    else:
        from multilabel.training.scoring import run
    try:
        run(model_args, data_args, training_args)
    except (DataValidationError, UsageError) as err:
        logger.error("%s", err)
        return EXIT_BAD_DATA
    return 0


if __name__ == "__main__":
    sys.exit(main())
