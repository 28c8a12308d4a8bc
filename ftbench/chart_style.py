"""How charts look: matplotlib without a display, and one colour, marker and line style per method label, shared by
the charts of plot_results.py and report.py."""

from __future__ import annotations

import matplotlib

from ftbench.run_store import label_of

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402, F401  (after choosing the backend; the charts draw with it)

LINE_STYLES = ("-", "--", ":", "-.")
# One colour per method label: tab10 first (so up to ten methods keep their usual colours), then ten more that
# differ from it, so that a dozen or more methods stay distinct. Each label also gets a marker; 7 markers against
# 20 colours give every label up to 140 its own (colour, marker) pair, and neighbours in the legend differ in both.
PALETTE = tuple(matplotlib.colormaps["tab10"].colors) + (
    "#000000", "#e6ab02", "#1b9e77", "#000080", "#fb9a99", "#a6cee3", "#b2df8a", "#cab2d6", "#b15928", "#ff00ff")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def method_colours(runs: list[dict]) -> dict:
    """One colour per method label (PALETTE in label order)."""
    return label_colours([label_of(r) for r in runs])


def label_colours(labels: list[str]) -> dict:
    """One colour per label of a chart's groups (PALETTE in label order)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def method_markers(runs: list[dict]) -> dict:
    """One marker per method label, so that labels sharing a colour (past PALETTE's 20) still differ."""
    methods = sorted({label_of(r) for r in runs})
    return {method: MARKERS[i % len(MARKERS)] for i, method in enumerate(methods)}
