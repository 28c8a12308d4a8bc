"""The one kind of error a user's input raises before a run starts, and the one way options are checked.
Every module that refuses input raises ConfigError; the scripts print its message on one line and exit 2."""

from __future__ import annotations

import dataclasses


class ConfigError(ValueError):
    """A user-facing configuration problem; its message names the problem and the fix, in one line (line breaks
    that come from a user's values are shown escaped)."""

    def __init__(self, message: str):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


def check(condition: bool, message: str) -> None:
    """The one way options are validated: a ConfigError with the message (the problem and the fix) unless true."""
    if not condition:
        raise ConfigError(message)


def flags_set(options, names: tuple[str, ...]) -> list[str]:
    """The flags (--name) among names whose value in the options dataclass differs from the field's default."""
    fields = {f.name: f for f in dataclasses.fields(options)}
    defaults = {name: fields[name].default_factory() if fields[name].default is dataclasses.MISSING
                else fields[name].default for name in names}
    return [f"--{name}" for name in names if getattr(options, name) != defaults[name]]


def check_only_with(given: list[str], needed: str, active: bool) -> None:
    """Options (given: their flags, those set) that only mean something with another (needed) are refused without
    it, in one line."""
    one = len(given) == 1
    check(active or not given, f"{' and '.join(given)} {'goes' if one else 'go'} with {needed}; add it, or drop "
                               f"{'it' if one else 'them'}")
