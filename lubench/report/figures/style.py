"""The style of a report's figures: matplotlib settings at the preset's size, and per
configuration its colour, marker and line style (:class:`Style`, built once per report)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from lubench.report.palette import (
    method_color,
    method_marker,
    variant_dashes,
)
from lubench.suite.report_spec import PRESETS, Preset

__all__ = ["Style", "make_style", "rc", "FAMILY_ORDER"]

FAMILY_ORDER = ["classical", "compressed", "learned"]


def rc(preset: Preset) -> dict:
    """Print-friendly matplotlib settings at the preset's font size: text kept as text in
    SVG, TrueType in PDF (editable, searchable)."""
    f = preset.font
    return {
        "font.size": f, "axes.titlesize": f, "axes.labelsize": f, "legend.fontsize": f - 0.5,
        "xtick.labelsize": f - 1, "ytick.labelsize": f - 1, "legend.title_fontsize": f - 0.5,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.35, "grid.linewidth": 0.4, "lines.linewidth": 1.0,
        "lines.markersize": 4.5, "axes.linewidth": 0.6, "xtick.major.width": 0.6,
        "ytick.major.width": 0.6, "svg.fonttype": "none", "pdf.fonttype": 42,
        "ps.fonttype": 42, "savefig.dpi": 200, "figure.dpi": 100, "legend.frameon": False,
    }


@dataclass
class Style:
    """Per configuration label: its method name (hence colour and marker) and line style;
    the legend order; the preset. Built once per report, shared by every figure."""

    names: dict[str, str]
    dashes: dict[str, tuple]
    methods: list[str]
    preset: Preset = field(default_factory=lambda: PRESETS["paper"])

    def name(self, label: str) -> str:
        return self.names.get(label, str(label).split("[")[0])

    def color(self, label: str) -> str:
        return method_color(self.name(label))

    def marker(self, label: str) -> str:
        return method_marker(self.name(label))

    def dash(self, label: str) -> tuple:
        return self.dashes.get(label, (0, ()))

    @property
    def rc(self) -> dict:
        return rc(self.preset)


def make_style(summary: pd.DataFrame, preset: Preset | None = None) -> Style:
    """The style of a report: labels in suite order, classical methods first."""
    order = list(dict.fromkeys(summary["method_label"])) if len(summary) else []
    fam = dict(zip(summary["method_label"], summary["family"])) if len(summary) else {}
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    order.sort(key=lambda m: rank.get(fam.get(m), len(rank)))  # stable within a family
    names = dict(zip(summary["method_label"], summary["method"])) if len(summary) else {}
    dashes: dict[str, tuple] = {}
    for name in dict.fromkeys(names.values()):
        dashes.update(variant_dashes([m for m in order if names[m] == name]))
    return Style(names=names, dashes=dashes, methods=order, preset=preset or PRESETS["paper"])
