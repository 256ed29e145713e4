"""The demo: train on the bundled sample with a tiny offline RoBERTa, show metrics and a prediction.

    make demo        (or: python scripts/demo.py)

The tiny model is random and small, so its scores are modest; the point is the whole
pipeline running end to end, offline, in a minute or two on a laptop CPU.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import transformers

from multilabel.classifier import Classifier
from multilabel.tiny_model import build_tiny_roberta

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "outputs" / "demo"
TINY = ROOT / ".cache" / "tiny-roberta"
DATA = ROOT / "data"


def main() -> int:
    if not (TINY / "config.json").exists():
        build_tiny_roberta(TINY, [DATA / "train.csv"])
    argv = [
        f"--model_name_or_path={TINY}",
        f"--train_file={DATA / 'train.csv'}",
        f"--validation_file={DATA / 'validation.csv'}",
        f"--test_file={DATA / 'test.csv'}",
        f"--model_dir={OUT / 'model'}",
        f"--output_data_dir={OUT / 'data'}",
        f"--output_dir={OUT / 'checkpoints'}",
        "--overwrite_output_dir=True",
        "--max_seq_length=128",
        "--num_train_epochs=15",
        "--learning_rate=2e-3",
        "--per_device_train_batch_size=16",
        "--logging_steps=100",
    ]
    status = subprocess.run([sys.executable, str(ROOT / "train.py"), *argv], check=False).returncode
    if status:
        return status
    transformers.utils.logging.set_verbosity_warning()  # the training run's INFO logs are done
    results = json.loads((OUT / "data" / "test_results.json").read_text())
    tags = json.loads((DATA / "labels.json").read_text())  # label column -> Debtag
    print("\nTest metrics (thresholds tuned on validation):")
    for key in (
        "test_micro_f1",
        "test_macro_f1",
        "test_micro_precision",
        "test_micro_recall",
        "test_hamming_loss",
    ):
        print(f"  {key:22s} {results[key]:.4f}")
    with open(DATA / "test.csv", newline="", encoding="utf-8") as fh:
        record = next(csv.DictReader(fh))
    prediction = Classifier.load(OUT / "model").predict([record])[0]
    truth = [tags[k] for k, v in record.items() if k.startswith("label") and v == "1"]
    print(f"\nOne prediction, test row 1: {record['casePart1']!r}")
    print(f"  true labels:      {truth}")
    print(f"  predicted labels: {[tags[name] for name in prediction['labels']]}")
    print("  scores:           " + ", ".join(f"{k}={v:.3f}" for k, v in prediction["scores"].items()))
    print(f"\nModel directory: {OUT / 'model'}\nReport: {OUT / 'data' / 'label_report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
