"""One shared look for every figure: a clean seaborn theme and fixed colours.

Anatomy and tissue colours are fixed (not drawn from a cycling palette) so that the knee is
the same blue in every figure of every notebook, whatever subset of data a figure shows.
"""
from __future__ import annotations

from typing import Iterable

import matplotlib as mpl
import seaborn as sns

ANATOMY_ORDER: tuple[str, ...] = ("knee", "hip", "spine", "thigh", "shoulder")
TISSUE_ORDER: tuple[str, ...] = ("cartilage", "bone", "muscle", "nerve", "fat")

# Colour-blind-friendly (Okabe-Ito based) and distinct between the two families.
ANATOMY_COLORS: dict[str, str] = {
    "knee": "#0072B2",  # blue
    "hip": "#E69F00",  # orange
    "spine": "#009E73",  # green
    "thigh": "#CC79A7",  # pink
    "shoulder": "#56B4E9",  # sky blue
}
TISSUE_COLORS: dict[str, str] = {
    "cartilage": "#4C9BE8",  # light blue
    "bone": "#D9C8A0",  # bone beige
    "muscle": "#C0392B",  # muscle red
    "nerve": "#F1C40F",  # yellow
    "fat": "#F5B7A5",  # pale salmon
}
SEX_COLORS: dict[str, str] = {"F": "#D55E00", "M": "#0072B2", "unknown": "#BBBBBB"}
SPLIT_ALPHA: dict[str, float] = {"train": 1.0, "val": 0.6, "test": 0.3}
FALLBACK_COLOR = "#888888"


def apply_style(context: str = "paper", font_scale: float = 1.1) -> None:
    """Set the project's matplotlib/seaborn theme (white grid, no top/right spines, 300 dpi saves)."""
    sns.set_theme(context=context, style="whitegrid", font_scale=font_scale)
    mpl.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 300,
            "savefig.bbox": "tight",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "image.cmap": "gray",
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
        }
    )


def anatomy_color(anatomy: str) -> str:
    """Colour of an anatomy (grey for one outside ``ANATOMY_COLORS``)."""
    return ANATOMY_COLORS.get(str(anatomy).lower(), FALLBACK_COLOR)


def tissue_color(tissue: str) -> str:
    """Colour of a tissue class (grey for one outside ``TISSUE_COLORS``)."""
    return TISSUE_COLORS.get(str(tissue).lower(), FALLBACK_COLOR)


def ordered(values: Iterable[str], order: Iterable[str]) -> list[str]:
    """Distinct ``values`` in ``order`` first, then any others in order of first appearance."""
    seen = list(dict.fromkeys(v for v in values if v is not None and v == v))
    known = [v for v in order if v in seen]
    return known + [v for v in seen if v not in known]
