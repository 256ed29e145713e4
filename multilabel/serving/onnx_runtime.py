"""The endpoint's forward pass through ONNX Runtime (`MULTILABEL_RUNTIME=onnx`).

`python -m multilabel.onnx_export MODEL_DIR` writes the model's encoder and head as ONNX
files into `MODEL_DIR/onnx/` when the model is packed: `model.onnx` (fp32, the same
numbers as PyTorch's) and `model-int8.onnx` (ONNX Runtime's dynamic int8 quantisation of
the encoder's weight products). `OnnxModel` runs one of them behind the interface the
`Classifier` uses for a forward pass: `model(**batch).logits`, batch and logits as torch
tensors. Tokenisation, pair clipping, the token budget, thresholds and the response stay
the Classifier's, so the handler contract is the same on every path.

`onnx/export.json` records the SHA-256 of the `model.safetensors` the files were exported
from, so a model retrained (or replaced) after the export is refused at start-up, not
served with stale weights. onnxruntime is imported only when a session is made: this module loads in the
Hugging Face inference container, which does not hold onnxruntime (that path runs in the
project's own image, `Dockerfile`).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from multilabel.core.artifact import file_sha256

ONNX_DIR = "onnx"
ONNX_FILES = {"fp32": "model.onnx", "int8": "model-int8.onnx"}
WEIGHTS_FILE = "model.safetensors"
EXPORT_RECORD = "export.json"  # {"source_sha256": ..., "files": {precision: name}, versions}
EXPORT_COMMAND = "python -m multilabel.onnx_export MODEL_DIR"


def onnx_path(model_dir: str | Path, precision: str) -> Path:
    """Where the ONNX file of `precision` lives in a model directory."""
    return Path(model_dir) / ONNX_DIR / ONNX_FILES[precision]


def onnx_problems(model_dir: str | Path, precision: str) -> list[str]:
    """Why this model directory cannot run on ONNX Runtime in `precision` (empty if it can)."""
    problems = []
    if importlib.util.find_spec("onnxruntime") is None:
        problems.append(
            "MULTILABEL_RUNTIME=onnx needs the onnxruntime package, which this container does not "
            "hold (the Hugging Face inference container has none, and nothing may be installed at "
            "start-up): serve with the project's own image (Dockerfile, `serve`), or unset "
            "MULTILABEL_RUNTIME to run on PyTorch"
        )
    path = onnx_path(model_dir, precision)
    if not path.is_file():
        problems.append(
            f"MULTILABEL_RUNTIME=onnx with MULTILABEL_PRECISION={precision}: no {ONNX_DIR}/{path.name} in "
            f"the model directory; export it before packing ({EXPORT_COMMAND} --pack model.tar.gz)"
        )
        return problems
    try:
        recorded = json.loads((path.parent / EXPORT_RECORD).read_text(encoding="utf-8"))["source_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    weights = Path(model_dir) / WEIGHTS_FILE
    if weights.is_file() and recorded != file_sha256(weights):
        problems.append(
            f"{ONNX_DIR}/{path.name} was not exported from this directory's {WEIGHTS_FILE} (the model "
            f"changed after the export); export again ({EXPORT_COMMAND})"
        )
    return problems


@dataclass
class OnnxOutput:
    logits: torch.Tensor


class OnnxModel:
    """An ONNX Runtime session that takes and returns what a transformers classifier does."""

    def __init__(self, path: str | Path, threads: int, precision: str) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # the worker's share of the vCPUs, as for torch
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.path, self.threads, self.precision = Path(path), threads, precision

    def __call__(self, **inputs: torch.Tensor) -> OnnxOutput:
        """Logits for a padded batch; inputs the graph does not use are left out."""
        missing = [name for name in self.input_names if name not in inputs]
        if missing:  # an export from another tokenizer: a deployment error, not a request's
            raise RuntimeError(f"{self.path.name} needs inputs {missing}, which the tokenizer does not give")
        feeds = {name: inputs[name].cpu().numpy().astype(np.int64, copy=False) for name in self.input_names}
        (logits,) = self.session.run(["logits"], feeds)
        return OnnxOutput(torch.from_numpy(logits))

    def eval(self) -> OnnxModel:  # a torch module's interface, for code that calls it
        return self

    def __repr__(self) -> str:
        return f"OnnxModel({self.path.name}, precision={self.precision}, threads={self.threads})"
