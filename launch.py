"""Train on SageMaker, deploy an endpoint, predict, run Batch Transform, clean up.

examples:
    python launch.py train --train data/train.csv --validation data/validation.csv \
        --role arn:aws:iam::123456789012:role/SageMakerRole --bucket my-bucket --hp num_train_epochs=5
    python launch.py train ... --dry-run          # print the CreateTrainingJob request, call nothing
    python launch.py deploy --model <training job name or s3://.../model.tar.gz> --endpoint-name tags
    python launch.py predict --endpoint-name tags --file data/test.csv
    python launch.py batch --model-name <model> --input s3://.../in.jsonl --output s3://.../out/ --id-field id
    python launch.py delete --endpoint-name tags

Role and bucket also come from SAGEMAKER_ROLE and SAGEMAKER_BUCKET, the region from
AWS_DEFAULT_REGION. `python launch.py <verb> --help` lists a verb's flags. Exit status:
0 done, 2 a problem with the arguments or data (the message says what to change), 1 AWS
could not be reached or refused the credentials (the message says how to fix it).
Needs the SageMaker SDK and boto3, not torch; `train` checks --hp with train.py's own
parser where transformers is installed.
"""

# Each verb's flags are the fields of its configuration dataclass that carry a `help` in
# their metadata (`multilabel/sagemaker/flags.py` turns them into argparse arguments, as
# HfArgumentParser does for train.py's), so each default is written once.

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multilabel.core.errors import InputError
from multilabel.core.run_paths import SPLITS
from multilabel.data.schema import DEFAULT_TEXT_COLUMNS, split_names
from multilabel.sagemaker.endpoint import (
    INFERENCE_INSTANCE_TYPE,
    DeployConfig,
    batch_transform,
    delete,
    deploy,
    predict,
)
from multilabel.sagemaker.flags import add_config_flags, config_from
from multilabel.sagemaker.session import (
    BUCKET_ENV,
    REGION_ENV,
    LaunchError,
    aws_failure_message,
    make_session,
    quiet_sdk_logs,
)
from multilabel.sagemaker.training_job import TrainConfig, dry_run_request, train
from multilabel.serving.request_codec import DEFAULT_MAX_RECORDS, MAX_RECORDS_ENV

logger = logging.getLogger("launch")
EXIT_USER_ERROR = 2
EXIT_AWS_ERROR = 1
DRY_RUN_REGION = "us-east-1"
DRY_RUN_BUCKET = "dry-run-bucket"


# ---------------------------------------------------------------- the verbs' flags


@dataclass
class PredictFlags:
    """`predict`: which endpoint, and the records to send it."""

    endpoint_name: str = field(metadata={"help": "the endpoint to send the records to"})
    file: Path | None = field(default=None, metadata={"help": "CSV or JSON Lines file of records"})
    text: str | None = field(default=None, metadata={"help": "one record's first text part"})
    pair: str | None = field(default=None, metadata={"help": "one record's second text part"})
    text_column_names: str = field(
        default=",".join(DEFAULT_TEXT_COLUMNS),
        metadata={"help": "the records' text columns, comma-separated, as the model was trained"},
    )
    id_column: str | None = field(
        default=None,
        metadata={"help": "the file's id column, sent with each record (a model trained with --id_column)"},
    )
    threshold: float | None = field(
        default=None,
        metadata={
            "help": "one decision threshold in [0, 1] for every label (default: those tuned in training)"
        },
    )
    top_k: int | None = field(
        default=None, metadata={"help": "keep at most this many labels a record, best first"}
    )
    max_records: int = field(
        default=DEFAULT_MAX_RECORDS,
        metadata={"help": f"records per request: at most the endpoint's {MAX_RECORDS_ENV}"},
    )

    def records(self) -> list[dict[str, str]]:
        columns = list(split_names(self.text_column_names))
        if self.file:
            return read_records(self.file, [*columns, *([self.id_column] if self.id_column else [])])
        if self.text is not None:
            return [{columns[0]: self.text, **({columns[1]: self.pair} if self.pair else {})}]
        raise LaunchError("predict needs --file or --text")

    def parameters(self) -> dict[str, Any]:
        return {k: v for k, v in {"threshold": self.threshold, "top_k": self.top_k}.items() if v is not None}


@dataclass
class BatchFlags:
    """`batch`: a Batch Transform job of a SageMaker model over JSON Lines in S3."""

    model_name: str = field(metadata={"help": "a SageMaker model (deploy creates one)"})
    input: str = field(metadata={"help": "s3:// URI of the JSON Lines records, one a line"})
    output: str = field(metadata={"help": "s3:// prefix for the results, one a line"})
    instance_type: str = field(default=INFERENCE_INSTANCE_TYPE, metadata={"help": "instance type"})
    id_field: str | None = field(
        default=None,
        metadata={
            "help": "a field of each input line to copy to its output line, "
            'which becomes {"<field>": ..., "SageMakerOutput": {"labels": ..., "scores": ...}}'
        },
    )
    text_column_names: str = field(
        default=",".join(DEFAULT_TEXT_COLUMNS),
        metadata={
            "help": "the model's text columns, comma-separated: with --id-field, all the model is sent"
        },
    )
    wait: bool = field(default=True, metadata={"help": "wait until the job ends"})


@dataclass
class DeleteFlags:
    """`delete`: the endpoint to delete, with its config and its model."""

    endpoint_name: str = field(metadata={"help": "the endpoint to delete, with its config and model"})


VERBS: dict[str, tuple[str, type]] = {
    "train": ("start a training job", TrainConfig),
    "deploy": ("deploy a trained model to an endpoint", DeployConfig),
    "predict": ("send records to an endpoint", PredictFlags),
    "batch": ("Batch Transform over JSON Lines in S3", BatchFlags),
    "delete": ("delete an endpoint, its config and its model", DeleteFlags),
}
NEEDS_BUCKET = {"train", "deploy"}  # they upload; the other verbs work on what exists


def read_records(path: Path, text_columns: list[str]) -> list[dict[str, str]]:
    """Records from a CSV (header names the columns) or JSON Lines file; the named columns only."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = (
            [json.loads(line) for line in fh if line.strip()]
            if path.suffix in (".jsonl", ".json")
            else list(csv.DictReader(fh))
        )
    return [{c: row[c] for c in text_columns if c in row} for row in rows]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for verb, (help_text, config_class) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text, allow_abbrev=False)
        p.add_argument("--region", help=f"AWS region (default: ${REGION_ENV})")
        if verb in NEEDS_BUCKET:
            p.add_argument("--bucket", help=f"S3 bucket for data and artifacts (default: ${BUCKET_ENV})")
        if verb == "train":
            for split in SPLITS:
                p.add_argument(f"--{split}", help=f"{split} CSV file, directory of CSVs, or s3:// URI")
        add_config_flags(p, config_class)
        if verb == "train":
            p.add_argument(
                "--dry-run",
                action="store_true",
                help="print the CreateTrainingJob request and exit; calls no AWS API",
            )
    return parser


def train_config(args: argparse.Namespace) -> TrainConfig:
    return config_from(args, TrainConfig, files={split: getattr(args, split) for split in SPLITS})


def run(args: argparse.Namespace) -> None:
    if args.command == "train" and args.dry_run:
        region = args.region or os.environ.get(REGION_ENV) or DRY_RUN_REGION
        bucket = args.bucket or os.environ.get(BUCKET_ENV) or DRY_RUN_BUCKET
        request = dry_run_request(train_config(args), region, bucket)
        sys.stdout.write(json.dumps(request, indent=2, default=str) + "\n")
        return
    needs_bucket = args.command in NEEDS_BUCKET
    session = make_session(args.region, args.bucket if needs_bucket else None, need_bucket=needs_bucket)
    if args.command == "train":
        name = train(session, train_config(args))
        sys.stdout.write(f"training job: {name}\n")
    elif args.command == "deploy":
        predictor = deploy(session, config_from(args, DeployConfig))
        sys.stdout.write(f"endpoint: {predictor.endpoint_name}\n")
    elif args.command == "predict":
        flags = config_from(args, PredictFlags)
        records = flags.records()
        for result in predict(session, flags.endpoint_name, records, flags.parameters(), flags.max_records):
            sys.stdout.write(json.dumps(result) + "\n")
    elif args.command == "batch":
        flags = config_from(args, BatchFlags)
        name = batch_transform(
            session,
            flags.model_name,
            flags.input,
            flags.output,
            flags.instance_type,
            flags.wait,
            id_field=flags.id_field,
            text_columns=split_names(flags.text_column_names),
        )
        sys.stdout.write(f"transform job: {name}\n")
    elif args.command == "delete":
        for item in delete(session, config_from(args, DeleteFlags).endpoint_name):
            sys.stdout.write(f"deleted {item}\n")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_sdk_logs(cli=True)
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (LaunchError, InputError) as err:  # bad data or arguments
        logger.error("%s", err)
        return EXIT_USER_ERROR
    except Exception as err:
        message = aws_failure_message(err)  # no network, no or expired credentials, refusals
        if message is None:
            raise
        logger.error("%s", message)
        return EXIT_AWS_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
