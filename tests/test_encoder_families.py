"""Every encoder family end to end: BERT, RoBERTa, DistilBERT, DeBERTa-v2, ModernBERT and MPNet.

Each is a tiny random model with its family's own tokenizer class (`tiny_model.build_tiny_model`).
In process: its pair encoding, token types, padding, head bias and length limit. Through
train.py: it trains, saves, and serves under the inference container's transformers (4.51.3)
with the scores train.py predicted. And a model with no sequence-classification head is
refused with a message, not a traceback.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    BertGenerationConfig,
    BertGenerationEncoder,
    DistilBertConfig,
    PreTrainedTokenizerBase,
)
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

from multilabel.data.schema import LabelSchema
from multilabel.text.pair_encoding import encode_pairs, pad_batch
from multilabel.training.arguments import ModelArguments
from multilabel.training.encoder import (
    classification_layer,
    compute_pos_weight,
    effective_max_length,
    initialise_head_bias,
    load_model_and_tokenizer,
)
from tests.helpers import DATA, FAST_ARGS, LABELS, ROOT, assert_same_decisions, read_csv, run_train
from tests.support.tiny_model import FAMILIES, build_tiny_model, tiny_config

SERVING_PYTHON = Path(os.environ.get("SERVING_VENV", ROOT / ".venv-serving")) / "bin" / "python"
SCHEMA = LabelSchema("indicator", tuple(LABELS), tuple(LABELS))
# One intra-op thread: on a busy 2-core machine two threads wait on each other ~100x longer
# than the tiny models compute.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
MAX_POSITIONS = 130

# What each family's real checkpoints use; only BERT embeds a second token type. RoBERTa
# has one type, DistilBERT, ModernBERT and MPNet take none, DeBERTa-v3 has type_vocab_size 0.
TOKENIZER_CLASS = {
    "bert": "BertTokenizerFast",
    "roberta": "RobertaTokenizerFast",
    "distilbert": "DistilBertTokenizerFast",
    "deberta-v2": "DebertaV2TokenizerFast",
    "modernbert": "PreTrainedTokenizerFast",
    "mpnet": "MPNetTokenizerFast",
}
TAKES_TOKEN_TYPES = {"bert"}
HEAD = {  # the layer whose outputs are the logits
    "bert": "classifier",
    "roberta": "classifier.out_proj",
    "distilbert": "classifier",
    "deberta-v2": "classifier",
    "modernbert": "classifier",
    "mpnet": "classifier.out_proj",
}
# The longest input each can take at MAX_POSITIONS position embeddings, asked for 300:
# RoBERTa's and MPNet's positions start after the padding index; DeBERTa-v3's are relative only.
MAX_LENGTH = {
    "bert": 130,
    "roberta": 128,
    "distilbert": 130,
    "deberta-v2": 300,
    "modernbert": 130,
    "mpnet": 128,
}
ABSOLUTE_POSITIONS = {"bert", "roberta", "distilbert", "mpnet"}  # an embedding table that ends
DOUBLE_SEPARATOR = {"roberta", "mpnet"}  # <s> A </s></s> B </s>

TEXTS = ["fast C++ library for parsing BLAST output", "python module", "a game of chess for the desktop"]
PAIRS = ["This package provides a very fast library.", "", "Play chess against the computer or online."]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family's tiny model, built on first use."""

    class Models(dict):
        def __missing__(self, family: str) -> Path:
            out = tmp_path_factory.mktemp(family)
            self[family] = build_tiny_model(family, out, [DATA / "train.csv"], max_positions=MAX_POSITIONS)
            return self[family]

    return Models()


def load(model_dir: Path, tokenizer_dir: Path | None = None):
    model, tokenizer = load_model_and_tokenizer(
        ModelArguments(
            model_name_or_path=str(model_dir), tokenizer_name=str(tokenizer_dir) if tokenizer_dir else None
        ),
        SCHEMA,
    )
    return model.eval(), tokenizer


def train_labels() -> np.ndarray:
    return np.array([[float(r[n]) for n in LABELS] for r in read_csv(DATA / "train.csv")], dtype=np.float32)


def prior_bias(labels: np.ndarray, pos_weight: torch.Tensor | None) -> np.ndarray:
    """log(w p / (1 - p)) per label, a label never (always) on counting as half a row on (off)."""
    half = 0.5 / len(labels)
    p = np.clip(labels.mean(axis=0, dtype=np.float64), half, 1 - half)
    w = pos_weight.numpy().astype(np.float64) if pos_weight is not None else 1.0
    return np.log(w * p / (1 - p))


def assert_padding_changes_nothing(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
    """The rows padded into one batch score as each row alone."""
    features, _ = encode_pairs(tokenizer, TEXTS, PAIRS, 32)
    with torch.no_grad():
        together = model(**pad_batch(features, tokenizer.pad_token_id, 0, len(TEXTS))).logits
        alone = [model(**pad_batch(features, tokenizer.pad_token_id, i, i + 1)).logits[0] for i in range(3)]
    torch.testing.assert_close(together, torch.stack(alone), atol=1e-5, rtol=0)


def test_tiny_config_shapes_a_family_that_names_its_fields_differently() -> None:
    config = tiny_config(DistilBertConfig, intermediate_size=24)
    assert (config.dim, config.hidden_dim, config.n_layers) == (16, 24, 1)
    assert tiny_config(DistilBertConfig).hidden_dim == 32, "DistilBERT's feed-forward width"


@pytest.mark.parametrize("family", FAMILIES)
def test_pair_encoding_and_token_types_follow_the_family(tiny_models, family: str, tmp_path: Path) -> None:
    model, tokenizer = load(tiny_models[family])
    assert type(tokenizer).__name__ == TOKENIZER_CLASS[family]
    features, _ = encode_pairs(tokenizer, TEXTS, PAIRS, 32)
    assert ("token_type_ids" in features) == (family in TAKES_TOKEN_TYPES), sorted(features)
    for i, ids in enumerate(features["input_ids"]):
        assert len(ids) <= 32
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id, (family, ids)
        seps = [j for j, t in enumerate(ids) if t == tokenizer.sep_token_id]
        assert len(seps) == (3 if family in DOUBLE_SEPARATOR else 2), f"{family}: a pair is not two segments"
        if "token_type_ids" in features:  # segment A and its [SEP] are type 0, segment B type 1
            types = features["token_type_ids"][i]
            assert types == [0] * (seps[0] + 1) + [1] * (len(ids) - seps[0] - 1), types
    assert_padding_changes_nothing(model, tokenizer)
    # The saved tokenizer, the one the endpoint loads, encodes the same inputs.
    tokenizer.save_pretrained(tmp_path)
    saved = type(tokenizer).from_pretrained(tmp_path)
    assert encode_pairs(saved, TEXTS, PAIRS, 32)[0] == features


def test_a_tokenizer_with_token_types_for_a_model_without_them(tiny_models) -> None:
    """DistilBERT with a BERT tokenizer (its vocabulary, the same [CLS] A [SEP] B [SEP]):
    the model has no token type input, so the encoding must not carry one."""
    model, tokenizer = load(tiny_models["distilbert"], tokenizer_dir=tiny_models["bert"])
    assert type(tokenizer).__name__ == "BertTokenizerFast"
    features, _ = encode_pairs(tokenizer, TEXTS, PAIRS, 32)
    assert "token_type_ids" not in features
    assert_padding_changes_nothing(model, tokenizer)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_head_bias_starts_at_the_label_prior(tiny_models, family: str) -> None:
    model, tokenizer = load(tiny_models[family])
    labels = train_labels()
    pos_weight = compute_pos_weight(labels, "sqrt", cap=30.0)
    initialise_head_bias(model, labels, pos_weight)
    layer = classification_layer(model)
    assert dict((m, n) for n, m in model.named_modules())[layer] == HEAD[family]
    expected = prior_bias(labels, pos_weight)
    np.testing.assert_allclose(layer.bias.detach().numpy(), expected, atol=1e-6)
    # It is the layer that makes the logits: without its weights, every row scores the prior.
    with torch.no_grad():
        layer.weight.zero_()
        features, _ = encode_pairs(tokenizer, TEXTS, PAIRS, 32)
        logits = model(**pad_batch(features, tokenizer.pad_token_id, 0, len(TEXTS))).logits
    np.testing.assert_allclose(logits.numpy(), np.tile(expected, (len(TEXTS), 1)), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_max_length_is_what_the_positions_allow(tiny_models, family: str) -> None:
    model, tokenizer = load(tiny_models[family])
    tokenizer.model_max_length = VERY_LARGE_INTEGER  # as a tokenizer saved without a limit
    length = effective_max_length(300, tokenizer, model)
    assert length == MAX_LENGTH[family]
    ids = torch.full((1, length + 1), tokenizer.unk_token_id)
    with torch.no_grad():
        assert model(input_ids=ids[:, :length]).logits.isfinite().all()
        if family in ABSOLUTE_POSITIONS:
            with pytest.raises((IndexError, RuntimeError)):  # past the table's end
                model(input_ids=ids)


# Each model directory in turn, as the endpoint loads and serves it; one process for all
# (importing torch and transformers takes most of the time).
SERVE = """
import json, sys, traceback
records = json.loads(sys.stdin.read())
import transformers
served = {}
for model_dir in sys.argv[1:]:
    sys.path.insert(0, model_dir + "/code")  # as the inference toolkit does
    try:
        import inference
        from multilabel.text.pair_encoding import encode_pairs
        model = inference.model_fn(model_dir)
        request = inference.input_fn(json.dumps({"inputs": records}), "application/json")
        body = inference.output_fn(inference.predict_fn(request, model), "application/json")
        inputs = encode_pairs(model.tokenizer, ["a text"], ["its pair"], 16)[0]
        served[model_dir] = {"results": json.loads(body), "model": type(model.model).__name__,
                             "tokenizer": type(model.tokenizer).__name__, "inputs": sorted(inputs)}
    except Exception:
        served[model_dir] = {"error": traceback.format_exc()}
    finally:  # the next directory's own copy of the handler
        sys.path.remove(model_dir + "/code")
        for name in [m for m in sys.modules if m == "inference" or m.split(".")[0] == "multilabel"]:
            del sys.modules[name]
print(json.dumps({"transformers": transformers.__version__, "served": served}))
"""


@dataclass
class RoundTrip:
    """One family's train.py run, and what the endpoint made of its model directory."""

    train: subprocess.CompletedProcess
    model_dir: Path
    data_dir: Path
    served: dict = field(default_factory=dict)
    transformers: str = ""


@pytest.fixture(scope="module")
def round_trips(tiny_models, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RoundTrip]:
    """Each family trained by train.py, then served under the inference container's transformers."""
    assert SERVING_PYTHON.exists(), f"{SERVING_PYTHON} is missing: run `make test`, which creates it"
    trips = {}
    for family in FAMILIES:
        base = tmp_path_factory.mktemp(f"run-{family}")
        model_dir, data_dir = base / "model", base / "data"
        train = run_train(
            [
                f"--model_name_or_path={tiny_models[family]}",
                f"--train_file={DATA / 'train.csv'}",
                f"--validation_file={DATA / 'validation.csv'}",
                f"--test_file={DATA / 'test.csv'}",
                f"--model_dir={model_dir}",
                f"--output_data_dir={data_dir}",
                f"--output_dir={base / 'checkpoints'}",
                *FAST_ARGS,
                "--max_steps=4",  # a few steps prove the round trip; the scores still differ by record
            ],
            env=ONE_THREAD,
        )
        trips[family] = RoundTrip(train, model_dir, data_dir)
    trained = [str(t.model_dir) for t in trips.values() if t.train.returncode == 0]
    records = [
        {"casePart1": r["casePart1"], "casePart2": r["casePart2"]} for r in read_csv(DATA / "test.csv")
    ]
    serving = subprocess.run(
        [str(SERVING_PYTHON), "-c", SERVE, *trained],
        input=json.dumps(records),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path_factory.mktemp("serving"),
        env={**os.environ, **ONE_THREAD, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
    )
    assert serving.returncode == 0, serving.stderr[-3000:]
    output = json.loads(serving.stdout.strip().splitlines()[-1])
    for trip in trips.values():
        trip.served = output["served"].get(str(trip.model_dir), {})
        trip.transformers = output["transformers"]
    return trips


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("family", FAMILIES)
def test_train_save_and_serve_under_the_inference_container(round_trips, family: str) -> None:
    trip = round_trips[family]
    log = trip.train.stdout + trip.train.stderr
    assert trip.train.returncode == 0, log[-3000:]
    # train.py started the head at the training labels' prior (under --pos_weight sqrt, its default).
    labels = train_labels()
    logged = re.search(r"classification bias initialised from label frequencies: (\[.*?\])", log)
    assert logged, "train.py did not initialise the head bias"
    expected = prior_bias(labels, compute_pos_weight(labels, "sqrt", cap=30.0))
    np.testing.assert_allclose(ast.literal_eval(logged.group(1)), expected, atol=0.006)

    assert trip.transformers == "4.51.3"
    served = trip.served
    assert "error" not in served, served["error"][-3000:]
    assert served["tokenizer"] == TOKENIZER_CLASS[family]
    assert served["model"].endswith("ForSequenceClassification")
    types = {"token_type_ids"} if family in TAKES_TOKEN_TYPES else set()
    assert set(served["inputs"]) == {"input_ids", "attention_mask", *types}
    predictions = read_csv(trip.data_dir / "test_predictions.csv")
    trained = np.array([[float(p[f"prob_{n}"]) for n in LABELS] for p in predictions])
    scores = np.array([[r["scores"][n] for n in LABELS] for r in served["results"]])
    np.testing.assert_allclose(scores, trained, atol=1e-5, rtol=0)
    assert scores.std(axis=0).max() > 1e-3, "every record scored alike: the comparison proves little"
    thresholds = json.loads((trip.model_dir / "classifier_config.json").read_text())["thresholds"]
    assert_same_decisions(served["results"], predictions, thresholds)


@pytest.mark.slow
def test_a_model_without_a_sequence_classification_head_is_refused(tiny_models, tmp_path: Path) -> None:
    """BertGeneration has an encoder and no ForSequenceClassification class."""
    encoder_dir = tmp_path / "bert-generation"
    bert = tiny_models["bert"]
    _, tokenizer = load(bert)
    tokenizer.save_pretrained(encoder_dir)
    config = tiny_config(BertGenerationConfig, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    BertGenerationEncoder(config).save_pretrained(encoder_dir, safe_serialization=True)
    result = run_train(
        [
            f"--model_name_or_path={encoder_dir}",
            f"--train_file={DATA / 'train.csv'}",
            f"--validation_file={DATA / 'validation.csv'}",
            f"--model_dir={tmp_path / 'model'}",
            f"--output_data_dir={tmp_path / 'data'}",
            f"--output_dir={tmp_path / 'checkpoints'}",
            *FAST_ARGS,
        ],
        env=ONE_THREAD,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 2, log[-3000:]
    assert "Traceback" not in log
    message = next(line for line in log.splitlines() if " ERROR " in line)
    assert str(encoder_dir) in message and "bert-generation" in message
    assert "sequence-classification head" in message
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_windows_keep_each_familys_pair_structure(tiny_models, family: str) -> None:
    """Windows are ordinary (first, second) pairs of the family's tokenizer: its special
    tokens and token types, every window within the length, the record read to its end."""
    from multilabel.text.pair_encoding import pad_batch
    from multilabel.text.windows import encode_windows, pool_logits

    model, tokenizer = load(tiny_models[family])
    long = " ".join(TEXTS) * 20
    features, counts, stats = encode_windows(tokenizer, [TEXTS[0]], [long], 32, 50, 4)
    assert counts[0] > 2 and stats.tokens_dropped == 0, (counts, stats)
    assert ("token_type_ids" in features) == (family in TAKES_TOKEN_TYPES)
    for ids in features["input_ids"]:
        assert len(ids) <= 32 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    batch = pad_batch(features, tokenizer.pad_token_id, 0, len(features["input_ids"]))
    with torch.no_grad():
        logits = model(**batch).logits  # every window fits the model's positions
    assert logits.shape == (counts[0], len(LABELS)) and torch.isfinite(logits).all()
    assert torch.equal(pool_logits(logits, counts, "max")[0], logits.max(dim=0).values)
