"""How the endpoint runs its model on a CPU: runtime, numeric precision and threads per worker.

Three endpoint settings, read and checked at start-up by `RuntimeSettings.from_env`:

- `MULTILABEL_RUNTIME`: `torch` (default: PyTorch eager, in any container) or `onnx`
  (ONNX Runtime on the files `python -m multilabel.onnx_export` wrote into the model
  directory's `onnx/` when it was packed; CPU only; needs onnxruntime, which the
  project's own image holds and the Hugging Face inference container does not, so there
  the endpoint stops at start-up saying so). `multilabel/onnx_runtime.py` runs it.

- `MULTILABEL_PRECISION`: `fp32` (the weights as trained) or `int8` (dynamic int8
  quantisation of every `nn.Linear` of the encoder at load time, with PyTorch's own
  `torch.ao.quantization.quantize_dynamic`, weights per output channel: no new package,
  no re-packing, and the classification head stays fp32). int8 runs on a CPU only.
  With `MULTILABEL_RUNTIME=onnx` it chooses the file: `onnx/model.onnx` or
  `onnx/model-int8.onnx` (ONNX Runtime's own dynamic int8, made at export).
- `MULTILABEL_THREADS`: intra-op threads per model server worker. Multi Model Server
  starts one worker per vCPU unless `SAGEMAKER_MODEL_SERVER_WORKERS` says otherwise,
  and PyTorch gives each worker one thread per core, so by default 4 workers x 2
  threads contend for the 2 physical cores of an `ml.m5.xlarge`. The default here is
  vCPUs // workers (at least 1) inside a model server worker, which keeps one busy
  thread per vCPU under load; outside one (a notebook, a test, a benchmark) PyTorch's
  own setting is left alone unless `SAGEMAKER_MODEL_SERVER_WORKERS` is set.

Imports only torch, numpy and the standard library: it runs in the inference container.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from multilabel.serving.onnx_runtime import OnnxModel, onnx_path, onnx_problems

logger = logging.getLogger(__name__)

PRECISION_ENV = "MULTILABEL_PRECISION"
RUNTIME_ENV = "MULTILABEL_RUNTIME"
RUNTIMES = ("torch", "onnx")
DEFAULT_RUNTIME = "torch"
THREADS_ENV = "MULTILABEL_THREADS"
WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
PRECISIONS = ("fp32", "int8")
# fp32 stays the default: int8 moves every score a little (see benchmarks/README.md), and
# the thresholds in classifier_config.json were tuned on fp32 scores, so int8 is a choice
# made per model after checking its parity, not a silent change of an endpoint's labels.
DEFAULT_PRECISION = "fp32"


def cpu_count() -> int:
    """vCPUs this process may run on (the container's CPU set, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def in_model_server_worker() -> bool:
    """Whether this process is a Multi Model Server worker (it runs that script as __main__)."""
    return Path(sys.argv[0] if sys.argv else "").name == "model_service_worker.py"


def default_threads(cpus: int, workers_setting: str | None, in_worker: bool) -> int | None:
    """Threads per worker when MULTILABEL_THREADS is unset: vCPUs // workers, at least 1.

    Without `SAGEMAKER_MODEL_SERVER_WORKERS`, Multi Model Server starts one worker per
    vCPU (Java's availableProcessors), so each gets one thread. None (PyTorch's own
    setting) outside a model server worker when that variable is unset: then nothing
    says how many processes share the CPUs.
    """
    setting = (workers_setting or "").strip()
    if setting.isdecimal() and int(setting) > 0:
        return max(1, cpus // int(setting))
    return 1 if in_worker else None


def _choice(name: str, allowed: tuple[str, ...], default: str, problems: list[str]) -> str:
    """The setting `name` if it is one of `allowed` (unset: `default`); else a problem, and the default."""
    value = os.environ.get(name, "").strip().lower() or default
    if value in allowed:
        return value
    problems.append(
        f"{name}={os.environ[name]!r}: expected one of {list(allowed)} (default {default}); "
        "fix or unset it in the endpoint's environment"
    )
    return default


@dataclass(frozen=True)
class RuntimeSettings:
    """Precision, threads per worker and runtime for one loaded model."""

    precision: str = DEFAULT_PRECISION
    threads: int | None = None  # None: leave PyTorch's own setting
    runtime: str = DEFAULT_RUNTIME

    @classmethod
    def from_env(
        cls, device_type: str, model_dir: str | Path | None = None
    ) -> tuple[RuntimeSettings, list[str]]:
        """The settings from the environment, and every problem with them (empty if none).

        With `model_dir`, the ONNX runtime's files are checked too (present, exported from
        this directory's weights) and onnxruntime's presence.
        """
        problems = []
        precision = _choice(PRECISION_ENV, PRECISIONS, DEFAULT_PRECISION, problems)
        if precision == "int8" and device_type != "cpu":
            problems.append(
                f"{PRECISION_ENV}=int8 runs on a CPU only, and this endpoint has a GPU; "
                f"unset it (the GPU runs bf16) or deploy on a CPU instance"
            )
        runtime = _choice(RUNTIME_ENV, RUNTIMES, DEFAULT_RUNTIME, problems)
        if runtime == "onnx" and device_type != "cpu":
            problems.append(
                f"{RUNTIME_ENV}=onnx runs on a CPU only (onnxruntime's CPU build), and this endpoint "
                f"has a GPU; unset it (the GPU runs PyTorch in bf16) or deploy on a CPU instance"
            )
        elif runtime == "onnx" and model_dir is not None and precision in PRECISIONS:
            problems += onnx_problems(model_dir, precision)
        raw_threads = os.environ.get(THREADS_ENV, "").strip()
        threads = None
        if raw_threads and (not raw_threads.isdecimal() or int(raw_threads) < 1):
            problems.append(
                f"{THREADS_ENV}={raw_threads!r}: expected a positive integer (unset: vCPUs // "
                f"model server workers); fix or unset it in the endpoint's environment"
            )
        elif device_type == "cpu":
            threads = (
                int(raw_threads)
                if raw_threads
                else default_threads(cpu_count(), os.environ.get(WORKERS_ENV), in_model_server_worker())
            )
        return cls(precision, threads, runtime), problems

    def apply(
        self, model: torch.nn.Module, model_dir: str | Path | None = None
    ) -> torch.nn.Module | OnnxModel:
        """Set this process's threads and return the model to serve (eval mode).

        PyTorch: `model` in this precision. ONNX: a session on `model_dir`'s ONNX file of
        this precision, with as many threads as PyTorch has (`model` is then dropped).
        """
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        if self.runtime == "onnx":
            if model_dir is None:
                raise ValueError("the ONNX runtime needs the model directory")
            model = OnnxModel(onnx_path(model_dir, self.precision), torch.get_num_threads(), self.precision)
        elif self.precision == "int8":
            model = quantize_encoder(model)
        logger.info(
            "runtime: precision %s, %s threads, on %s", self.precision, torch.get_num_threads(), self.runtime
        )
        return model


def quantize_encoder(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every `nn.Linear` but the classification head in dynamic int8 (in place).

    Weights become int8 per output channel: on the trained MiniLM of benchmarks/README.md
    per-tensor scales moved scores by up to 0.26 and cost 1.6 points of micro-F1 on 300
    test rows, per-channel 0.16 and 0.4 points, at the same speed. Activations are
    quantised per batch at run time, so no calibration data is needed. The head is left
    in fp32: it is a tiny share of the work, and its outputs meet the thresholds directly.
    """
    encoder = getattr(model, "base_model", model)
    with warnings.catch_warnings():
        # PyTorch 2.10+ deprecates torch.ao quantisation in favour of torchao, which the
        # inference container (torch 2.6.0) does not hold; the API still works there.
        warnings.filterwarnings("ignore", category=UserWarning, message=".*deprecat")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.ao.quantization.quantize_dynamic(
            encoder,
            {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
            inplace=True,
        )
    return model.eval()


def is_int8(model: torch.nn.Module | OnnxModel) -> bool:
    """Whether any layer of `model` runs in dynamic int8 (an ONNX model: its file's precision)."""
    if isinstance(model, OnnxModel):
        return model.precision == "int8"
    return any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
