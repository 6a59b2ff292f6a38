"""The root of every typed error kmeband raises.

Each layer derives its own errors from :class:`KmebandError`, so a caller (and the
command line) can catch one type and show the message, which always says what to do.
Messages never contain health data, identifiers or keys.
"""

from __future__ import annotations


class KmebandError(Exception):
    """Base class of all kmeband errors; ``exit_code`` is what the command line returns."""

    exit_code: int = 1


class UsageError(KmebandError):
    """The caller asked for something that cannot work as given (bad argument or value)."""

    exit_code = 2
