"""Validation of the names that address stream data: stream names, group ids and item ids.

Ids reach storage keys, Redis keys, log lines and URLs, so they are checked before anything else
sees them: a non-empty string of at most ``MAX_ID_LENGTH`` characters with no control characters.
Everything else (unicode, slashes, dots, spaces) is allowed and stored verbatim.
"""

from __future__ import annotations

import re

__all__ = ["MAX_ID_LENGTH", "id_problem"]

MAX_ID_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def id_problem(value: object, what: str) -> str | None:
    """Return why ``value`` is not an acceptable id (naming ``what``), or None when it is fine."""
    if not isinstance(value, str):
        return f"{what} must be a string"
    if not value:
        return f"{what} must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"{what} is longer than {MAX_ID_LENGTH} characters"
    if _CONTROL.search(value):
        return f"{what} contains control characters"
    try:
        value.encode()
    except UnicodeEncodeError:
        return f"{what} is not valid Unicode (lone surrogate)"
    return None
