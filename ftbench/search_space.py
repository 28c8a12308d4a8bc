"""What a hyperparameter search (benchmark.py --search optuna) tries: the ranges a method declares for its own
options (Method.search_space, in ftbench/methods/<name>.py), the learning-rate range every method shares, a trial's
values as the training script's command-line options, and the table docs/benchmark.md shows. No optuna here:
ftbench/optuna_search.py turns these ranges into optuna's distributions.

    space = search_space(get_method("lora"), base_learning_rate=3e-3)
    # {'learning_rate': FloatRange(0.0003, 0.03, log=True), 'lora_r': Choice((4, 8, 16, 32)), ...}
    options({"learning_rate": 0.001, "lora_r": 16})   # ['--learning_rate', '0.001', '--lora_r', '16']
    python -m ftbench.search_space                    # every method's space, as the Markdown table of the docs
"""

from __future__ import annotations

from dataclasses import dataclass

# Every method's learning rate is searched log-uniformly from its rate in the sweep (its default, or what the
# sweep's options set) divided by this to its rate multiplied by it: a decade either way.
LEARNING_RATE_SPAN = 10.0


@dataclass(frozen=True)
class FloatRange:
    """A float between low and high, uniform on a log scale when log (low must then be positive)."""

    low: float
    high: float
    log: bool = False

    def describe(self) -> str:
        return f"{'log-uniform' if self.log else 'uniform'} {self.low:g} to {self.high:g}"

    def ends(self) -> tuple:
        return self.low, self.high


@dataclass(frozen=True)
class IntRange:
    """An integer between low and high (both included), on a log scale when log."""

    low: int
    high: int
    log: bool = False

    def describe(self) -> str:
        return f"integer {self.low} to {self.high}{', log scale' if self.log else ''}"

    def ends(self) -> tuple:
        return self.low, self.high


@dataclass(frozen=True)
class Choice:
    """One of a few values (ints, floats, strings or booleans)."""

    values: tuple

    def describe(self) -> str:
        return "one of " + ", ".join(str(value) for value in self.values)

    def ends(self) -> tuple:
        return self.values


def learning_rate_range(base_learning_rate: float) -> FloatRange:
    return FloatRange(float(f"{base_learning_rate / LEARNING_RATE_SPAN:.3g}"),
                      float(f"{base_learning_rate * LEARNING_RATE_SPAN:.3g}"), log=True)


def search_space(method, base_learning_rate: float) -> dict:
    """{option name: range} a trial of this method samples: the learning rate, then the method's own options."""
    return {"learning_rate": learning_rate_range(base_learning_rate)} | dict(method.search_space)


def corners(space: dict) -> list[dict]:
    """Parameter sets that together take every range's ends and every choice's values: what is checked, before a
    search starts, to parse as the training script's options."""
    ends = {name: spec.ends() for name, spec in space.items()}
    return [{name: values[min(i, len(values) - 1)] for name, values in ends.items()}
            for i in range(max(len(values) for values in ends.values()))]


def option_value(value) -> str:
    """A value as the option parser reads it back exactly: booleans as true/false, floats in full (repr)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def options(params: dict) -> list[str]:
    """A trial's parameters as the training script's command-line options."""
    return [part for name, value in params.items() for part in (f"--{name}", option_value(value))]


def markdown_table() -> str:
    """Every method's search space, as docs/benchmark.md shows it (a test keeps the two equal)."""
    from ftbench.registry import all_methods

    lines = ["| method | options searched besides `--learning_rate` |", "|---|---|"]
    for name, method in all_methods().items():
        own = "; ".join(f"`--{option}`: {spec.describe()}" for option, spec in method.search_space.items())
        lines.append(f"| {name} | {own or 'none'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
