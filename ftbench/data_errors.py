"""The error a user's data raises, and how a value from their files is shown in its one-line message."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with the data a user pointed us at; its message names the problem and the fix.

    The message is always one line: any line break that slips into it (from a file's contents) is shown escaped."""

    def __init__(self, message: str):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


def show(value, limit: int = 40) -> str:
    """A value from a user's file, quoted and cut short, safe to put in a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"
