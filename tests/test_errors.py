"""The errors a user fixes: every problem listed, one a line, each a UsageError (train.py exits 2)."""

from __future__ import annotations

import pytest

from multilabel.core.errors import ArgumentError, DataValidationError, InputError, UsageError


@pytest.mark.parametrize(
    ("error_class", "subject"),
    [(InputError, "the input"), (DataValidationError, "the input data"), (ArgumentError, "the arguments")],
)
def test_every_problem_is_listed_under_its_subject(error_class: type[InputError], subject: str) -> None:
    error = error_class(["first thing wrong", "second thing wrong"])
    assert isinstance(error, UsageError), "train.py maps UsageError to exit 2"
    assert error.problems == ["first thing wrong", "second thing wrong"]
    assert str(error).splitlines() == [
        f"2 problem(s) in {subject}:",
        "  - first thing wrong",
        "  - second thing wrong",
    ]
