"""The errors a user fixes: bad data, arguments or output locations (train.py exits 2).

Standard library only, so the command-line entry points can catch it before any heavy
import.
"""

from __future__ import annotations

from collections.abc import Sequence


class UsageError(ValueError):
    """A problem with the run's inputs, arguments or outputs; its text names the fix."""


class InputError(UsageError):
    """Every problem found in what the user gave, raised once, one problem a line (exit 2)."""

    subject = "the input"

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in {self.subject}:\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


class DataValidationError(InputError):
    """Every problem found in the input files."""

    subject = "the input data"


class ArgumentError(InputError):
    """Every problem found in the arguments, each naming its flag."""

    subject = "the arguments"


class TrainingSetupError(UsageError):
    """A schedule or a truncation mode that cannot work; reported before training."""
