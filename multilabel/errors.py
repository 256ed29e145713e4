"""The error a user fixes: bad data, arguments or output locations (train.py exits 2).

Standard library only, so the command-line entry points can catch it before any heavy
import.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A problem with the run's inputs, arguments or outputs; its text names the fix."""
