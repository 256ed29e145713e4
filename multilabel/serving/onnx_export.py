"""Export a trained model directory to ONNX, fp32 and int8, for `MULTILABEL_RUNTIME=onnx`.

    python -m multilabel.onnx_export MODEL_DIR                       # writes MODEL_DIR/onnx/
    python -m multilabel.onnx_export MODEL_DIR --pack model.tar.gz   # and packs the directory

Run when the model is packed, on the machine that packs it (torch, onnx, onnxscript and
onnxruntime of requirements-dev.txt), not in the serving image: the endpoint then loads
a file that was checked here against PyTorch's own logits, starts without an exporter,
and every worker serves the same bytes. The export is not done at image build time
because the image is built once for every model, and not at endpoint start-up because
four workers would each spend a minute on it (and /opt/ml/model may be read-only).

- `onnx/model.onnx`: torch.onnx's dynamo exporter (the TorchScript exporter of torch
  2.13 gave logits off by up to 0.6 on padded batches of a BERT model), dynamic batch and
  sequence axes, weights inside the file. Refused unless its logits match PyTorch's.
- `onnx/model-int8.onnx`: onnxruntime.quantization.quantize_dynamic on it: int8 weights
  (7-bit range) per output channel for the encoder's products with a constant weight (activations
  quantised per batch at run time, no calibration data), the classification head left
  in fp32, as for PyTorch's int8 path.
- `onnx/export.json`: the SHA-256 of the `model.safetensors` exported (the endpoint
  refuses files exported from other weights) and the versions used. Written last: an
  interrupted export leaves no record, and the endpoint refuses it.

Never imported by the endpoint (its code/ does not carry it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from multilabel.core.artifact import file_sha256
from multilabel.serving.onnx_runtime import EXPORT_RECORD, ONNX_FILES, WEIGHTS_FILE, onnx_path
from multilabel.text.pair_encoding import MODEL_INPUTS

logger = logging.getLogger(__name__)

OPSET = 20
# fp32 ONNX against PyTorch on the export's check batch: the two run the same float32
# products in another order, so logits agree to about 1e-5.
LOGIT_TOLERANCE = 1e-3
CHECK_TEXTS = (
    ("A Perl module for parsing CSV files", "It reads and writes comma separated values, quoted or not."),
    ("Fonts", ""),
    ("Python bindings for a small C library that compresses data", "Also ships a command-line tool."),
)


class ExportError(RuntimeError):
    """The export failed its own check; nothing usable was written."""


def _check_batch(tokenizer) -> dict[str, torch.Tensor]:
    firsts, seconds = zip(*CHECK_TEXTS, strict=True)
    encoded = tokenizer(list(firsts), list(seconds), padding=True, return_tensors="pt")
    return {name: encoded[name] for name in MODEL_INPUTS if name in encoded}


def _head_nodes(onnx_model, base_model_prefix: str) -> list[str]:
    """Names of the nodes outside the encoder (the classification head), from the exporter's scopes."""
    head = []
    for node in onnx_model.graph.node:
        scope = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        if scope and f"/{base_model_prefix}:" not in scope and f"/{base_model_prefix}." not in scope:
            head.append(node.name)
    return head


def _logits(path: Path, batch: dict[str, torch.Tensor]):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
    return session.run(["logits"], feeds)[0]


def export_onnx(model_dir: str | Path, precisions: Sequence[str] = ("fp32", "int8")) -> dict[str, Path]:
    """Write `model_dir/onnx/` for `precisions` (fp32 is always written: int8 is made from it)."""
    import numpy as np
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{model_dir}: no {WEIGHTS_FILE}; pass the model directory that train.py wrote")
    out_dir = onnx_path(model_dir, "fp32").parent
    out_dir.mkdir(exist_ok=True)
    (out_dir / EXPORT_RECORD).unlink(missing_ok=True)  # no record until the files are checked
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = (
        AutoModelForSequenceClassification.from_pretrained(
            model_dir, use_safetensors=True, trust_remote_code=False
        )
        .float()
        .eval()
    )
    batch = _check_batch(tokenizer)
    names = list(batch)
    dims = {"batch": torch.export.Dim("batch", min=1, max=4096), "seq": torch.export.Dim("seq", min=2)}
    paths = {"fp32": onnx_path(model_dir, "fp32")}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)  # axis renaming, deprecations
        torch.onnx.export(
            model,
            (),
            paths["fp32"],
            kwargs=batch,
            input_names=names,
            output_names=["logits"],
            dynamic_shapes={n: {0: dims["batch"], 1: dims["seq"]} for n in names},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    with torch.inference_mode():
        expected = model(**batch).logits.numpy()
    for rows in (slice(0, 1), slice(None)):  # one record, and a padded batch
        got = _logits(paths["fp32"], {k: v[rows] for k, v in batch.items()})
        worst = float(np.abs(got - expected[rows]).max())
        if worst > LOGIT_TOLERANCE:
            raise ExportError(f"{paths['fp32']}: logits differ from PyTorch's by {worst:.2g}; not usable")
    if "int8" in precisions:
        paths["int8"] = onnx_path(model_dir, "int8")
        head = _head_nodes(onnx.load(paths["fp32"], load_external_data=False), model.base_model_prefix)
        quantize_dynamic(
            paths["fp32"],
            paths["int8"],
            weight_type=QuantType.QInt8,
            per_channel=True,
            # 7-bit weights: on AVX2 CPUs without VNNI, ONNX Runtime's u8 x s8 products add
            # pairs in 16 bits and saturate. 8-bit weights moved the tiny test model's scores
            # by up to 0.117 (0.027 with this), at the same speed. PyTorch's int8 does the same.
            reduce_range=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=head,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    record = {
        "source_sha256": file_sha256(weights),
        "files": {p: ONNX_FILES[p] for p in paths},
        "opset": OPSET,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    (out_dir / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("exported %s to %s", model_dir, ", ".join(str(p) for p in paths.values()))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a model directory to ONNX (fp32 and int8)")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--precisions", default="fp32,int8", help="comma-separated: fp32, int8")
    parser.add_argument("--pack", type=Path, metavar="ARCHIVE", help="then pack the directory into ARCHIVE")
    args = parser.parse_args(argv)
    # WARNING for the root logger: onnxruntime's quantiser logs a line per tensor at INFO there.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("multilabel").setLevel(logging.INFO)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = sorted(set(precisions) - set(ONNX_FILES))
    if unknown:
        parser.error(f"--precisions: unknown {unknown}; expected some of {sorted(ONNX_FILES)}")
    try:
        export_onnx(args.model_dir, precisions)
        if args.pack:
            from multilabel.core.artifact import ArtifactError, pack_model

            try:
                pack_model(args.model_dir, args.pack)
            except ArtifactError as err:
                logger.error("%s", err)
                return err.exit_code
    except ExportError as err:
        logger.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
