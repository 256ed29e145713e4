"""A request's parameters (`threshold`, `top_k`, `return_scores`), checked into `Options`.

The endpoint reads them from a request's `parameters`; `Classifier.predict` takes the
same mapping or an `Options`, and both go through `parse_options`, so the Python API
refuses exactly what the endpoint answers with a 400. The thresholds come out as the
model's own shape (`multilabel.text.decisions`): one read-only float64 per label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from multilabel.serving.request_codec import PARAMETERS, RequestError
from multilabel.text.decisions import threshold_array


@dataclass(frozen=True, eq=False)
class Options:
    """Request parameters. `thresholds`: one per label, in the model's label order (a list
    from a caller; a float64 array once checked by `check_options` or `parse_options`)."""

    thresholds: np.ndarray | Sequence[float]
    top_k: int | None = None
    return_scores: bool = True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Options):
            return NotImplemented
        return np.array_equal(np.asarray(self.thresholds), np.asarray(other.thresholds)) and (
            self.top_k,
            self.return_scores,
        ) == (other.top_k, other.return_scores)


def _probability(value: Any, name: str) -> float:
    """A number in [0, 1] for the parameter `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
        raise RequestError(
            f"parameter '{name}' must be a number in [0, 1], found {value!r}", "bad threshold", "parameters"
        )
    if not 0.0 <= value <= 1.0:
        shown = (
            str(value)
            if isinstance(value, float) or abs(value) < 10**20
            else f"an integer of {len(str(value))} digits"
        )
        raise RequestError(
            f"parameter '{name}' must be in [0, 1], found {shown}", "bad threshold", "parameters"
        )
    return float(value)


def parse_options(
    parameters: Mapping[str, Any], label_names: Sequence[str], tuned: np.ndarray | Sequence[float]
) -> Options:
    """Check `threshold`, `top_k` and `return_scores`; unknown parameters are errors.

    `tuned` is the model's thresholds; a request's `threshold` replaces all of them (a
    number) or some (`{label: number}`).
    """
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise RequestError(
            f"unknown parameter(s) {unknown}; supported: {list(PARAMETERS)}",
            "unknown parameter",
            "parameters",
        )
    thresholds = np.array(tuned, dtype=np.float64)
    threshold = parameters.get("threshold")
    if isinstance(threshold, dict):
        for name, value in threshold.items():
            if name not in label_names:
                raise RequestError(
                    f"parameter 'threshold': unknown label {name!r}; labels are {list(label_names)}",
                    "unknown threshold label",
                    "parameters",
                )
            thresholds[label_names.index(name)] = _probability(value, f"threshold.{name}")
    elif threshold is not None:
        thresholds[:] = _probability(threshold, "threshold")
    top_k = parameters.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise RequestError(
            f"parameter 'top_k' must be a positive integer, found {top_k!r}", "bad top_k", "parameters"
        )
    return_scores = parameters.get("return_scores", True)
    if not isinstance(return_scores, bool):
        raise RequestError(
            f"parameter 'return_scores' must be true or false, found {return_scores!r}",
            "bad return_scores",
            "parameters",
        )
    return Options(thresholds=threshold_array(thresholds), top_k=top_k, return_scores=return_scores)


def check_options(
    options: Options | Mapping[str, Any] | None,
    label_names: Sequence[str],
    tuned: np.ndarray | Sequence[float],
) -> Options:
    """The Python API's options, checked by the endpoint's own rules (`parse_options`).

    `options` is an `Options` (one threshold per label, in the model's label order) or the
    endpoint's `parameters` mapping (`{"threshold": 0.3, "top_k": 2}`); None means the tuned
    thresholds.
    """
    if options is None:
        return Options(thresholds=threshold_array(tuned))
    if isinstance(options, Mapping):
        return parse_options(options, label_names, tuned)
    if not isinstance(options, Options):
        raise TypeError(
            f"options: expected an Options or a mapping of parameters, found {type(options).__name__}"
        )
    thresholds = options.thresholds
    if isinstance(thresholds, np.ndarray) and thresholds.ndim == 1:
        thresholds = thresholds.tolist()
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Sequence):
        found = type(thresholds).__name__
    elif len(thresholds) != len(label_names):
        found = f"{len(thresholds)}"
    else:
        found = None
    if found is not None:
        raise RequestError(
            f"Options.thresholds: expected {len(label_names)} thresholds, one per label in the order "
            f"{list(label_names)}, found {found}; for one threshold for every label, pass "
            "{'threshold': t} as options",
            "bad threshold",
            "parameters",
        )
    parameters = {
        "threshold": dict(zip(label_names, thresholds, strict=True)),
        "top_k": options.top_k,
        "return_scores": options.return_scores,
    }
    return parse_options(parameters, label_names, tuned)
