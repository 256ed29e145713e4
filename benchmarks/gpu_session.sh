#!/usr/bin/env bash
# The GPU checks, as one prepared run on a lent GPU machine (see benchmarks/README.md,
# "GPU readiness"). Run from the repository root with OUT set to a results folder:
#   - gpu_readiness.py: a roberta-base-shaped classifier, bf16, throughput, MFU, peak memory;
#   - one real train.py run of a roberta-base-shaped model (random weights, a tokenizer
#     trained on the data) for 1 epoch, bf16 chosen by train.py itself;
#   - long_records.py with the pretrained MiniLM at train.py's 5 epochs (quality and
#     training time; serving time is measured on the CPU machine), until DEADLINE seconds;
#   - generalisation.py: MiniLM, candidate changes of train.py's defaults on 3 (fold, seed)
#     runs each, then the defaults over 3 folds x 3 seeds (with each threshold strategy, the
#     hybrid and TF-IDF scored from the same runs), PARALLEL runs at once (default 6).
#   - cpu_int8: the endpoint paths' speed (precision_throughput.py speed) on 4 of the host's
#     CPU cores (an ml.m5.xlarge has 4 vCPUs), with the CPU's int8 instructions named, since
#     the int8 speed-up depends on them (VNNI, AMX) and the 2-core CI machine has neither.
#   - label_sets.py: MiniLM on every Debtags label set with two seeds (encoder, both
#     hybrids, TF-IDF), PARALLEL runs at once; many_labels.py: 10 against 104 labels.
# STEPS chooses among readiness, train, long_records, generalisation, label_sets, cpu_int8
# (default: the first three).
# Pinned packages the machine lacks travel as wheels in .whl/, MiniLM as fp16 in .gpu/minilm.
set -u
OUT=${OUT:?set OUT}
DEADLINE=${DEADLINE:-420}
STEPS=" ${STEPS:-readiness train long_records} "
wanted() { [[ "$STEPS" == *" $1 "* ]]; }
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
    # datasets 4.1.0 imports torchvision.io.VideoReader whenever torchvision is loaded;
    # the machine's newer torchvision has none (the training container's matches).
    sed -i 's/config.TORCHVISION_AVAILABLE and "torchvision" in sys.modules/False/' \
        /tmp/site/datasets/formatting/*_formatter.py
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD MULTILABEL_MINILM=$PWD/.gpu/minilm
began=$(date +%s)
step() { echo "=== $(( $(date +%s) - began )) s: $*"; }

step machine
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch, transformers, datasets, accelerate; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__, 'accelerate', accelerate.__version__)"

if wanted readiness; then
step "gpu_readiness: roberta-base shape, bf16"
python3 benchmarks/gpu_readiness.py --batch-size 32 --seq-len 256 --json "$OUT/readiness-b32-s256.json"
python3 benchmarks/gpu_readiness.py --batch-size 64 --seq-len 512 --json "$OUT/readiness-b64-s512.json"
fi

if wanted train; then
step "train.py: roberta-base shape, 1 epoch on debian-tags"
python3 - <<'PY'
from pathlib import Path
from transformers import AutoTokenizer, RobertaForMaskedLM
from benchmarks.common import DEBIAN_TAGS
from tests.support.tiny_model import build_tiny_roberta, roberta_base_config
out = build_tiny_roberta(Path("/tmp/roberta-base-shape"), [DEBIAN_TAGS / "train.csv"], vocab_size=8000, max_positions=514)
tokenizer = AutoTokenizer.from_pretrained(out)
config = roberta_base_config()
config.update({"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
               "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id})
RobertaForMaskedLM(config).save_pretrained(out)
PY
D=outputs/debian-tags
t0=$SECONDS; python3 train.py --model_name_or_path /tmp/roberta-base-shape \
    --train_file $D/train.csv --validation_file $D/validation.csv --test_file $D/test.csv \
    --model_dir /tmp/rb/model --output_data_dir /tmp/rb/data --output_dir /tmp/rb/checkpoints \
    --num_train_epochs 1 > "$OUT/train-roberta-base-shape.log" 2>&1
echo "train.py exit $?, $(( SECONDS - t0 )) s wall"; tail -25 "$OUT/train-roberta-base-shape.log"
cp /tmp/rb/data/all_results.json "$OUT/train-roberta-base-shape.json" 2>/dev/null
fi

if wanted long_records; then
step "long_records: MiniLM, 5 epochs"
python3 benchmarks/long_records.py --model .gpu/minilm --no-serving --deadline "$DEADLINE" \
    --poolings max mean logsumexp --keep /tmp/lr --json "$OUT/long_records.json"
tar czf "$OUT/long_records_logs.tgz" -C /tmp/lr --exclude=model --exclude=checkpoints --exclude=data-subset . 2>/dev/null
fi

if wanted generalisation; then
# First each candidate change against the defaults on 3 runs (fold k with seed k), then the
# defaults on the other 6 (fold, seed) pairs; the second call reuses the first's 3 default
# runs. Several MiniLM runs share the GPU at once; JSON is written after every run.
G="python3 benchmarks/generalisation.py --model .gpu/minilm --folds 3 --seeds 0 1 2 --parallel ${PARALLEL:-6} --keep /tmp/gen"
step "generalisation: MiniLM, candidate changes, 3 folds paired with 3 seeds, 5 epochs"
$G --pairing diagonal --json "$OUT/generalisation-candidates.json" \
    --variant lr-3e-5=--learning_rate=3e-5 --variant lr-1e-4=--learning_rate=1e-4 \
    --variant epochs-3=--num_train_epochs=3 --variant epochs-8=--num_train_epochs=8 \
    --variant pos-none=--pos_weight=none --variant bias-zero=--head_bias_init=zero \
    --variant best-micro-f1=--metric_for_best_model=micro_f1
step "generalisation: MiniLM, defaults, 3 folds x 3 seeds, 5 epochs"
$G --pairing all --json "$OUT/generalisation.json"
fi
if wanted label_sets; then
# Every Debtags label set (seven of ten tags) with two seeds, as on the CPU machine
# (learning rate 1e-4, the README's advice for MiniLM; 128 tokens), then the 104-tag set.
step "label_sets: MiniLM, 7 label sets x 2 seeds, 5 epochs"
python3 benchmarks/label_sets.py --model .gpu/minilm --seeds 0 1 --parallel ${PARALLEL:-6} \
    --train-arg=--learning_rate=1e-4 --train-arg=--max_seq_length=128 \
    --keep /tmp/sets --json "$OUT/label_sets.json"
step "many_labels: MiniLM, 10 against 104 labels, 1 epoch"
python3 benchmarks/many_labels.py --model .gpu/minilm --keep /tmp/many --json "$OUT/many_labels.json"
fi
if wanted cpu_int8; then
step "cpu_int8: endpoint paths on 4 CPU cores"
grep -m1 "model name" /proc/cpuinfo
grep -o -w -E "avx512_vnni|avx_vnni|amx_int8|avx512f" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
CUDA_VISIBLE_DEVICES= taskset -c 0-3 python3 benchmarks/precision_throughput.py speed --repeats 10 --threads 4 \
    --json "$OUT/cpu-int8-speed.json"
fi
step done
