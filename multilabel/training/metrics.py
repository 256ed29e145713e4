"""Multi-label metrics and per-label decision thresholds.

Everything takes probabilities (after sigmoid), a 0/1 label matrix and the thresholds,
so the numbers reported at evaluation, after tuning and on the test set all come from
one function.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from multilabel.core import metric_names
from multilabel.core.threshold_strategies import (
    CANDIDATES,
    CROSS_VALIDATED,
    CV_FOLDS,
    DEFAULT_THRESHOLD_STRATEGY,
    FIXED,
    GLOBAL,
    MIN_TUNED_F1,
    PER_LABEL,
    PREVALENCE,
    PREVALENCE_POSITIVES,
    SHRINK_POSITIVES,
    SHRUNK,
    THRESHOLD_STRATEGIES,
)
from multilabel.text import decisions
from multilabel.text.tfidf import blend

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float64."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -logits))


def decide(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """0/1 decisions, as the endpoint decides (`multilabel.text.decisions.decide`)."""
    return decisions.decide(probs, thresholds).astype(np.int64)


def multilabel_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray | float = DEFAULT_THRESHOLD,
    label_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Aggregate and per-label metrics of thresholded predictions, keyed as `metric_names` says.

    First `metric_names.AGGREGATE`, in that order: micro/macro/weighted/samples F1,
    micro/macro precision and recall, subset accuracy, Hamming loss, micro/macro ROC-AUC
    (only where some label has both classes) and average precision; then, label by label,
    `metric_names.PER_LABEL` (precision, recall, F1, support) as `<metric>_<label name>`.
    """
    y_true = (np.asarray(labels) >= 0.5).astype(np.int64)
    y_pred = decide(probs, thresholds)
    label_names = list(label_names) if label_names is not None else [str(i) for i in range(y_true.shape[1])]
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ill-defined scores are reported as 0, by design
        for avg in metric_names.F1_AVERAGES:
            out[metric_names.averaged(avg, "f1")] = f1_score(y_true, y_pred, average=avg, zero_division=0)
        for avg in metric_names.PRECISION_RECALL_AVERAGES:
            p, r, _, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
            out[metric_names.averaged(avg, "precision")], out[metric_names.averaged(avg, "recall")] = p, r
        out[metric_names.SUBSET_ACCURACY] = float(np.mean(np.all(y_true == y_pred, axis=1)))
        out[metric_names.HAMMING_LOSS] = hamming_loss(y_true, y_pred)
        defined = (y_true.min(axis=0) == 0) & (y_true.max(axis=0) == 1)
        if defined.any():
            for avg in metric_names.RANKING_AVERAGES:
                out[metric_names.averaged(avg, metric_names.ROC_AUC)] = roc_auc_score(
                    y_true[:, defined], probs[:, defined], average=avg
                )
        for avg in metric_names.RANKING_AVERAGES:
            # Always present, as the best-checkpoint metric; NaN when no label is defined.
            out[metric_names.averaged(avg, metric_names.AVERAGE_PRECISION)] = (
                average_precision_score(y_true[:, defined], probs[:, defined], average=avg)
                if defined.any()
                else float("nan")
            )
        per_label = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    out.update(ranking_at_k(probs, y_true))
    for i, name in enumerate(label_names):
        for metric, values in zip(metric_names.PER_LABEL, per_label, strict=True):
            out[metric_names.per_label_key(metric, name)] = values[i]
    return {k: float(v) for k, v in out.items()}


def ranking_at_k(probs: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """precision@k and nDCG@k of each row's labels ranked by probability (`metric_names.PRECISION_AT`,
    `NDCG_AT`; k capped at the label count), over the rows with at least one true label."""
    truth = np.asarray(truth) >= 0.5
    ranked = np.argsort(-np.asarray(probs, dtype=np.float64), axis=1, kind="stable")
    labelled = truth.any(axis=1)
    hits = np.take_along_axis(truth, ranked, axis=1)[labelled].astype(np.float64)
    out = {}
    for k in metric_names.PRECISION_AT:
        top = min(k, truth.shape[1])
        out[metric_names.at_k("precision", k)] = (
            float(hits[:, :top].sum(axis=1).mean() / k) if len(hits) else float("nan")
        )
    gains = 1.0 / np.log2(np.arange(2, truth.shape[1] + 2))
    positives = truth[labelled].sum(axis=1)
    for k in metric_names.NDCG_AT:
        top = min(k, truth.shape[1])
        dcg = (hits[:, :top] * gains[:top]).sum(axis=1)
        ideal = np.array([gains[: min(n, top)].sum() for n in positives])
        out[metric_names.at_k("ndcg", k)] = float((dcg / ideal).mean()) if len(hits) else float("nan")
    return out


@dataclass(frozen=True)
class SplitEvaluation:
    """One split's probabilities and labels, with its metrics at the tuned thresholds and at 0.5."""

    probs: np.ndarray
    labels: np.ndarray
    tuned: dict[str, float]
    untuned: dict[str, float]


def evaluate_split(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, label_names: Sequence[str]
) -> SplitEvaluation:
    """`multilabel_metrics` at `thresholds` and at DEFAULT_THRESHOLD, computed once for every report."""
    return SplitEvaluation(
        probs=probs,
        labels=labels,
        tuned=multilabel_metrics(probs, labels, thresholds, label_names),
        untuned=multilabel_metrics(probs, labels, DEFAULT_THRESHOLD, label_names),
    )


def best_f1_threshold(probs: np.ndarray, truth: np.ndarray) -> float:
    """The threshold maximising F1 of one label; DEFAULT_THRESHOLD when it has no positive,
    or when no cut reaches MIN_TUNED_F1 (the "best" cut would then be noise).

    Sorting the scores gives F1 at every cut in one pass. The threshold sits halfway
    between the last score kept and the next one, so it does not hinge on one example.
    """
    truth = np.asarray(truth) >= 0.5
    n_pos = int(truth.sum())
    if n_pos == 0:
        return DEFAULT_THRESHOLD
    order = np.argsort(-probs, kind="stable")
    scores, hits = probs[order], truth[order]
    # Only cut between distinct scores: tied examples are kept or dropped together.
    last_of_tie = np.append(scores[1:] != scores[:-1], True)
    tp = np.cumsum(hits)[last_of_tie]
    kept = (np.arange(1, len(scores) + 1))[last_of_tie]
    f1 = 2 * tp / (kept + n_pos)
    best = int(np.argmax(f1))
    if f1[best] < MIN_TUNED_F1:
        return DEFAULT_THRESHOLD
    cut_scores = scores[last_of_tie]
    upper = cut_scores[best]
    lower = cut_scores[best + 1] if best + 1 < len(cut_scores) else 0.0
    return float((upper + lower) / 2)


def tune_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-label thresholds that maximise each label's F1 on the given (validation) set."""
    return np.array([best_f1_threshold(probs[:, j], labels[:, j]) for j in range(labels.shape[1])])


# The threshold strategies and their settings live in threshold_strategies (standard library, so
# that train.py's argument parser can name them without importing scikit-learn).


def micro_macro_f1(truth: np.ndarray, decided: np.ndarray) -> dict[str, float]:
    """{"micro": micro-F1, "macro": macro-F1} of 0/1 decisions (as `multilabel_metrics`, without
    scikit-learn's overhead: a label without positives or predictions scores 0)."""
    tp, total = _f1_counts(truth, decided)
    per_label = np.divide(2 * tp, total, out=np.zeros(len(tp)), where=total > 0)
    micro = 2 * tp.sum() / total.sum() if total.sum() else 0.0
    return {"micro": float(micro), "macro": float(per_label.mean())}


def _f1_counts(truth: np.ndarray, decided: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label: true positives, and positives plus predictions (F1 = 2 tp / total)."""
    truth, decided = np.asarray(truth) >= 0.5, np.asarray(decided) >= 0.5
    return (truth & decided).sum(axis=0), truth.sum(axis=0) + decided.sum(axis=0)


def global_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The one threshold for every label that maximises micro-F1 (every label's scores pooled)."""
    return best_f1_threshold(np.asarray(probs, dtype=np.float64).ravel(), np.asarray(labels).ravel())


def shrunk_thresholds(
    probs: np.ndarray, labels: np.ndarray, prior_positives: float = SHRINK_POSITIVES
) -> np.ndarray:
    """Per-label thresholds shrunk toward `global_threshold` in proportion to each label's positives.

    Label j gets w * own + (1 - w) * global with w = n_j / (n_j + prior_positives), n_j its
    positives: a label with many positives keeps about its own F1-optimal threshold, one
    with a handful (whose own threshold sits wherever those few scores fell) mostly the
    global one, a label without positives the global one.
    """
    positives = (np.asarray(labels) >= 0.5).sum(axis=0)
    weight = positives / (positives + prior_positives) if prior_positives > 0 else np.ones(len(positives))
    return weight * tune_thresholds(probs, labels) + (1 - weight) * global_threshold(probs, labels)


def prevalence_thresholds(
    probs: np.ndarray,
    labels: np.ndarray,
    train_share: np.ndarray,
    prior_positives: float = PREVALENCE_POSITIVES,
) -> np.ndarray:
    """Per-label thresholds shrunk toward the one at which each label fires as often as it
    occurs in training.

    Label j gets w * own + (1 - w) * anchor_j with w = n_j / (n_j + prior_positives), n_j
    its positives here, and anchor_j the score above which a `train_share[j]` share of
    these rows lies. The anchor rests on every row's score and on the training set's
    count of the label, not on the handful of positives a rare label has in validation:
    a label with 2 validation positives gets 1/6 of its own threshold, one without any
    the anchor alone (where `shrunk` would give it the global threshold, blind to how
    this label's scores are spread).
    """
    probs = np.asarray(probs, dtype=np.float64)
    share = np.clip(np.asarray(train_share, dtype=np.float64), 0.0, 1.0)
    anchor = np.array(
        [np.quantile(probs[:, j], 1.0 - share[j], method="higher") for j in range(probs.shape[1])]
    )
    positives = (np.asarray(labels) >= 0.5).sum(axis=0)
    weight = positives / (positives + prior_positives)
    return weight * tune_thresholds(probs, labels) + (1 - weight) * anchor


def fit_thresholds(
    strategy: str,
    probs: np.ndarray,
    labels: np.ndarray,
    prior_positives: float = SHRINK_POSITIVES,
    train_share: np.ndarray | None = None,
) -> np.ndarray:
    """Label-ordered thresholds of one of CANDIDATES, fitted on `probs` and `labels`.

    `prior_positives` is SHRUNK's prior; PREVALENCE anchors each label at `train_share`,
    its share of the training rows (without it, its share of the rows fitted on).
    """
    n_labels = np.asarray(labels).shape[1]
    if strategy == PER_LABEL:
        return tune_thresholds(probs, labels)
    if strategy == GLOBAL:
        return np.full(n_labels, global_threshold(probs, labels))
    if strategy == FIXED:
        return np.full(n_labels, DEFAULT_THRESHOLD)
    if strategy == SHRUNK:
        return shrunk_thresholds(probs, labels, prior_positives)
    if strategy == PREVALENCE:
        share = (np.asarray(labels) >= 0.5).mean(axis=0) if train_share is None else train_share
        return prevalence_thresholds(probs, labels, share)
    raise ValueError(f"unknown threshold strategy {strategy!r}; expected one of {list(CANDIDATES)}")


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per row, each label's positives spread evenly over the folds.

    Rows are grouped by their rarest positive label (rows without one last), shuffled
    within the group, and dealt out in turn: a label with 10 positives puts 2 in each of
    5 folds rather than, by chance, 0 in one of them.
    """
    truth = np.asarray(labels) >= 0.5
    n_rows = truth.shape[0]
    positives = truth.sum(axis=0)
    rarity = np.where(truth, positives[None, :], np.iinfo(np.int64).max).min(axis=1)
    order = np.lexsort((np.random.default_rng(seed).permutation(n_rows), rarity))
    assignment = np.empty(n_rows, dtype=np.int64)
    assignment[order] = np.arange(n_rows) % folds
    return assignment


def out_of_fold_decisions(
    probs: np.ndarray,
    truth: np.ndarray,
    strategy: str,
    fold_of: np.ndarray,
    prior_positives: float = SHRINK_POSITIVES,
    train_share: np.ndarray | None = None,
) -> np.ndarray:
    """0/1 decisions of every row, each fold's at thresholds `strategy` fitted on the other folds."""
    decided = np.zeros_like(truth)
    for fold in np.unique(fold_of):
        held_out = fold_of == fold
        thresholds = fit_thresholds(
            strategy, probs[~held_out], truth[~held_out], prior_positives, train_share
        )
        decided[held_out] = decide(probs[held_out], thresholds)
    return decided


def cross_validated_scores(
    probs: np.ndarray,
    labels: np.ndarray,
    folds: int = CV_FOLDS,
    seed: int = 0,
    prior_positives: float = SHRINK_POSITIVES,
    train_share: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Micro- and macro-F1 of each of CANDIDATES' out-of-fold decisions on the whole set.

    Each fold is decided with thresholds fitted on the other folds; the decisions of all
    folds together are then scored once (per-fold scores of a label with a few positives
    would be mostly noise).
    """
    truth = (np.asarray(labels) >= 0.5).astype(np.int64)
    fold_of = stratified_folds(truth, folds, seed)
    return {
        strategy: micro_macro_f1(
            truth, out_of_fold_decisions(probs, truth, strategy, fold_of, prior_positives, train_share)
        )
        for strategy in CANDIDATES
    }


@dataclass(frozen=True)
class ThresholdChoice:
    """The thresholds a strategy chose on the validation set, and why.

    `applied` is the strategy whose thresholds these are (`requested` itself, or the one
    cross-validation chose). `cv_scores` (cross-validation only): each candidate's
    out-of-fold micro/macro-F1; `expected_gain`: the applied candidate's minus per-label
    tuning's there.
    """

    requested: str
    applied: str
    thresholds: np.ndarray
    positives: np.ndarray
    global_threshold: float
    cv_scores: dict[str, dict[str, float]] | None = None
    expected_gain: dict[str, float] | None = None

    def record(self, label_names: Sequence[str]) -> dict:
        """JSON-ready summary, saved as `classifier_config.json`'s `threshold_selection`."""
        out = {
            "requested": self.requested,
            "applied": self.applied,
            "global_threshold": self.global_threshold,
            "validation_positives": {n: int(p) for n, p in zip(label_names, self.positives, strict=True)},
        }
        if self.cv_scores is not None:
            out["cv_f1"] = self.cv_scores
            out["expected_gain_over_per_label"] = self.expected_gain
        return out


def cv_criterion(score: dict[str, float]) -> float:
    """What cross-validation maximises: the mean of micro- and macro-F1."""
    return (score["micro"] + score["macro"]) / 2


def choose_thresholds(
    probs: np.ndarray,
    labels: np.ndarray,
    strategy: str = DEFAULT_THRESHOLD_STRATEGY,
    folds: int = CV_FOLDS,
    seed: int = 0,
    prior_positives: float = SHRINK_POSITIVES,
    train_share: np.ndarray | None = None,
) -> ThresholdChoice:
    """Thresholds for `probs` by one of THRESHOLD_STRATEGIES, fitted on `probs` and `labels`.

    With CROSS_VALIDATED, the candidate with the best mean of micro- and macro-F1 over
    `folds` held-out folds (ties to the one with fewer fitted numbers) is then fitted on
    the whole set. A set too small to split into folds gets SHRUNK. `train_share` is each
    label's share of the training rows: PREVALENCE's anchor (`prevalence_thresholds`), and
    a label whose share is 0 keeps DEFAULT_THRESHOLD whatever the strategy: the model never
    saw it, and a threshold tuned to its noise floor would fire on many rows.
    """
    if strategy not in THRESHOLD_STRATEGIES:
        raise ValueError(
            f"unknown threshold strategy {strategy!r}; expected one of {list(THRESHOLD_STRATEGIES)}"
        )
    truth = (np.asarray(labels) >= 0.5).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    applied, cv_scores, gain = strategy, None, None
    if strategy == CROSS_VALIDATED:
        folds = min(folds, len(truth))
        if folds < 2:
            applied = SHRUNK
            logger.warning(
                "%d validation rows: too few to cross-validate thresholds; using %s", len(truth), SHRUNK
            )
        else:
            cv_scores = cross_validated_scores(probs, truth, folds, seed, prior_positives, train_share)
            applied = max(cv_scores, key=lambda s: cv_criterion(cv_scores[s]))  # first of ties
            gain = {avg: cv_scores[applied][avg] - cv_scores[PER_LABEL][avg] for avg in ("micro", "macro")}
    thresholds = fit_thresholds(applied, probs, truth, prior_positives, train_share)
    if train_share is not None:
        thresholds = np.where(np.asarray(train_share) == 0, DEFAULT_THRESHOLD, thresholds)
    return ThresholdChoice(
        requested=strategy,
        applied=applied,
        thresholds=decisions.threshold_array(thresholds),  # the one shape, to the endpoint
        positives=truth.sum(axis=0),
        global_threshold=global_threshold(probs, truth),
        cv_scores=cv_scores,
        expected_gain=gain,
    )


BLEND_WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
# Prior strength of a per-label blend weight, in validation positives: a label with this many
# keeps half its own weight and takes half the shared one, as PREVALENCE_POSITIVES does for
# thresholds. On ten Debtags label-set runs (most labels with 2 to 10 validation positives)
# pulling toward the shared weight raised mean macro-F1 under the default thresholds by about
# a point over each label's own weight, and 5, 10 and 20 differ by 0.3 at most there
# (benchmarks/README.md, "Label sets nobody tuned on").
BLEND_POSITIVES = 10


def blend_precision(encoder: np.ndarray, other: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each label's average precision on `labels` of the blend at each of BLEND_WEIGHTS:
    shape (weights, labels), NaN for a label without positives there.

    Average precision scores how the blend ranks the rows, whatever the thresholds: every
    positive counts, where F1 at a threshold hinges on the two or three positives nearest it.
    """
    truth = np.asarray(labels) >= 0.5
    scores = np.full((len(BLEND_WEIGHTS), truth.shape[1]), np.nan)
    scored = np.flatnonzero(truth.any(axis=0))
    if len(scored) == 0:
        return scores
    for i, weight in enumerate(BLEND_WEIGHTS):
        blended = blend(encoder[:, scored], other[:, scored], weight)
        scores[i, scored] = average_precision_score(truth[:, scored], blended, average=None)
    return scores


def _best_weight(scores: np.ndarray) -> float:
    """The weight of BLEND_WEIGHTS whose score is highest, ties to the larger encoder share."""
    return max(BLEND_WEIGHTS, key=lambda w: (scores[BLEND_WEIGHTS.index(w)], w))


@dataclass(frozen=True)
class BlendChoice:
    """How a hybrid's encoder weights were chosen on the validation set.

    `shared`: the one weight with the best macro average precision; `own[j]`: label j's best
    weight by its own average precision (`shared` without positives); `weights[j]`: the weight
    kept, `own[j]` pulled toward `shared` by label j's positives (BLEND_POSITIVES); `scores`:
    `blend_precision`'s table.
    """

    shared: float
    own: np.ndarray
    weights: np.ndarray
    positives: np.ndarray
    scores: np.ndarray


def choose_blend_weight(
    encoder: np.ndarray, other: np.ndarray, labels: np.ndarray
) -> tuple[float, dict[float, float]]:
    """The encoder's share in a blend with another model's probabilities (`tfidf.blend`): the
    weight of BLEND_WEIGHTS with the best macro average precision on `labels` (over the labels
    with positives; ties to the larger encoder share; the encoder alone when no label has
    any). Returns it and every weight's macro average precision.

    Chosen by ranking, not by F1 at thresholds: the thresholds are fitted afterwards by the
    threshold strategy, so the weight does not depend on which one.
    """
    return _shared_weight(blend_precision(encoder, other, labels))


def _shared_weight(table: np.ndarray) -> tuple[float, dict[float, float]]:
    """`choose_blend_weight` from `blend_precision`'s table."""
    if np.isnan(table).all():
        return 1.0, {w: float("nan") for w in BLEND_WEIGHTS}
    macro = np.nanmean(table, axis=1)
    return _best_weight(macro), dict(zip(BLEND_WEIGHTS, macro.tolist(), strict=True))


def choose_blend_weights(
    encoder: np.ndarray, other: np.ndarray, labels: np.ndarray, prior_positives: float = BLEND_POSITIVES
) -> BlendChoice:
    """One encoder weight per label for a blend with another model (`tfidf.blend` takes the array).

    Each label's own best weight by its validation average precision, pulled toward the shared
    weight (`choose_blend_weight`) as thresholds are toward their anchor: with n positives the
    label keeps n / (n + prior_positives) of its own weight, so a weight resting on two
    positives stays near the shared one and one resting on a hundred is mostly the label's own.
    """
    table = blend_precision(encoder, other, labels)
    shared, _ = _shared_weight(table)
    positives = (np.asarray(labels) >= 0.5).sum(axis=0)
    own = np.array([shared if np.isnan(column).all() else _best_weight(column) for column in table.T])
    share = positives / (positives + prior_positives) if prior_positives > 0 else np.ones(len(positives))
    weights = np.round(share * own + (1.0 - share) * shared, 4)
    return BlendChoice(shared, own, weights, positives, table)
