"""Small helpers shared by the figure modules: empty panels that say why, column checks, and
datasets in figure order."""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mskseg_lib.plots.dataset_overview import dataset_order
from mskseg_lib.plots.zero_shot import anatomy_of


def placeholder(ax: Axes, text: str, title: Optional[str] = None) -> None:
    """An empty panel that says why it is empty (gid ``placeholder``)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="0.4", gid="placeholder")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)


def placeholder_figure(text: str, title: Optional[str] = None,
                       figsize: tuple[float, float] = (6, 2.5)) -> Figure:
    """A one-panel figure saying why there is nothing to draw."""
    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    placeholder(ax, text)
    if title:
        fig.suptitle(title)
    return fig


def require_columns(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    """A clear error naming the missing column (rather than a KeyError deep in pandas)."""
    for col in cols:
        if col not in df.columns:
            raise ValueError(f"{what}: missing column {col!r}; available columns: {list(df.columns)}")


def figure_datasets(df: pd.DataFrame) -> list[str]:
    """Datasets in figure order (anatomy groups, then first appearance), as in figure 3."""
    if df.empty:
        return []
    first = df.drop_duplicates("dataset")[["dataset"]].astype(str)
    return dataset_order(first.assign(anatomy=first["dataset"].map(anatomy_of)))
