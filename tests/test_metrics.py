"""Metrics and per-label threshold tuning, checked against brute force and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from multilabel.core.artifact import ClassifierConfig
from multilabel.text.decisions import threshold_array
from multilabel.training import metrics
from multilabel.training.metrics import (
    DEFAULT_THRESHOLD,
    MIN_TUNED_F1,
    best_f1_threshold,
    choose_thresholds,
    cross_validated_scores,
    decide,
    evaluate_split,
    global_threshold,
    micro_macro_f1,
    multilabel_metrics,
    shrunk_thresholds,
    sigmoid,
    stratified_folds,
    tune_thresholds,
)


def brute_force_best_f1(probs: np.ndarray, truth: np.ndarray) -> float:
    """The best F1 over every possible cut, each computed from its confusion counts."""
    candidates = np.concatenate([np.unique(probs), [1.1]])
    predicted = probs[None, :] >= candidates[:, None]  # one row per cut
    true_positives = (predicted & (truth[None, :] == 1)).sum(axis=1)
    return float(np.max(2 * true_positives / (predicted.sum(axis=1) + truth.sum())))


@pytest.mark.parametrize("seed", range(20))
def test_tuned_threshold_reaches_the_best_f1(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    truth = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    truth[0] = 1
    probs = np.clip(truth * rng.uniform(0, 0.5) + rng.random(n) * 0.7, 0, 1).round(int(rng.integers(1, 4)))
    threshold = best_f1_threshold(probs, truth)
    best = brute_force_best_f1(probs, truth)
    if best < MIN_TUNED_F1:  # no cut worth tuning: the default stands
        assert threshold == DEFAULT_THRESHOLD, f"seed {seed}"
        return
    assert f1_score(truth, probs >= threshold) == pytest.approx(best), (
        f"threshold {threshold} does not reach the best F1 (seed {seed})"
    )


def test_a_label_whose_best_cut_is_noise_keeps_the_default() -> None:
    # One validation positive ranked 30th of 100: its "best" cut (F1 2/31) would fire on 30 rows.
    probs = np.linspace(0.3, 0.001, 100)
    truth = np.zeros(100, dtype=int)
    truth[29] = 1
    assert best_f1_threshold(probs, truth) == DEFAULT_THRESHOLD
    truth[29], truth[2] = 0, 1  # ranked 3rd: F1 0.5, worth its own threshold
    assert best_f1_threshold(probs, truth) == pytest.approx((probs[2] + probs[3]) / 2)


def test_a_label_without_training_positives_keeps_the_default_whatever_validation_says() -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((60, 3)) * 0.05  # an unlearnt label scores near its prior everywhere
    labels = (rng.random((60, 3)) < 0.3).astype(int)
    for strategy in ("per_label", "shrunk", "prevalence", "global", "cv"):
        chosen = choose_thresholds(probs, labels, strategy, train_share=np.array([0.5, 0.0, 0.3]))
        assert chosen.thresholds[1] == DEFAULT_THRESHOLD, strategy
    without = choose_thresholds(probs, labels, "per_label")
    assert without.thresholds[0] < 0.05, "validation alone tunes a label to its noise floor"


def test_threshold_sits_between_scores_and_ties_move_together() -> None:
    probs = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    truth = np.array([1, 1, 0, 0, 0])
    # Cutting between the tied 0.8s is impossible: keep both (F1 0.8) rather than one.
    assert best_f1_threshold(probs, truth) == pytest.approx((0.8 + 0.3) / 2)
    assert best_f1_threshold(np.array([0.2, 0.6]), np.array([0, 1])) == pytest.approx(0.4)


def test_label_without_positives_keeps_the_default() -> None:
    probs = np.array([[0.9, 0.2], [0.1, 0.7]])
    labels = np.array([[1, 0], [0, 0]])
    thresholds = tune_thresholds(probs, labels)
    assert thresholds[1] == DEFAULT_THRESHOLD
    assert 0.1 < thresholds[0] <= 0.9


def test_metrics_match_scikit_learn_and_thresholds_apply_per_label() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((50, 4)) < 0.3).astype(int)
    probs = np.clip(labels * 0.4 + rng.random((50, 4)) * 0.6, 0, 1)
    thresholds = np.array([0.3, 0.5, 0.7, 0.9])
    out = multilabel_metrics(probs, labels, thresholds, ["a", "b", "c", "d"])
    pred = probs >= thresholds
    for avg in ("micro", "macro", "weighted", "samples"):
        assert out[f"{avg}_f1"] == pytest.approx(f1_score(labels, pred, average=avg, zero_division=0))
    assert out["f1_c"] == pytest.approx(f1_score(labels[:, 2], pred[:, 2]))
    assert out["support_a"] == labels[:, 0].sum()
    assert out["subset_accuracy"] == pytest.approx(np.mean(np.all(pred == labels, axis=1)))
    assert out["hamming_loss"] == pytest.approx(np.mean(pred != labels))
    assert 0.5 < out["macro_roc_auc"] <= 1.0
    assert out["macro_average_precision"] == pytest.approx(
        np.mean([average_precision_score(labels[:, j], probs[:, j]) for j in range(4)])
    )
    assert out["micro_average_precision"] == pytest.approx(
        average_precision_score(labels.ravel(), probs.ravel())
    )
    assert all(isinstance(v, float) for v in out.values())


def test_roc_auc_is_left_out_when_undefined() -> None:
    labels = np.array([[1, 0], [1, 0]])
    out = multilabel_metrics(np.array([[0.9, 0.1], [0.8, 0.2]]), labels)
    assert "macro_roc_auc" not in out and np.isnan(out["macro_average_precision"])
    assert out["micro_f1"] == 1.0


def test_sigmoid_is_stable_and_decide_uses_greater_or_equal() -> None:
    np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])
    assert decide(np.array([[0.5, 0.49]]), 0.5).tolist() == [[1, 0]]


def test_decisions_compare_float32_probabilities_in_float64() -> None:
    """A threshold between two float32 values: rounding it to float32 would flip the decision."""
    p = np.float32(0.3)
    above = np.nextafter(np.float64(p), 1.0)
    assert np.float32(above) == p, "float32 rounds the threshold back onto the probability"
    probs = np.array([[p, p]], dtype=np.float32)
    for threshold in (above, [above, above], threshold_array([above, float(p)])):
        assert decide(probs, threshold)[0, 0] == 0, f"{type(threshold).__name__}: in float64, p < threshold"
    assert decide(probs, threshold_array([above, float(p)])).tolist() == [[0, 1]]
    saved = threshold_array([0.25, 0.5])
    assert (saved.dtype, saved.flags.writeable) == (np.float64, False)
    with pytest.raises(ValueError, match=r"one per label, found an array of shape \(1, 2\)"):
        threshold_array([[0.25, 0.5]])


def test_a_split_is_evaluated_once_at_the_tuned_thresholds_and_at_the_default() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random((30, 2)) < 0.5).astype(int)
    probs = rng.random((30, 2))
    thresholds = np.array([0.2, 0.8])
    evaluation = evaluate_split(probs, labels, thresholds, ["a", "b"])
    assert evaluation.probs is probs and evaluation.labels is labels
    assert evaluation.tuned == multilabel_metrics(probs, labels, thresholds, ["a", "b"])
    assert evaluation.untuned == multilabel_metrics(probs, labels, DEFAULT_THRESHOLD, ["a", "b"])


def rare_label_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label 0: 200 positives scored about 0.6, negatives about 0.3. Label 1: the same kind of
    scores, but only 2 positives, both scored high (0.93, 0.97) by chance."""
    rng = np.random.default_rng(seed)
    n = 600
    labels = np.zeros((n, 2), dtype=int)
    labels[:200, 0] = 1
    labels[[0, 1], 1] = 1
    probs = np.clip(0.3 + 0.3 * labels + rng.normal(0, 0.08, (n, 2)), 0.01, 0.9)
    probs[[0, 1], 1] = [0.93, 0.97]
    return probs, labels


def test_a_label_with_two_positives_is_pulled_toward_the_global_threshold() -> None:
    probs, labels = rare_label_case()
    own = tune_thresholds(probs, labels)
    overall = global_threshold(probs, labels)
    shrunk = shrunk_thresholds(probs, labels)
    assert own[1] > max(0.7, probs[labels[:, 1] == 0, 1].max()), "per-label: above every negative"
    # 2 positives against a prior of 3: 2/5 of its own threshold, 3/5 of the global one.
    assert metrics.SHRINK_POSITIVES == 3
    assert shrunk[1] == pytest.approx(overall + 2 / 5 * (own[1] - overall))
    assert abs(shrunk[1] - overall) < abs(own[1] - overall) / 2
    assert shrunk_thresholds(probs, labels, prior_positives=10)[1] == pytest.approx(
        overall + 2 / 12 * (own[1] - overall)
    )
    # 200 positives: it keeps about its own threshold (200/203 of it).
    assert abs(shrunk[0] - own[0]) < 0.05 * abs(own[0] - overall) + 1e-9
    # The shrunk rare-label threshold decides unseen rows of the same kind better.
    fresh_probs, fresh_labels = rare_label_case(seed=1)
    fresh_probs[[0, 1], 1] = [0.6, 0.65]  # new positives, scored like the frequent label's
    f1_own = micro_macro_f1(fresh_labels[:, 1:], decide(fresh_probs[:, 1:], own[1:]))
    f1_shrunk = micro_macro_f1(fresh_labels[:, 1:], decide(fresh_probs[:, 1:], shrunk[1:]))
    assert f1_own["macro"] == 0 and f1_shrunk["macro"] > 0


def test_prevalence_thresholds_lean_on_the_training_share_where_validation_has_few_positives() -> None:
    probs, labels = rare_label_case()
    share = np.array([200 / 600, 0.01])  # label 1: 1 % of the training rows, 2 positives here
    own = tune_thresholds(probs, labels)
    anchored = metrics.prevalence_thresholds(probs, labels, share)
    anchor = np.quantile(probs[:, 1], 1 - share[1], method="higher")
    assert (probs[:, 1] >= anchor).mean() == pytest.approx(share[1], abs=1 / 600), (
        "fires as often as in training"
    )
    # 2 positives against a prior of 10: 2/12 of its own threshold, the rest the anchor.
    assert metrics.PREVALENCE_POSITIVES == 10
    assert anchored[1] == pytest.approx(anchor + 2 / 12 * (own[1] - anchor))
    assert abs(anchored[0] - own[0]) < 0.1 * abs(own[0] - np.quantile(probs[:, 0], 1 - share[0])) + 1e-3
    # No positive here at all: the anchor alone, where per-label tuning gives up (0.5).
    labels[:, 1] = 0
    assert metrics.prevalence_thresholds(probs, labels, share)[1] == pytest.approx(anchor)
    # Unseen rows of the same kind: the anchored threshold finds the new positives.
    fresh_probs, fresh_labels = rare_label_case(seed=1)
    fresh_probs[[0, 1], 1] = [0.6, 0.65]  # new positives, scored like the frequent label's
    f1_own = micro_macro_f1(fresh_labels[:, 1:], decide(fresh_probs[:, 1:], own[1:]))
    f1_anchored = micro_macro_f1(fresh_labels[:, 1:], decide(fresh_probs[:, 1:], anchored[1:]))
    assert f1_own["macro"] == 0 and f1_anchored["macro"] > 0
    # Without the training shares, the share among the rows it is fitted on.
    labels[:2, 1] = 1
    own_share = metrics.prevalence_thresholds(probs, labels, labels.mean(axis=0))
    np.testing.assert_array_equal(choose_thresholds(probs, labels, metrics.PREVALENCE).thresholds, own_share)


def test_a_label_without_positives_gets_the_global_threshold_when_shrunk() -> None:
    probs, labels = rare_label_case()
    labels[:, 1] = 0
    assert shrunk_thresholds(probs, labels)[1] == pytest.approx(global_threshold(probs, labels))
    assert tune_thresholds(probs, labels)[1] == DEFAULT_THRESHOLD


def test_the_global_threshold_maximises_micro_f1() -> None:
    probs, labels = rare_label_case()
    best = global_threshold(probs, labels)
    at_best = micro_macro_f1(labels, decide(probs, best))["micro"]
    for other in np.linspace(0.05, 0.95, 37):
        assert micro_macro_f1(labels, decide(probs, other))["micro"] <= at_best + 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_micro_macro_f1_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = (rng.random((40, 5)) < 0.2).astype(int)
    decided = (rng.random((40, 5)) < 0.3).astype(int)
    decided[:, 4] = truth[:, 4] = 0  # a label never present nor predicted scores 0, as scikit-learn's
    out = micro_macro_f1(truth, decided)
    assert out["micro"] == pytest.approx(f1_score(truth, decided, average="micro", zero_division=0))
    assert out["macro"] == pytest.approx(f1_score(truth, decided, average="macro", zero_division=0))


def test_folds_spread_each_labels_positives_evenly() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((103, 3)) < [0.5, 0.3, 0.0]).astype(int)
    labels[:10, 2] = 1  # the rarest label: 10 positives
    folds = stratified_folds(labels, 5, seed=3)
    assert sorted(np.bincount(folds).tolist()) == [20, 20, 21, 21, 21]
    assert np.bincount(folds[labels[:, 2] == 1], minlength=5).tolist() == [2, 2, 2, 2, 2]


def separable_at_half(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < 0.3).astype(int)
    probs = np.where(labels == 1, rng.uniform(0.55, 1.0, (n, 3)), rng.uniform(0.0, 0.45, (n, 3)))
    return probs, labels


def test_cross_validation_keeps_half_when_nothing_tuned_does_better() -> None:
    probs, labels = separable_at_half()
    choice = choose_thresholds(probs, labels, metrics.CROSS_VALIDATED)
    assert all(score == {"micro": 1.0, "macro": 1.0} for score in choice.cv_scores.values())
    assert choice.applied == metrics.FIXED, "a tie goes to the strategy with fewest fitted numbers"
    assert choice.thresholds.tolist() == [0.5, 0.5, 0.5]
    assert choice.expected_gain == {"micro": 0.0, "macro": 0.0}


def test_cross_validation_picks_a_per_label_strategy_when_labels_need_their_own_thresholds() -> None:
    """Label 0 is scored on 0-0.25 (positives above 0.15), label 1 on 0.75-1 (positives above
    0.9): no one threshold, nor one pulled toward it, serves both."""
    rng = np.random.default_rng(0)
    n = 400
    labels = (rng.random((n, 2)) < 0.3).astype(int)
    low = np.where(labels[:, 0] == 1, rng.uniform(0.16, 0.25, n), rng.uniform(0.0, 0.14, n))
    high = np.where(labels[:, 1] == 1, rng.uniform(0.91, 1.0, n), rng.uniform(0.75, 0.89, n))
    probs = np.column_stack([low, high])
    choice = choose_thresholds(probs, labels, metrics.CROSS_VALIDATED)
    # Both per-label strategies separate them perfectly; the tie goes to the earlier candidate.
    assert choice.applied == metrics.PREVALENCE
    assert (
        choice.cv_scores[metrics.PER_LABEL]
        == choice.cv_scores[metrics.PREVALENCE]
        == {"micro": 1.0, "macro": 1.0}
    )
    assert choice.cv_scores[metrics.FIXED]["macro"] < 0.6
    assert choice.cv_scores[metrics.SHRUNK]["macro"] < 1.0 and choice.cv_scores[metrics.GLOBAL]["macro"] < 1.0
    assert 0.14 < choice.thresholds[0] < 0.16 and 0.89 < choice.thresholds[1] < 0.91


def test_cross_validation_picks_one_threshold_when_labels_share_it_and_have_few_positives() -> None:
    """Twenty labels scored alike, each with a handful of noisy positives: per-label thresholds
    chase each label's few scores; one threshold fitted on all of them generalises."""
    rng = np.random.default_rng(0)
    n, k = 300, 20
    labels = (rng.random((n, k)) < 0.03).astype(int)
    probs = np.clip(rng.normal(0.15 + 0.35 * labels, 0.12), 0, 1)
    choice = choose_thresholds(probs, labels, metrics.CROSS_VALIDATED)
    scores = choice.cv_scores
    assert choice.applied in (metrics.GLOBAL, metrics.SHRUNK)
    assert metrics.cv_criterion(scores[choice.applied]) > metrics.cv_criterion(scores[metrics.PER_LABEL])
    assert choice.expected_gain["micro"] > 0
    assert choice.expected_gain == {
        avg: scores[choice.applied][avg] - scores[metrics.PER_LABEL][avg] for avg in ("micro", "macro")
    }


def test_cross_validated_scores_are_out_of_fold() -> None:
    """Scores without any signal: tuned on the rows it is scored on, per-label tuning finds
    a lucky cut; decided with thresholds fitted on the other folds, it does not."""
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 4)) < 0.1).astype(int)
    probs = rng.random((200, 4))
    in_sample = micro_macro_f1(labels, decide(probs, tune_thresholds(probs, labels)))
    out_of_fold = cross_validated_scores(probs, labels, folds=5)[metrics.PER_LABEL]
    assert out_of_fold["macro"] < in_sample["macro"] - 0.03


def test_each_strategy_fits_the_thresholds_it_names() -> None:
    probs, labels = rare_label_case()
    expected = {
        metrics.PER_LABEL: tune_thresholds(probs, labels),
        metrics.GLOBAL: np.full(2, global_threshold(probs, labels)),
        metrics.FIXED: np.full(2, DEFAULT_THRESHOLD),
        metrics.SHRUNK: shrunk_thresholds(probs, labels),
    }
    for strategy, thresholds in expected.items():
        choice = choose_thresholds(probs, labels, strategy)
        assert (choice.requested, choice.applied, choice.cv_scores) == (strategy, strategy, None)
        assert choice.thresholds.shape == (2,)
        np.testing.assert_allclose(choice.thresholds, thresholds)
    with pytest.raises(ValueError, match="unknown threshold strategy 'best'"):
        choose_thresholds(probs, labels, "best")
    one_row = choose_thresholds(probs[:1], labels[:1], metrics.CROSS_VALIDATED)
    assert one_row.applied == metrics.SHRUNK and one_row.cv_scores is None


def test_the_choice_is_saved_in_classifier_config_and_old_configs_still_load(tmp_path) -> None:
    import json

    probs, labels = rare_label_case()
    names = ["perl", "c"]
    choice = choose_thresholds(probs, labels, metrics.CROSS_VALIDATED, train_share=np.array([0.3, 0.01]))
    record = choice.record(names)
    assert record["requested"] == "cv" and record["applied"] == choice.applied
    assert record["validation_positives"] == {"perl": 200, "c": 2}
    assert set(record["cv_f1"]) == set(metrics.CANDIDATES)

    thresholds = dict(zip(names, choice.thresholds.tolist(), strict=True))
    ClassifierConfig(("text",), thresholds, 64, threshold_selection=record).save(tmp_path)
    loaded = ClassifierConfig.load(tmp_path)
    assert loaded.threshold_selection == json.loads(json.dumps(record))
    assert loaded.problems(names) == [] and loaded.threshold_list(names) == choice.thresholds.tolist()
    # A config written before the record existed loads, with none.
    data = json.loads((tmp_path / "classifier_config.json").read_text())
    del data["threshold_selection"]
    (tmp_path / "classifier_config.json").write_text(json.dumps(data))
    old = ClassifierConfig.load(tmp_path)
    assert old.threshold_selection is None and old.problems(names) == []
    bad = ClassifierConfig(("text",), thresholds, 64, threshold_selection={"strategy": 1})
    assert any("threshold_selection" in p for p in bad.problems(names))


def test_ranking_at_k_matches_brute_force_and_scikit_learn() -> None:
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(3)
    probs = rng.random((200, 12))
    truth = (rng.random((200, 12)) < 0.15).astype(int)
    truth[:5] = 0  # rows without a true label are left out
    scores = metrics.ranking_at_k(probs, truth)
    rows = truth.any(axis=1)
    for k in (1, 3, 5):
        top = np.argsort(-probs, axis=1)[:, :k]
        expected = np.mean([truth[i, top[i]].sum() / k for i in np.flatnonzero(rows)])
        assert scores[f"precision_at_{k}"] == pytest.approx(expected)
    for k in (3, 5):
        assert scores[f"ndcg_at_{k}"] == pytest.approx(ndcg_score(truth[rows], probs[rows], k=k))
    perfect = metrics.ranking_at_k(truth + 0.0, truth)
    assert perfect["ndcg_at_3"] == pytest.approx(1.0) and perfect["ndcg_at_5"] == pytest.approx(1.0)
    assert multilabel_metrics(probs, truth)["precision_at_1"] == scores["precision_at_1"]
