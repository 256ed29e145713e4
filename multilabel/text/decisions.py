"""Thresholds and decisions, one shape from tuning to the endpoint's answer.

A model's thresholds are one read-only float64 array in label order, from the moment
train.py tunes them (`metrics.choose_thresholds`) to the response of a request;
`classifier_config.json`'s `{label: threshold}` is only how they are stored between the
two. A label is predicted when its probability reaches its threshold, compared in
float64 whatever the probabilities' dtype (float32 from the encoder is widened exactly),
so train.py's reports, `--do_train False` scoring, `Classifier.predict` and the endpoint
decide every row alike: rounding a threshold to float32 would flip a probability that
lies between the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from multilabel.core.artifact import ClassifierConfig


def threshold_array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """A read-only float64 copy of one threshold per label, in label order."""
    array = np.array(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"thresholds: expected one per label, found an array of shape {array.shape}")
    array.setflags(write=False)
    return array


def saved_thresholds(config: ClassifierConfig, label_names: Sequence[str]) -> np.ndarray:
    """The thresholds a model directory holds (`classifier_config.json`), in label order."""
    return threshold_array(config.threshold_list(label_names))


def decide(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Boolean decisions, rows x labels: a probability at or above its label's threshold."""
    return np.asarray(probs, dtype=np.float64) >= np.asarray(thresholds, dtype=np.float64)
