"""One shared look for every figure: a clean seaborn theme and fixed colours.

Anatomy and tissue colours are fixed (not drawn from a cycling palette) so that the knee is
the same blue in every figure of every notebook, whatever subset of data a figure shows.
Anatomies and tissues are listed in the catalog's order (``ANATOMY_ORDER``, ``TISSUE_ORDER``,
from :mod:`mskseg_lib.data.catalog`). The panel-building helpers (grids, empty panels, legends)
are in :mod:`mskseg_lib.plots.panels`.
"""
from __future__ import annotations

from typing import Iterable

import matplotlib as mpl
import seaborn as sns

from mskseg_lib.data.catalog import ANATOMY_ORDER, TISSUE_CLASSES

__all__ = ["ANATOMY_ORDER", "TISSUE_ORDER", "ANATOMY_COLORS", "TISSUE_COLORS", "SEX_COLORS", "SPLIT_ALPHA",
           "FALLBACK_COLOR", "apply_style", "anatomy_color", "tissue_color", "ordered"]

TISSUE_ORDER: tuple[str, ...] = TISSUE_CLASSES

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
    """Set the project's matplotlib/seaborn theme for every figure drawn after it.

    White grid, no top/right spines, bold titles, frameless legends, grey images, DejaVu Sans,
    100 dpi on screen and 300 dpi (tight bounding box) when saved. Notebooks call it once in
    their setup cell.

    Parameters
    ----------
    context : str
        seaborn plotting context (``"paper"``, ``"notebook"``, ``"talk"``, ``"poster"``).
    font_scale : float
        Multiplier of the context's font sizes.
    """
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
    """Colour of an anatomy.

    Parameters
    ----------
    anatomy : str
        ``"knee"``, ``"hip"``, ... (case-insensitive).

    Returns
    -------
    str
        Hex colour from ``ANATOMY_COLORS``; ``FALLBACK_COLOR`` (grey) for any other anatomy.
    """
    return ANATOMY_COLORS.get(str(anatomy).lower(), FALLBACK_COLOR)


def tissue_color(tissue: str) -> str:
    """Colour of a tissue class.

    Parameters
    ----------
    tissue : str
        ``"cartilage"``, ``"bone"``, ``"muscle"``, ``"nerve"`` or ``"fat"`` (case-insensitive).

    Returns
    -------
    str
        Hex colour from ``TISSUE_COLORS``; ``FALLBACK_COLOR`` (grey) for any other class.
    """
    return TISSUE_COLORS.get(str(tissue).lower(), FALLBACK_COLOR)


def ordered(values: Iterable[str], order: Iterable[str]) -> list[str]:
    """Distinct ``values``, those named in ``order`` first (in that order), then the others in
    order of first appearance.

    Parameters
    ----------
    values : iterable of str
        Values to order; None and NaN are left out.
    order : iterable of str
        The preferred order (e.g. ``ANATOMY_ORDER``); entries not among ``values`` are ignored.

    Returns
    -------
    list of str
        ``ordered(["spine", "x", "knee", "spine"], ANATOMY_ORDER)`` -> ``["knee", "spine", "x"]``.
    """
    seen = list(dict.fromkeys(v for v in values if v is not None and v == v))
    known = [v for v in order if v in seen]
    return known + [v for v in seen if v not in known]
