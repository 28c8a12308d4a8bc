"""Options from a --config file: a JSON or YAML file holding a flat mapping of option names to values, read
beneath the command line (the file's values become the parser's defaults, so options given on the command line
win), and the option parser the training scripts and the sweep share.

    path, values = config_file_values(argv, prog)
    if path:
        set_config_defaults(parser, path, values)
"""

from __future__ import annotations

import argparse
import json
import os

import yaml
from transformers import HfArgumentParser

from ftbench.errors import ConfigError


class OptionParser(HfArgumentParser):
    """The training scripts' and the sweep's option parser: usage errors in one line."""

    def error(self, message):
        # argparse prints the whole usage block; one line that names the fix is easier to act on.
        self.exit(2, f"{self.prog}: error: {message} (run with --help to see every option)\n")


def read_config_file(path: str) -> dict:
    """The mapping a config file holds ({} for an empty file); ConfigError, in one line, for a file that is
    missing, not UTF-8, not valid JSON (.json) or YAML (anything else), or not a mapping."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' not found; check the path given to --config")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte offset {error.start}); save it as UTF-8"
                          ) from None
    try:
        values = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, RecursionError, yaml.YAMLError) as error:  # ValueError: JSON errors, YAML's impossible dates
        raise ConfigError(f"config file '{path}' is not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                          f"{(str(error).splitlines() or [type(error).__name__])[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of option names to values")
    return values


def config_file_values(argv: list[str], prog: str | None = None) -> tuple[str | None, dict]:
    """The --config file argv names and the mapping it holds, or (None, {})."""
    pre = OptionParser(add_help=False, prog=prog)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    return (known.config, read_config_file(known.config)) if known.config else (None, {})


def set_config_defaults(parser: argparse.ArgumentParser, path: str, values: dict) -> None:
    """A config file's values as the parser's defaults, so that the command line still wins; a name the
    parser does not know is refused."""
    allowed = {action.dest for action in parser._actions} - {"help", "config"}
    unknown = sorted(map(str, set(values) - allowed))  # YAML keys may be numbers
    if unknown:
        raise ConfigError(f"config file '{path}' has unknown option(s) {', '.join(unknown)}; "
                          f"see --help for the valid names")
    # List-valued options must stay lists; the rest are passed as text so argparse converts and checks their type.
    parser.set_defaults(**{key: value if isinstance(value, list) or value is None else
                           (str(value) if not isinstance(value, bool) else value)
                           for key, value in values.items()})
