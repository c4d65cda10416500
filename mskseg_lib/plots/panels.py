"""The figure helpers every plot module shares, so each figure is built the same way.

* **Figures and axes**: :func:`figure_and_axes` (draw into the caller's axes or a new figure),
  :func:`panel_grid` (``n`` panels in rows of at most ``ncols``, unused cells hidden),
  :func:`root_figure`, :func:`dodge_offsets` (side-by-side slots within a group).
* **Empty panels that say why**: :func:`placeholder`, :func:`placeholder_figure`. A figure whose
  input is empty never fails and never looks like a result of 0: it says what is missing.
* **Axes**: :func:`image_axes` (image panels: no ticks, no grid), :func:`category_axis`
  (categories at 0..n-1), :func:`dataset_axis` (short dataset names coloured by anatomy).
* **Legends**: :func:`patch_handles`, :func:`legend_right` (beside an axes),
  :func:`figure_legend` (one legend for all panels, above or below them), :func:`label_legend`
  (the label colours of a segmentation overlay).
* **Colours and text**: :func:`arm_palette`, :func:`label_cmap`, :func:`format_p`.
* **Input**: :func:`require_columns` (one clear error naming the missing column) and
  :func:`figure_datasets` (datasets in figure order: anatomy groups, then first appearance).

Artists that tests and notebooks look up carry a ``gid``; the helpers here set ``placeholder``
(or the gid the caller passes) on the text of an empty panel.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure, SubFigure
from matplotlib.legend import Legend
from matplotlib.patches import Patch

from mskseg_lib.data.catalog import anatomy_of, datasets_in_order, short_dataset_name
from mskseg_lib.plots.style import anatomy_color

__all__ = ["root_figure", "figure_and_axes", "panel_grid", "dodge_offsets", "placeholder",
           "placeholder_figure", "image_axes", "category_axis", "dataset_axis", "patch_handles",
           "legend_right", "figure_legend", "label_legend", "arm_palette", "label_cmap", "format_p",
           "require_columns", "figure_datasets"]


# ------------------------------------------------------------------------ figures and axes
def root_figure(target: Union[Axes, Figure, SubFigure]) -> Figure:
    """The top-level Figure of an axes or a (sub)figure (what a plot function returns).

    Parameters
    ----------
    target : Axes, Figure or SubFigure
        Where something was drawn.

    Returns
    -------
    Figure
        ``target`` itself when it is a Figure, else the figure it belongs to (through any
        sub-figures).
    """
    return target if isinstance(target, Figure) else target.get_figure(root=True)


def figure_and_axes(ax: Optional[Axes], figsize: tuple[float, float], *,
                    constrained: bool = True) -> tuple[Figure, Axes]:
    """The axes to draw on: the caller's, or the single axes of a new figure.

    Lets every panel function draw either on its own (``ax=None``: a new figure) or into
    one cell of a composite figure.

    Parameters
    ----------
    ax : Axes or None
        The caller's axes; None makes a new figure.
    figsize : (float, float)
        Width and height of the new figure, inches (ignored when ``ax`` is given).
    constrained : bool
        Use matplotlib's constrained layout for the new figure.

    Returns
    -------
    (Figure, Axes)
        The top-level figure (:func:`root_figure`) and the axes.
    """
    if ax is None:
        return plt.subplots(figsize=figsize, constrained_layout=constrained)
    return root_figure(ax), ax


def panel_grid(n: int, ncols: int, cell_in: tuple[float, float], *, sharey: bool = False,
               extra_in: tuple[float, float] = (0.0, 0.0)) -> tuple[Figure, np.ndarray]:
    """``n`` panels in rows of at most ``ncols``, on a new constrained-layout figure.

    Cells after the ``n``-th (the end of the last row) are switched off, so an odd number
    of datasets leaves no empty frame.

    Parameters
    ----------
    n : int
        Number of panels (at least one cell is made when ``n`` is 0).
    ncols : int
        Most panels per row; fewer when ``n`` is smaller.
    cell_in : (float, float)
        Width and height of one panel, inches.
    sharey : bool
        Share the y axis between all panels.
    extra_in : (float, float)
        Inches added to the figure's width and height (room for a shared legend or title).

    Returns
    -------
    (Figure, numpy.ndarray)
        The figure and its axes as an (nrows, ncols) object array; ``axes.ravel()[:n]`` are the
        panels in reading order.
    """
    n = max(int(n), 1)
    ncols = max(1, min(int(ncols), n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=sharey, constrained_layout=True,
                             figsize=(cell_in[0] * ncols + extra_in[0], cell_in[1] * nrows + extra_in[1]))
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    return fig, axes


def dodge_offsets(n: int, width: float = 0.8) -> tuple[np.ndarray, float]:
    """Centres of ``n`` side-by-side slots sharing a group of total ``width``, and the slot width.

    Parameters
    ----------
    n : int
        Number of slots (arms, models, finetuning types) in one group.
    width : float
        Width of the whole group, in data units (categories sit 1 apart).

    Returns
    -------
    (numpy.ndarray, float)
        Offsets (n,) from the group's centre, first slot lowest, symmetric about 0
        (``n=4, width=0.8`` -> ``[-0.3, -0.1, 0.1, 0.3]``), and the slot width (0.2).
    """
    slot = width / max(n, 1)
    return (np.arange(n) - (n - 1) / 2) * slot, slot


# ------------------------------------------------------------------------- empty panels
def placeholder(ax: Axes, text: str, title: Optional[str] = None, *, gid: str = "placeholder") -> None:
    """Turn ``ax`` into an empty panel that says why it is empty.

    Parameters
    ----------
    ax : Axes
        The panel.
    text : str
        The reason, e.g. ``"no finite dice values"``; centred, grey.
    title : str, optional
        Panel title.
    gid : str
        gid of the text artist, for tests and notebooks (default ``"placeholder"``).
    """
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="0.4", gid=gid)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)


def placeholder_figure(text: str, title: Optional[str] = None,
                       figsize: tuple[float, float] = (6, 2.5), *, gid: str = "placeholder") -> Figure:
    """A one-panel figure saying why there is nothing to draw.

    Parameters
    ----------
    text : str
        The reason (see :func:`placeholder`).
    title : str, optional
        Figure title (suptitle).
    figsize : (float, float)
        Width and height, inches.
    gid : str
        gid of the text artist.

    Returns
    -------
    Figure
        The figure, one axes.
    """
    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    placeholder(ax, text, gid=gid)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------- axes
def image_axes(ax: Axes) -> None:
    """Make ``ax`` an image panel: no ticks, no grid (pixels need no axis; the frame stays).

    Parameters
    ----------
    ax : Axes
        A panel showing an image (``imshow``).
    """
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def category_axis(ax: Axes, labels: Sequence[str], *, fontsize: Optional[float] = None) -> None:
    """A categorical x axis: categories at x = 0..n-1.

    Parameters
    ----------
    ax : Axes
        The panel.
    labels : sequence of str
        Tick label of each category, in drawing order.
    fontsize : float, optional
        Tick label size, points (default: the style's).

    Notes
    -----
    The x limits leave 0.6 of a slot before the first and after the last category (room for
    dodged slots of width up to 0.8), and vertical grid lines are switched off (they would
    cut through the groups).
    """
    ax.set_xticks(range(len(labels)), list(labels), **({} if fontsize is None else {"fontsize": fontsize}))
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.grid(axis="x", visible=False)


def dataset_axis(ax: Axes, datasets: Sequence[str]) -> None:
    """A category axis of datasets: short names (``Knee DESS 86``), rotated, coloured by anatomy.

    Parameters
    ----------
    ax : Axes
        The panel; the datasets sit at x = 0..n-1.
    datasets : sequence of str
        Full dataset names in drawing order.
    """
    category_axis(ax, [short_dataset_name(d) for d in datasets])
    for tick, d in zip(ax.get_xticklabels(), datasets):
        tick.set_rotation(30)
        tick.set_horizontalalignment("right")
        tick.set_color(anatomy_color(anatomy_of(d)))


# ------------------------------------------------------------------------------ legends
def patch_handles(colors: Mapping[str, Any], alpha: float = 1.0) -> list[Patch]:
    """Legend entries for filled artists (bars, boxes, wedges).

    Parameters
    ----------
    colors : mapping str -> colour
        Label -> colour, in the order to list them.
    alpha : float
        Opacity of the patches (as the artists are drawn).

    Returns
    -------
    list of Patch
        One filled patch per entry.
    """
    return [Patch(facecolor=c, alpha=alpha, label=str(label)) for label, c in colors.items()]


def legend_right(ax: Axes, handles: Sequence[Any], title: Optional[str] = None, *,
                 fontsize: float = 8, **kwargs: Any) -> Optional[Legend]:
    """A legend outside the axes, its top left corner at the axes' top right.

    Parameters
    ----------
    ax : Axes
        The panel the legend belongs to.
    handles : sequence of artists
        Legend entries (their labels are used).
    title : str, optional
        Legend title.
    fontsize : float
        Entry and title font size, points.
    **kwargs
        Passed to ``Axes.legend`` (e.g. ``ncols``).

    Returns
    -------
    Legend or None
        None when there is no handle (no empty legend box is drawn).
    """
    if not handles:
        return None
    return ax.legend(handles=list(handles), title=title, fontsize=fontsize, title_fontsize=fontsize,
                     loc="upper left", bbox_to_anchor=(1.01, 1.0), **kwargs)


def figure_legend(fig: Figure, handles: Sequence[Any], where: str = "lower", *, ncols_max: int = 4,
                  fontsize: float = 8, title: Optional[str] = None) -> Optional[Legend]:
    """One legend for all panels of ``fig``, centred outside them (constrained layout makes
    room).

    Parameters
    ----------
    fig : Figure
        A figure with constrained layout.
    handles : sequence of artists
        Legend entries (their labels are used).
    where : {"lower", "upper"}
        Below or above the panels.
    ncols_max : int
        Entries per legend row, at most.
    fontsize : float
        Entry and title font size, points.
    title : str, optional
        Legend title.

    Returns
    -------
    Legend or None
        None when there is no handle.
    """
    if where not in ("lower", "upper"):
        raise ValueError(f"where must be 'lower' or 'upper', got {where!r}")
    if not handles:
        return None
    return fig.legend(handles=list(handles), loc=f"outside {where} center", ncols=min(ncols_max, len(handles)),
                      fontsize=fontsize, title=title, title_fontsize=fontsize)


def label_legend(ax: Axes, colors: Mapping[int, Any], names: Mapping[int, str], *,
                 alpha: float = 1.0, fontsize: float = 6, ncols: int = 1) -> Optional[Legend]:
    """Legend of segmentation labels to the right of an image panel, vertically centred.

    Parameters
    ----------
    ax : Axes
        The image panel (usually the last of its row).
    colors : mapping int -> colour
        Label value -> its colour, in the order to list them.
    names : mapping int -> str
        Label value -> name; a value without a name is listed as the number.
    alpha : float
        Opacity of the patches (as the overlay is drawn).
    fontsize : float
        Points.
    ncols : int
        Legend columns.

    Returns
    -------
    Legend or None
        None when ``colors`` is empty.
    """
    handles = [Patch(facecolor=c, alpha=alpha, label=names.get(v, str(v))) for v, c in colors.items()]
    if not handles:
        return None
    return ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=fontsize,
                     ncol=ncols, handlelength=1.0, borderaxespad=0, columnspacing=0.8)


# ------------------------------------------------------------------------ colours, text
def arm_palette(arms: Sequence[str]) -> dict[str, Any]:
    """One colour-blind-friendly colour per arm (model, condition, strategy).

    Parameters
    ----------
    arms : sequence of str
        Arm names in drawing order.

    Returns
    -------
    dict
        Arm -> RGB tuple from seaborn's ``colorblind`` palette, in order (it repeats after ten).
    """
    return dict(zip(arms, sns.color_palette("colorblind", max(len(arms), 1))))


def label_cmap(max_label: int) -> tuple[ListedColormap, BoundaryNorm]:
    """One qualitative colour per label value 1..``max_label``, with its norm.

    Shared by ground truth and prediction (and detector boxes, contours) so a label has the
    same colour everywhere in a figure.

    Parameters
    ----------
    max_label : int
        Largest label value to colour (at least 1 is used).

    Returns
    -------
    (ListedColormap, BoundaryNorm)
        ``cmap(norm(v))`` is the colour of label ``v``: ``tab10`` for up to ten labels, else
        ``tab20``, cycling beyond its length.
    """
    n = max(int(max_label), 1)
    base = plt.get_cmap("tab10" if n <= 10 else "tab20")
    cmap = ListedColormap([base(i % base.N) for i in range(n)])
    return cmap, BoundaryNorm(np.arange(0.5, n + 1.0), cmap.N)


def format_p(p: Any) -> str:
    """A p-value as a figure shows it.

    Parameters
    ----------
    p : float-like or None

    Returns
    -------
    str
        ``0.0123`` -> ``"p=0.012"``, below 0.001 -> ``"p<0.001"``, NaN, None or text -> ``"n/a"``.
    """
    try:
        p = float(p)
    except (TypeError, ValueError):
        return "n/a"
    if not np.isfinite(p):
        return "n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


# -------------------------------------------------------------------------------- input
def require_columns(df: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    """Raise one clear ValueError naming the first missing column (rather than a KeyError deep
    in pandas).

    Parameters
    ----------
    df : pandas.DataFrame
        The table given to a plot function.
    cols : iterable of str
        Columns the plot needs.
    what : str
        Name of the argument, for the message (``"subjects: missing column 'dice'; ..."``).
    """
    for col in cols:
        if col not in df.columns:
            raise ValueError(f"{what}: missing column {col!r}; available columns: {list(df.columns)}")


def figure_datasets(df: pd.DataFrame) -> list[str]:
    """Datasets of a result table in figure order: anatomy groups (``ANATOMY_ORDER``), then
    order of first appearance, as in figure 3 (:func:`mskseg_lib.data.catalog.datasets_in_order`:
    the anatomy comes from the catalog, since result tables do not carry it).

    Parameters
    ----------
    df : pandas.DataFrame
        Any table with a ``dataset`` column.

    Returns
    -------
    list of str
        Distinct dataset names; empty for an empty table.
    """
    return [] if df.empty else datasets_in_order(df["dataset"])
