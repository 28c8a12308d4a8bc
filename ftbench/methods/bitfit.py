"""BitFit (Ben Zaken et al., 2022): only the bias terms and the head train (ftbench.transforms.BitFit)."""

from dataclasses import dataclass

from ftbench.registry import Method, register


@dataclass
class BitFitArguments:
    """BitFit trains the bias terms only (and the head)."""


def build_bitfit(run_config, model_config, head_modules):
    from ftbench.transforms import BitFit

    return BitFit()


def rebuild_bitfit(options: dict):
    from ftbench.transforms import BitFit

    return BitFit(**options)


BITFIT = register(Method(
    name="bitfit", options=BitFitArguments, learning_rate=5e-3, build=build_bitfit, rebuild=rebuild_bitfit,
    description="BitFit: only the bias terms and the head train"))
