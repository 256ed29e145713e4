"""Train on SageMaker, deploy an endpoint, predict, run Batch Transform, clean up.

    python launch.py train --train data/train.csv --validation data/validation.csv \
        --role arn:aws:iam::123456789012:role/SageMakerRole --bucket my-bucket --hp num_train_epochs=5
    python launch.py train ... --dry-run          # print the CreateTrainingJob request, call nothing
    python launch.py deploy --model <training job name or s3://.../model.tar.gz> --endpoint-name tags
    python launch.py predict --endpoint-name tags --file data/test.csv
    python launch.py batch --model-name <model> --input s3://.../in.jsonl --output s3://.../out/
    python launch.py delete --endpoint-name tags

Role and bucket also come from SAGEMAKER_ROLE and SAGEMAKER_BUCKET, the region from
AWS_DEFAULT_REGION. Needs the SageMaker SDK and boto3, not torch.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

from multilabel import sagemaker_job as job
from multilabel.run_paths import SPLITS
from multilabel.schema import InputError

logger = logging.getLogger("launch")
EXIT_USER_ERROR = 2


def _pairs(values: list[str], flag: str) -> dict[str, Any]:
    """`key=value` flags -> dict; values parsed as JSON where they are JSON (numbers, booleans)."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise job.LaunchError(f"{flag} {item!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def read_records(path: Path, text_columns: list[str]) -> list[dict[str, str]]:
    """Records from a CSV (header names the columns) or JSON Lines file; text columns only."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = (
            [json.loads(line) for line in fh if line.strip()]
            if path.suffix in (".jsonl", ".json")
            else list(csv.DictReader(fh))
        )
    return [{c: row[c] for c in text_columns if c in row} for row in rows]


def add_session_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region (default: AWS_DEFAULT_REGION)")
    parser.add_argument("--bucket", help="S3 bucket for data and artifacts (default: SAGEMAKER_BUCKET)")


def add_version_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image-uri", help="a custom container image (see the Dockerfile) instead of the Hugging Face one"
    )
    parser.add_argument("--transformers-version", help="default: the newest the installed SDK knows")
    parser.add_argument("--pytorch-version")
    parser.add_argument("--py-version")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="start a training job", allow_abbrev=False)
    add_session_flags(t)
    add_version_flags(t)
    for split in SPLITS:
        t.add_argument(f"--{split}", help=f"{split} CSV file, directory of CSVs, or s3:// URI")
    t.add_argument("--role", help="execution role ARN (default: SAGEMAKER_ROLE)")
    t.add_argument("--instance-type", default="ml.g5.2xlarge")
    t.add_argument("--instance-count", type=int, default=1)
    t.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a train.py argument, e.g. learning_rate=3e-5",
    )
    t.add_argument("--text-column-names", default="casePart1,casePart2")
    t.add_argument("--label-column-names")
    t.add_argument("--label-format", default="auto", choices=["auto", "indicator", "names"])
    t.add_argument("--spot", action="store_true", help="managed spot training, resumed from S3 checkpoints")
    t.add_argument("--max-run", type=int, default=24 * 3600, help="seconds")
    t.add_argument("--max-wait", type=int, help="seconds, with --spot (default: 2 x max-run)")
    t.add_argument("--distributed", action="store_true", help="torch_distributed over all GPUs and instances")
    t.add_argument("--output-path", help="s3:// prefix for model.tar.gz (default: under the run prefix)")
    t.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--subnet", action="append", default=[])
    t.add_argument("--security-group", action="append", default=[])
    t.add_argument("--volume-kms-key")
    t.add_argument("--output-kms-key")
    t.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream the job's logs until it ends",
    )
    t.add_argument(
        "--dry-run",
        action="store_true",
        help="print the CreateTrainingJob request and exit; calls no AWS API",
    )

    d = sub.add_parser("deploy", help="deploy a trained model to an endpoint", allow_abbrev=False)
    add_session_flags(d)
    add_version_flags(d)
    d.add_argument("--model", required=True, help="training job name, or s3:// URI of a model.tar.gz")
    d.add_argument("--role")
    d.add_argument("--endpoint-name")
    d.add_argument("--instance-type", default="ml.m5.xlarge")
    d.add_argument("--instance-count", type=int, default=1)
    d.add_argument(
        "--serverless-memory", type=int, metavar="MB", help="deploy serverless with this much memory"
    )
    d.add_argument("--serverless-concurrency", type=int, default=5)
    d.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="e.g. MULTILABEL_MAX_RECORDS=64"
    )
    d.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True)

    p = sub.add_parser("predict", help="send records to an endpoint", allow_abbrev=False)
    add_session_flags(p)
    p.add_argument("--endpoint-name", required=True)
    p.add_argument("--file", type=Path, help="CSV or JSON Lines file of records")
    p.add_argument("--text", help="one record's first text part")
    p.add_argument("--pair", help="one record's second text part")
    p.add_argument("--text-column-names", default="casePart1,casePart2")
    p.add_argument("--threshold", type=float)
    p.add_argument("--top-k", type=int)

    b = sub.add_parser("batch", help="Batch Transform over JSON Lines in S3", allow_abbrev=False)
    add_session_flags(b)
    b.add_argument("--model-name", required=True, help="a SageMaker model (deploy creates one)")
    b.add_argument("--input", required=True)
    b.add_argument("--output", required=True)
    b.add_argument("--instance-type", default="ml.m5.xlarge")
    b.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True)

    x = sub.add_parser("delete", help="delete an endpoint, its config and its model", allow_abbrev=False)
    add_session_flags(x)
    x.add_argument("--endpoint-name", required=True)
    return parser


def train_config(args: argparse.Namespace) -> job.TrainConfig:
    return job.TrainConfig(
        files={split: getattr(args, split) for split in SPLITS},
        role=args.role,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        hyperparameters=_pairs(args.hp, "--hp"),
        text_column_names=args.text_column_names,
        label_column_names=args.label_column_names,
        label_format=args.label_format,
        spot=args.spot,
        max_run=args.max_run,
        max_wait=args.max_wait,
        distributed=args.distributed,
        output_path=args.output_path,
        tags={k: str(v) for k, v in _pairs(args.tag, "--tag").items()},
        subnets=args.subnet,
        security_group_ids=args.security_group,
        volume_kms_key=args.volume_kms_key,
        output_kms_key=args.output_kms_key,
        image_uri=args.image_uri,
        transformers_version=args.transformers_version,
        pytorch_version=args.pytorch_version,
        py_version=args.py_version,
        wait=args.wait,
    )


def run(args: argparse.Namespace) -> None:
    if args.command == "train" and args.dry_run:
        session_region = args.region or job.os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        bucket = args.bucket or job.os.environ.get(job.BUCKET_ENV) or "dry-run-bucket"
        request = job.dry_run_request(train_config(args), session_region, bucket)
        sys.stdout.write(json.dumps(request, indent=2, default=str) + "\n")
        return
    session = job.make_session(args.region, args.bucket)
    if args.command == "train":
        name = job.train(session, train_config(args))
        sys.stdout.write(f"training job: {name}\n")
    elif args.command == "deploy":
        config = job.DeployConfig(
            model=args.model,
            role=args.role,
            endpoint_name=args.endpoint_name,
            instance_type=args.instance_type,
            instance_count=args.instance_count,
            serverless_memory_mb=args.serverless_memory,
            serverless_max_concurrency=args.serverless_concurrency,
            image_uri=args.image_uri,
            transformers_version=args.transformers_version,
            pytorch_version=args.pytorch_version,
            py_version=args.py_version,
            env={k: str(v) for k, v in _pairs(args.env, "--env").items()},
            wait=args.wait,
        )
        predictor = job.deploy(session, config)
        sys.stdout.write(f"endpoint: {predictor.endpoint_name}\n")
    elif args.command == "predict":
        columns = [c.strip() for c in args.text_column_names.split(",")]
        if args.file:
            records = read_records(args.file, columns)
        elif args.text is not None:
            records = [{columns[0]: args.text, **({columns[1]: args.pair} if args.pair else {})}]
        else:
            raise job.LaunchError("predict needs --file or --text")
        parameters = {
            k: v for k, v in {"threshold": args.threshold, "top_k": args.top_k}.items() if v is not None
        }
        for result in job.predict(session, args.endpoint_name, records, parameters):
            sys.stdout.write(json.dumps(result) + "\n")
    elif args.command == "batch":
        name = job.batch_transform(
            session, args.model_name, args.input, args.output, args.instance_type, args.wait
        )
        sys.stdout.write(f"transform job: {name}\n")
    elif args.command == "delete":
        for item in job.delete(session, args.endpoint_name):
            sys.stdout.write(f"deleted {item}\n")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (job.LaunchError, InputError) as err:  # bad data or arguments
        logger.error("%s", err)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
