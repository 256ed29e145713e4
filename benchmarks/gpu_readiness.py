"""Training throughput and model FLOPs utilisation (MFU) of a RoBERTa classifier.

Random weights and inputs (no download): a roberta-base-sized config by default, or a
tiny one (`--tiny`) that runs anywhere. Times forward + backward + optimizer steps with
bf16 autocast (on GPUs that support it), fused AdamW, and optionally torch.compile.
MFU = 6 x parameters x tokens/s over the device's peak dense bf16 FLOP/s (known GPUs only);
peak memory is the most the timed steps held allocated on the GPU.

    python benchmarks/gpu_readiness.py --batch-size 32 --seq-len 256 [--compile]
    python benchmarks/gpu_readiness.py --tiny --steps 3      (CPU smoke run)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from common import machine, print_table, write_json

# Peak dense bf16 tensor-core FLOP/s (vendor datasheets), by a substring of the device name.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
}


def build_model(tiny: bool, num_labels: int = 10):
    """roberta-base's shape with random weights, or a tiny RoBERTa for a quick check of the script."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from tests.support.tiny_model import roberta_base_config, tiny_config

    if tiny:
        config = tiny_config(
            RobertaConfig,
            num_labels,
            vocab_size=1000,
            hidden_size=64,
            num_hidden_layers=2,
            intermediate_size=128,
            max_position_embeddings=514,
        )
    else:
        config = roberta_base_config(num_labels)
    return RobertaForSequenceClassification(config)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    model = build_model(args.tiny).to(device)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=device.type == "cuda")
    step_model = torch.compile(model) if args.compile else model
    vocab = model.config.vocab_size
    input_ids = torch.randint(3, vocab, (args.batch_size, args.seq_len), device=device)
    attention_mask = torch.ones_like(input_ids)
    labels = (torch.rand(args.batch_size, model.config.num_labels, device=device) < 0.2).float()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = step_model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    tokens_per_second = args.steps * args.batch_size * args.seq_len / seconds
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)
    achieved = 6 * params * tokens_per_second
    row = {
        "device": name,
        "config": "tiny" if args.tiny else "roberta-base",
        "params_m": round(params / 1e6, 1),
        "precision": "bf16" if bf16 else "fp32",
        "compile": args.compile,
        "batch": args.batch_size,
        "seq_len": args.seq_len,
        "tokens_per_second": round(tokens_per_second),
        "tflops": round(achieved / 1e12, 2),
        "mfu": round(achieved / peak, 3) if peak else "n/a",
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
        if device.type == "cuda"
        else "n/a",
    }
    print_table([row], list(row))
    write_json(args.json, {"machine": machine(), "torch": torch.__version__, "result": row})
    return 0


if __name__ == "__main__":
    sys.exit(main())
