#!/usr/bin/env bash
# Build the Dockerfile without a Docker daemon (buildah, chroot isolation, vfs storage)
# on a Debian bookworm base made here with debootstrap, then run both SageMaker roles in
# the built image: `train` in a SageMaker-shaped /opt/ml tree, then `serve`, and check
# the answer of one invocation. Prints the build time and the image size.
#
#   make container-test      (as root; installs buildah and debootstrap if missing)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${CONTAINER_WORK:-/tmp/multilabel-container}
PY="$ROOT/.venv/bin/python"
IMAGE=localhost/multilabel:test
BASE=localhost/bookworm-python:latest
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { printf '\n== %s\n' "$*"; }

command -v buildah >/dev/null && command -v debootstrap >/dev/null || {
  log "installing buildah and debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null
}
mkdir -p "$WORK"
cat > "$WORK/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
CONF
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf"
BUILDAH=(buildah --storage-driver vfs)

if ! "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  log "base image: debootstrap bookworm (minbase + python3)"
  rm -rf "$WORK/rootfs" "$WORK/base"
  mkdir -p "$WORK/base"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" "$MIRROR" >/dev/null
  tar -C "$WORK/rootfs" -cf "$WORK/base/rootfs.tar" .
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/bash"]\n' > "$WORK/base/Containerfile"
  "${BUILDAH[@]}" bud --isolation chroot -q -t "$BASE" -f "$WORK/base/Containerfile" "$WORK/base" >/dev/null
  rm -rf "$WORK/rootfs" "$WORK/base/rootfs.tar"
fi

log "building $IMAGE from the Dockerfile"
# The machine's pip reaches PyPI through a private CA, and keeps the CPU build of torch in
# a local folder (see `pip config list`): both are mounted read-only into the build.
WHEELS=$(pip config get global.find-links 2>/dev/null || true)
CA=$(pip config get global.cert 2>/dev/null || echo /etc/ssl/certs/ca-certificates.crt)
mounts=(-v "$CA:/build-ca/ca.crt:ro")
args=(--build-arg "BASE_IMAGE=$BASE" --build-arg CA_BUNDLE=/build-ca/ca.crt)
if [ -n "$WHEELS" ] && [ -d "$WHEELS" ]; then
  mounts+=(-v "$WHEELS:/build-wheels:ro")
  args+=(--build-arg WHEELS_DIR=/build-wheels)
fi
started=$(date +%s)
"${BUILDAH[@]}" bud --isolation chroot --layers=false "${mounts[@]}" "${args[@]}" -t "$IMAGE" "$ROOT"
build_seconds=$(( $(date +%s) - started ))
size=$("${BUILDAH[@]}" images --format '{{.Size}}' "$IMAGE")
"${BUILDAH[@]}" images "$IMAGE"

log "train: the SageMaker training toolkit inside the image, on the sample data and a tiny model"
OPTML="$WORK/opt-ml"
rm -rf "$OPTML"
(cd "$ROOT" && "$PY" -m tests.support.tiny_model --data "$ROOT/data/train.csv" --out "$OPTML/input/data/model" >/dev/null)
"$PY" - "$OPTML" <<'PYEOF'
import json, shutil, sys
from pathlib import Path
base = Path(sys.argv[1])
config = base / "input" / "config"; config.mkdir(parents=True)
hps = {"model_name_or_path": "/opt/ml/input/data/model", "num_train_epochs": 2, "learning_rate": 1e-3,
       "max_seq_length": 64, "per_device_train_batch_size": 16}
(config / "hyperparameters.json").write_text(json.dumps({k: json.dumps(v) for k, v in hps.items()}))
channels = ["train", "validation", "test", "model"]
(config / "inputdataconfig.json").write_text(json.dumps({c: {"TrainingInputMode": "File"} for c in channels}))
(config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
for split in ("train", "validation", "test"):
    (base / "input" / "data" / split).mkdir(parents=True)
for d in ("model", "output/data", "checkpoints"):
    (base / d).mkdir(parents=True, exist_ok=True)
PYEOF
for split in train validation test; do cp "$ROOT/data/$split.csv" "$OPTML/input/data/$split/"; done
chown -R 1000:1000 "$OPTML"  # the image runs as uid 1000, as SageMaker's own /opt/ml would be owned
ctr=$("${BUILDAH[@]}" from "$IMAGE")
trap '"${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
# SageMaker mounts these four under /opt/ml; the image's own /opt/ml/code stays visible.
volumes=()
for d in input model output checkpoints; do volumes+=(-v "$OPTML/$d:/opt/ml/$d"); done
"${BUILDAH[@]}" run --isolation chroot "${volumes[@]}" "$ctr" -- \
  env SM_STUDIO_LOCAL_MODE=true HF_HUB_OFFLINE=1 /usr/local/bin/entrypoint.sh train
test -f "$OPTML/output/success" || { echo "training failed: $(cat "$OPTML/output/failure" 2>/dev/null)"; exit 1; }
for f in config.json model.safetensors classifier_config.json code/inference.py code/multilabel/serving/classifier.py; do
  test -f "$OPTML/model/$f" || { echo "missing in the model directory: $f"; exit 1; }
done
echo "train: the model directory is complete"

# serve_and_check NAME [VAR=VALUE ...]: start the `serve` role with those endpoint settings,
# send one request, and compare the answer with the same model and settings on the host.
serve_and_check() {
  local name=$1; shift
  log "serve ($name): the Hugging Face inference toolkit inside the image, on port 8080"
  setsid "${BUILDAH[@]}" run --isolation chroot -v "$OPTML/model:/opt/ml/model" "$ctr" -- \
    env HF_HUB_OFFLINE=1 "$@" /usr/local/bin/entrypoint.sh serve > "$WORK/serve-$name.log" 2>&1 &
  server=$!
  body='{"inputs": [{"casePart1": "Perl module for parsing CSV files", "casePart2": "This module parses CSV."}]}'
  answer=""
  for _ in $(seq 1 120); do
    if answer=$(curl -sf -X POST -H 'Content-Type: application/json' -d "$body" http://127.0.0.1:8080/invocations); then break; fi
    sleep 2
  done
  kill -- -"$server" 2>/dev/null || true
  sleep 3
  test -n "$answer" || { echo "no answer from the server"; tail -50 "$WORK/serve-$name.log"; exit 1; }
  env "$@" "$PY" - "$OPTML/model" "$answer" "$name" <<'PYEOF'
import json, sys
sys.path.insert(0, sys.argv[1] + "/code")
from multilabel.classifier import Classifier
record = {"casePart1": "Perl module for parsing CSV files", "casePart2": "This module parses CSV."}
expected = Classifier.load(sys.argv[1], device="cpu").predict([record])
got = json.loads(sys.argv[2])
assert [r["labels"] for r in got] == [r["labels"] for r in expected], (got, expected)
assert all(abs(got[0]["scores"][k] - v) < 1e-5 for k, v in expected[0]["scores"].items())
print(f"serve ({sys.argv[3]}): labels and scores match the model run on the host:", got[0]["labels"])
PYEOF
}
trap '"${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
serve_and_check torch
# The ONNX Runtime path of the image's own requirements: exported on the host, as packing does.
"$PY" -m multilabel.onnx_export "$OPTML/model" >/dev/null
chown -R 1000:1000 "$OPTML/model"
serve_and_check onnx-int8 MULTILABEL_RUNTIME=onnx MULTILABEL_PRECISION=int8
log "image built in ${build_seconds}s; size ${size}"
