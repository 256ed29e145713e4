"""The names and settings of train.py's threshold strategies (`--threshold_strategy`).

Standard library only: the argument parser names them without importing scikit-learn;
`metrics.choose_thresholds` applies them.
"""

from __future__ import annotations

# How the decision thresholds are chosen on the validation set (train.py --threshold_strategy).
PER_LABEL = "per_label"  # each label's own F1-optimal threshold (overfits a label with few positives)
GLOBAL = "global"  # one threshold for every label, the micro-F1-optimal one
FIXED = "fixed"  # 0.5 (DEFAULT_THRESHOLD) for every label, nothing tuned
SHRUNK = "shrunk"  # per-label thresholds pulled toward the global one, the more the fewer positives
# per-label thresholds pulled toward the one at which the label fires as often as it occurs in
# training, the more the fewer validation positives
PREVALENCE = "prevalence"
CROSS_VALIDATED = "cv"  # whichever of CANDIDATES scores best on held-out folds of the validation set
# Fewest fitted numbers first: ties go to the simpler.
CANDIDATES = (FIXED, GLOBAL, SHRUNK, PREVALENCE, PER_LABEL)
THRESHOLD_STRATEGIES = (CROSS_VALIDATED, *CANDIDATES)
# prevalence: on Debtags label sets nobody tuned on (most labels with 2 to 10 validation
# positives) it raised the encoder's macro-F1 by 1.7 points on average over twelve runs of
# six sets and 5.7 on the worst run, and lowered it by 0.9 at most, also on the six runs held
# out from its choice; judged by the worst set against TF-IDF it is the best strategy for the
# encoder and both hybrids. On the original labels (12 to 348 validation positives each) it
# is per_label to within 0.3 points (benchmarks/README.md, "Thresholds for rare labels").
DEFAULT_THRESHOLD_STRATEGY = PREVALENCE
# Prior strength of SHRUNK, in validation positives: a label with this many positives gets
# half its own threshold and half the global one; with 2, 2/5 of its own; with 30, 91 %.
# 3 rather than 10 or 30: it costs the least macro-F1 (benchmarks/README.md, "Thresholds").
SHRINK_POSITIVES = 3
# Prior strength of PREVALENCE, in validation positives (its anchor rests on every validation
# row's score and the training set's count, so it earns more trust than the global threshold):
# the macro-F1 of 3, 5, 10 and 20 differ by a point at most; 10 is the middle
# (benchmarks/README.md, "Thresholds for rare labels").
PREVALENCE_POSITIVES = 10
CV_FOLDS = 5
# A label's threshold is flagged as untrustworthy with fewer validation positives than this.
MIN_TRUSTED_POSITIVES = 10
# A label whose best validation cut scores an F1 below this has no cut worth tuning: with one
# positive ranked 30th of 100, the "best" cut (F1 2/31) fires on 30 % of rows. Such a label,
# and one without training positives (the model cannot have learnt it), keeps 0.5.
MIN_TUNED_F1 = 0.2
