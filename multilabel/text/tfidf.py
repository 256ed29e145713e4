"""The TF-IDF half of a hybrid model (train.py's default, `--hybrid auto`), served with numpy.

Word 1-2-gram TF-IDF (sublinear term frequency, terms in at least 2 training records) and
one logistic regression per label (class_weight "balanced"), fitted by scikit-learn on the
training rows. The endpoint has no scikit-learn, so the fitted model is exported to
`tfidf.npz` in the model directory (terms, idf, coefficients, intercepts) and scored here
with numpy alone, exactly as scikit-learn scores it (tests/test_tfidf.py compares the two
on real rows). `analyse` turns a text into terms for both: training hands it to
scikit-learn as the analyser, so training and serving read text through one function.

A record's text is its text columns joined by a newline; its hybrid probability is
`weight * encoder + (1 - weight) * tfidf`, with the weight chosen on validation by average
precision (`metrics.choose_blend_weight`) and saved in `classifier_config.json` (`hybrid_weight`).

Standard library and numpy only at import time: this module travels in the endpoint's `code/`.
"""

from __future__ import annotations

import random
import re
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from multilabel.core.artifact import TFIDF_FILE, ClassifierConfig

# train.py --hybrid: 'auto' (the default) fits the TF-IDF half wherever the training rows allow
# it and trains the encoder alone, with a warning, where they do not (too few rows sharing a
# word); 'tfidf' requires it (an error otherwise); 'none' never fits it. On Debtags label sets
# nobody tuned on, the hybrid's worst set is 5.7 macro-F1 points above the encoder alone's
# (benchmarks/README.md, "Label sets nobody tuned on"), so it is on by default.
AUTO_HYBRID, NO_HYBRID, TFIDF_HYBRID = "auto", "none", "tfidf"
HYBRIDS = (AUTO_HYBRID, NO_HYBRID, TFIDF_HYBRID)
# How the hybrid's encoder weight is chosen (train.py --hybrid_blend): one for every label, or
# one per label, pulled toward the shared one by the label's validation positives. per_label is
# the default: on Debtags label sets nobody tuned on it is the hybrid that stays within noise of
# the encoder alone on every set (benchmarks/README.md, "Label sets nobody tuned on").
GLOBAL_BLEND, PER_LABEL_BLEND = "global", "per_label"
HYBRID_BLENDS = (GLOBAL_BLEND, PER_LABEL_BLEND)
MIN_DF = 2  # a term must appear in this many training records
# At most this many terms, the most frequent in training (scikit-learn's max_features): it
# bounds tfidf.npz and the endpoint's memory however large the training set (debian-tags:
# 38,416 terms from 5,001 rows, a 3.0 MB file with 10 labels).
MAX_TERMS = 200_000
# And at most this many coefficients (labels x terms, float64: 160 MB at the endpoint), so
# that many labels keep fewer terms: 200,000 up to 100 labels, 20,000 at 1,000 labels.
MAX_COEFFICIENTS = 20_000_000
# And at most this many training rows, a random sample of a larger training set: the fit's
# time and memory grow with the rows (2 cores: 66 s and 1.2 GB at 300,000 rows and 10 labels,
# 192 s and 3.4 GB at a million; benchmarks/README.md, "The hybrid's TF-IDF half at scale"),
# and with that many rows the encoder carries the blend.
MAX_FIT_ROWS = 300_000


def fit_rows(count: int, seed: int) -> list[int] | None:
    """Which of `count` training rows the TF-IDF half is fitted on: all (None) up to
    MAX_FIT_ROWS, else a random MAX_FIT_ROWS of them, in their order."""
    if count <= MAX_FIT_ROWS:
        return None
    return sorted(random.Random(seed).sample(range(count), MAX_FIT_ROWS))


def term_budget(num_labels: int) -> int:
    """How many terms the TF-IDF half keeps for `num_labels` labels."""
    return max(1, min(MAX_TERMS, MAX_COEFFICIENTS // max(1, num_labels)))


# scikit-learn's default token pattern: words of two or more word characters.
_WORD = re.compile(r"(?u)\b\w\w+\b")


def analyse(text: str) -> list[str]:
    """The text's terms: lower-cased words and each pair of consecutive words."""
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in pairwise(words)]


def record_text(record: Mapping[str, str], columns: Sequence[str]) -> str:
    """The text the TF-IDF model reads from a record: its text columns, joined by a newline."""
    return "\n".join(record.get(column, "") or "" for column in columns)


def column_texts(columns: Mapping[str, Sequence[str]], names: Sequence[str]) -> list[str]:
    """`record_text` for column-wise data (a `datasets.Dataset` split, a dict of lists)."""
    values = [columns[name] for name in names]
    return ["\n".join(v or "" for v in row) for row in zip(*values, strict=True)]


def blend(encoder: np.ndarray, tfidf: np.ndarray, weight: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """The hybrid probabilities: `weight` of the encoder's, the rest TF-IDF's (one weight, or
    one per label in label order)."""
    weight = np.asarray(weight, dtype=np.float64)
    return weight * np.asarray(encoder, dtype=np.float64) + (1.0 - weight) * tfidf


@dataclass
class TfidfModel:
    """A fitted TF-IDF + per-label logistic regression, as arrays."""

    terms: list[str]
    idf: np.ndarray  # (terms,)
    coef: np.ndarray  # (labels, terms)
    intercept: np.ndarray  # (labels,)

    def __post_init__(self) -> None:
        self.index = {term: i for i, term in enumerate(self.terms)}

    @property
    def num_labels(self) -> int:
        return len(self.intercept)

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The text's TF-IDF vector as (term indices, l2-normalised weights)."""
        counts = Counter(i for i in map(self.index.get, analyse(text)) if i is not None)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        weights = (1.0 + np.log(tf)) * self.idf[idx]
        return idx, weights / np.linalg.norm(weights)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Per-label probabilities, texts x labels (float64)."""
        scores = np.tile(self.intercept, (len(texts), 1))
        for row, text in enumerate(texts):
            idx, weights = self.features(text)
            scores[row] += self.coef[:, idx] @ weights
        return 1.0 / (1.0 + np.exp(-scores))

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / TFIDF_FILE
        np.savez_compressed(
            path,
            terms=np.array(self.terms, dtype=str),
            idf=self.idf,
            coef=self.coef,
            intercept=self.intercept,
        )
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> TfidfModel:
        """Read `tfidf.npz` (plain arrays: never unpickles)."""
        path = Path(model_dir) / TFIDF_FILE
        if path.is_file() and not zipfile.is_zipfile(path):
            raise ValueError("not a numpy .npz archive of arrays; write it again with train.py")
        with np.load(Path(model_dir) / TFIDF_FILE, allow_pickle=False) as arrays:
            return cls(arrays["terms"].tolist(), arrays["idf"], arrays["coef"], arrays["intercept"])


def fit_sklearn(texts: Sequence[str], labels: np.ndarray, max_terms: int | None = None):
    """scikit-learn's vectoriser (the `max_terms` most frequent terms, by default the labels'
    `term_budget`) and one fitted logistic regression per label (None for a label that never
    or always occurs in training: it gets a constant probability)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    max_terms = max_terms or term_budget(np.asarray(labels).shape[1])
    vectorizer = TfidfVectorizer(analyzer=analyse, sublinear_tf=True, min_df=MIN_DF, max_features=max_terms)
    features = vectorizer.fit_transform(texts)
    estimators = []
    for column in np.asarray(labels).T:
        if column.min() == column.max():
            estimators.append(None)
            continue
        estimators.append(LogisticRegression(class_weight="balanced", max_iter=2000).fit(features, column))
    return vectorizer, estimators


def fit(texts: Sequence[str], labels: np.ndarray, max_terms: int | None = None) -> TfidfModel:
    """Fit on the training rows (scikit-learn, training side only) and export to arrays."""
    vectorizer, estimators = fit_sklearn(texts, labels, max_terms)
    return from_sklearn(vectorizer, estimators, np.asarray(labels))


def from_sklearn(vectorizer, estimators: Sequence, labels: np.ndarray) -> TfidfModel:
    """The arrays of a fitted vectoriser and its per-label regressions."""
    terms = vectorizer.get_feature_names_out().tolist()
    coef = np.zeros((len(estimators), len(terms)))
    intercept = np.zeros(len(estimators))
    for k, estimator in enumerate(estimators):
        if estimator is None:  # a constant label: probability 0 or 1 whatever the text
            intercept[k] = 40.0 if labels[0, k] else -40.0
        else:
            coef[k] = estimator.coef_[0]
            intercept[k] = estimator.intercept_[0]
    return TfidfModel(terms, vectorizer.idf_.astype(np.float64), coef, intercept)


def load_tfidf(
    model_dir: str | Path, config: ClassifierConfig | None, num_labels: int
) -> tuple[TfidfModel | None, str | None]:
    """The TF-IDF half of a hybrid model (None otherwise), or why it cannot be used."""
    if config is None or config.hybrid_weight is None:
        return None, None
    try:
        tfidf = TfidfModel.load(model_dir)
    except (OSError, KeyError, ValueError) as err:
        return (
            None,
            f"{TFIDF_FILE}: classifier_config.json has a hybrid_weight but {TFIDF_FILE} cannot be read ({err})",
        )
    if tfidf.num_labels != num_labels or tfidf.coef.shape != (num_labels, len(tfidf.terms)):
        return None, (
            f"{TFIDF_FILE}: {tfidf.num_labels} labels and {len(tfidf.terms)} terms with coefficients "
            f"{tfidf.coef.shape}; the model has {num_labels} labels"
        )
    return tfidf, None
