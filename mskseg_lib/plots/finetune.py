"""The study's finetuning ablations (figure 4) and the training curves behind them.

Panels, each drawn from the numbers :mod:`mskseg_lib.finetuning.figure4` computes from the
engine's ``subjects`` and ``experiments`` tables (``figure4_summaries(subjects, experiments)``;
this module draws, it computes no statistic):

* (a) :func:`plot_size_curve`: Dice vs training-set size (group ``size``);
* (b) :func:`plot_strategies`: encoder frozen/trained x box shift (group ``strategy``);
* (c) :func:`plot_knee_grid`: knee datasets by size and strategy (group ``knee``);
* (d) :func:`plot_mixing`: single dataset vs anatomy-, muscle- and all-MSK mixes (``mixing``);
* :func:`plot_figure4` puts the four in one 2 x 2 figure, panel c as a nested row of small
  panels in its quarter (so the figure stays one file, and c still works on its own).

Points and bars are the mean over test subjects of ``dice_mean_slice`` with SD error bars
(a subject's repeated runs are averaged first); each finetuned result sits next to the
zero-shot of its initial model (``experiment_id == "zero_shot:<model_key>"``), drawn dashed
in lines and as the first, grey bar in bar charts. Only in-domain results are shown: an
experiment's score on a dataset it was not trained on (the all-MSK external set) is left out
(see :func:`mskseg_lib.finetuning.report.trained_on`). A group without results draws a panel
that says so instead of failing, because a profile may run only part of the grid.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from mskseg_lib.data.catalog import short_dataset_name
from mskseg_lib.finetuning.figure4 import AblationSummary
from mskseg_lib.finetuning.report import SUMMARY_COLUMNS, order_datasets
from mskseg_lib.plots.panels import (
    arm_palette,
    dataset_axis,
    dodge_offsets,
    figure_and_axes,
    image_axes,
    legend_right,
    placeholder,
    placeholder_figure,
    root_figure,
)
from mskseg_lib.plots.zero_shot import VALUE_LABELS

__all__ = ["MIX_LABELS", "size_order", "size_tick_labels", "strategy_label", "plot_size_curve",
           "plot_strategies", "plot_knee_grid", "plot_mixing", "plot_figure4",
           "plot_training_curves"]

ZERO_SHOT_LABEL = "zero-shot"
ZERO_SHOT_COLOR = "#999999"
MIX_KINDS: tuple[str, ...] = ("single", "anatomy", "muscle", "all_msk")
MIX_LABELS: dict[str, str] = {"single": "single dataset", "anatomy": "anatomy-mixed",
                              "muscle": "muscle-mixed", "all_msk": "all MSK"}
ENCODER_ORDER: tuple[str, ...] = ("frozen", "trained")
PanelTarget = Union[Axes, Figure, SubFigure, None]


# --------------------------------------------------------------------------------- helpers
def size_order(values: Iterable[Any]) -> list[str]:
    """Distinct training sizes as strings, numbers ascending, then other words, ``"all"`` last
    (``["all", "10", "5"]`` -> ``["5", "10", "all"]``: a plain string sort would not do)."""
    sizes = list(dict.fromkeys(str(v).strip() for v in values if v is not None and v == v))

    def key(s: str) -> tuple[int, float, str]:
        if s == "all":
            return (2, 0.0, s)
        try:
            return (0, float(s), s)
        except ValueError:
            return (1, 0.0, s)

    return sorted(sizes, key=key)


def size_tick_labels(sizes: Sequence[str], n_all: Any) -> list[str]:
    """Tick labels of a size axis: ``"all"`` becomes ``"all (n=K)"`` with K the largest number
    of training subjects per dataset actually used (plain ``"all"`` when unknown)."""
    try:
        k = float(n_all)
    except (TypeError, ValueError):
        k = np.nan
    all_label = f"all (n={int(k)})" if np.isfinite(k) else "all"
    return [all_label if s == "all" else s for s in sizes]


def strategy_label(encoder: Any, box_shift_px: Any) -> str:
    """``"frozen encoder · shift 0 px"``: the finetuning strategy as the figure names it."""
    try:
        shift = f"{int(float(box_shift_px))}"
    except (TypeError, ValueError):
        shift = str(box_shift_px)
    return f"{encoder} encoder · shift {shift} px"


def _strategy_sort_key(label_row: tuple[str, Any]) -> tuple[int, float]:
    encoder, shift = label_row
    rank = ENCODER_ORDER.index(encoder) if encoder in ENCODER_ORDER else len(ENCODER_ORDER)
    try:
        return rank, float(shift)
    except (TypeError, ValueError):
        return rank, math.inf


def _n_all(summary: AblationSummary, datasets: Optional[Iterable[str]] = None) -> float:
    """Largest training-subject count of the "all" runs over ``datasets`` (default: every one)."""
    values = [v for d, v in summary.n_train_all.items() if datasets is None or d in set(datasets)]
    finite = [v for v in values if v == v]
    return max(finite) if finite else np.nan


def _placeholder(ax: Axes, group: str, defined: bool = False) -> None:
    """Say in the panel why it is empty: no experiment of ``group``, or none with results yet
    (pending, failed, or not scored under this condition)."""
    text = (f'no results of group "{group}" yet' if defined
            else f'no experiments of group "{group}" in this profile')
    placeholder(ax, text, gid=f"placeholder:{group}")


def _empty(ax: Axes, summary: AblationSummary, title: str) -> None:
    _placeholder(ax, summary.group, defined=summary.defined)
    ax.set_title(title)


def _model_suffixes(rows: pd.DataFrame, models: Optional[Iterable[Any]] = None) -> list[str]:
    """``" · <model>"`` per row of ``rows`` (or per entry of ``models``) when the panel
    mixes initial models, so labels stay unambiguous; empty strings otherwise."""
    models = list(rows["model"] if models is None else models)
    multi = rows["model_key"].nunique() > 1
    return [f" · {m}" if multi else "" for m in models]


def _mean_sd(row: Any) -> tuple[float, float]:
    """Mean and SD of a summary row; a single subject's missing SD is drawn as 0."""
    sd = float(row["sd"]) if pd.notna(row["sd"]) else 0.0
    return float(row["mean"]), sd


# ------------------------------------------------------------------ lines over size (a, c)
def _size_lines(ax: Axes, summary: pd.DataFrame, sizes: list[str], series_col: str,
                colors: dict[str, Any], gid_prefix: str) -> None:
    """One errorbar line per value of ``series_col`` over the categorical size axis.

    Series are dodged sideways a little so that their SD bars do not hide each other. The
    data line carries gid ``"<prefix>:<series>"`` and its SD bars ``"sd:<series>"``.
    """
    x_of = {s: i for i, s in enumerate(sizes)}
    names = list(dict.fromkeys(summary[series_col]))
    dodge = (np.arange(len(names)) - (len(names) - 1) / 2) * min(0.06, 0.3 / max(len(names), 1))
    for series, dx in zip(names, dodge):
        g = summary[summary[series_col] == series]
        g = g.assign(_x=g["size"].map(x_of) + dx).sort_values("_x")
        cont = ax.errorbar(g["_x"], g["mean"], yerr=g["sd"].fillna(0.0), color=colors[series],
                           marker="o", ms=4, lw=1.4, capsize=3, label=series)
        cont.lines[0].set_gid(f"{gid_prefix}:{series}")
        for bars in cont.lines[2]:
            bars.set_gid(f"sd:{series}")


def _zero_shot_line(ax: Axes, zs: pd.DataFrame, model_key: str, dataset: str, color: Any,
                    gid: str) -> None:
    """Dashed horizontal line at the zero-shot mean of ``model_key`` on ``dataset`` (from
    ``AblationSummary.zero_shot``); nothing when that baseline is missing."""
    row = zs[(zs["model_key"] == model_key) & (zs["dataset"] == dataset)]
    if len(row):
        ax.axhline(float(row["mean"].iloc[0]), color=color, ls="--", lw=1.0, alpha=0.85, gid=gid)


def _size_axis(ax: Axes, sizes: list[str], n_all: Any, value_col: str) -> None:
    ax.set_xticks(range(len(sizes)), size_tick_labels(sizes, n_all))
    ax.set_xlim(-0.4, len(sizes) - 0.6)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("Training subjects per dataset")
    ax.set_ylabel(VALUE_LABELS.get(value_col, value_col))
    ax.grid(axis="x", visible=False)


def _zero_shot_legend_handle() -> Line2D:
    return Line2D([], [], color=ZERO_SHOT_COLOR, ls="--", lw=1.2, label="zero-shot (same model)")


def plot_size_curve(summary: AblationSummary, ax: Optional[Axes] = None) -> Figure:
    """Figure 4a: Dice vs number of training subjects per dataset (group ``size``).

    Parameters
    ----------
    summary : ``figure4.ablation_summary(subjects, experiments, "size")``.
    ax : where to draw (a new figure when None).

    Returns
    -------
    Figure
        One line per evaluated dataset (and initial model, when several; gid
        ``"size:<series>"``), x ordered numerically with "all (n=K)" last, mean ± SD over test
        subjects; the dataset's zero-shot Dice of the same initial model is a dashed line in the
        same colour (gid ``"zero_shot:<series>"``).
    """
    title = "Training-set size"
    fig, ax = figure_and_axes(ax, (6.0, 4.0))
    if summary.empty:
        _empty(ax, summary, title)
        return fig
    ft = summary.finetuned
    ft = ft.assign(series=[short_dataset_name(d) + x for d, x in zip(ft["dataset"], _model_suffixes(ft))])
    sizes = size_order(ft["size"])
    series_order = _series_in_dataset_order(ft)
    colors = dict(zip(series_order, arm_palette(series_order).values()))
    ft = ft.assign(_o=ft["series"].map(series_order.index)).sort_values("_o", kind="stable")
    _size_lines(ax, ft, sizes, "series", colors, "size")
    for series, model_key, dataset in ft[["series", "model_key", "dataset"]].drop_duplicates().to_numpy():
        _zero_shot_line(ax, summary.zero_shot, model_key, dataset, colors[series], f"zero_shot:{series}")
    _size_axis(ax, sizes, _n_all(summary), summary.value_col)
    ax.set_title(title)
    handles = [Line2D([], [], color=colors[k], marker="o", label=k) for k in series_order]
    legend_right(ax, [*handles, _zero_shot_legend_handle()], fontsize=7)
    return fig


def _series_in_dataset_order(s: pd.DataFrame) -> list[str]:
    """Series labels ordered by their dataset (figure order), then by appearance."""
    order = {d: i for i, d in enumerate(order_datasets(s["dataset"]))}
    first = s.drop_duplicates("series")
    first = first.assign(_o=first["dataset"].map(order), _i=range(len(first)))
    return first.sort_values(["_o", "_i"])["series"].tolist()


# ------------------------------------------------------------------- grouped bars (b, d)
def _grouped_bars(ax: Axes, summary: pd.DataFrame, datasets: list[str], hues: list[str],
                  colors: dict[str, Any]) -> None:
    """Bars of ``summary`` (columns hue, dataset, mean, sd) grouped by dataset, one slot per
    hue, SD error bars; gid ``"bar:<dataset>:<hue>"``. An empty slot says "n/a"
    (gid ``"na:<dataset>:<hue>"``) so it is not read as a Dice of 0."""
    offsets, slot = dodge_offsets(len(hues))
    for i, dataset in enumerate(datasets):
        for j, hue in enumerate(hues):
            row = summary[(summary["dataset"] == dataset) & (summary["hue"] == hue)]
            x = i + offsets[j]
            if row.empty or pd.isna(row["mean"].iloc[0]):
                ax.text(x, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=6,
                        color="0.5", gid=f"na:{dataset}:{hue}")
                continue
            mean, sd = _mean_sd(row.iloc[0])
            ax.bar(x, mean, width=slot * 0.9, color=colors[hue], edgecolor="white", lw=0.5,
                   gid=f"bar:{dataset}:{hue}")
            ax.errorbar(x, mean, yerr=sd, color="0.2", lw=0.8, capsize=2,
                        gid=f"sd:{dataset}:{hue}")


def _bar_panel(ax: Axes, summary: AblationSummary, ft: pd.DataFrame, hues: list[str]) -> None:
    """Finetuned bars (``ft``: the summary's finetuned rows with a ``hue`` column) and the
    zero-shot bars of their models, first and grey."""
    datasets = order_datasets(ft["dataset"])
    names = ft.drop_duplicates("model_key").set_index("model_key")["model"]
    zs = summary.zero_shot
    zs = zs.assign(hue=[ZERO_SHOT_LABEL + x for x in _model_suffixes(ft, names.reindex(zs["model_key"]))])
    zs_hues = [ZERO_SHOT_LABEL + x for x in _model_suffixes(ft, names)]
    bars = pd.concat([zs, ft[["hue", "dataset", *SUMMARY_COLUMNS]]], ignore_index=True)
    all_hues = [*zs_hues, *hues]
    colors = {**{h: ZERO_SHOT_COLOR for h in zs_hues}, **dict(zip(hues, arm_palette(hues).values()))}
    _grouped_bars(ax, bars, datasets, all_hues, colors)
    dataset_axis(ax, datasets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(VALUE_LABELS.get(summary.value_col, summary.value_col))
    legend_right(ax, [Patch(facecolor=colors[h], label=h) for h in all_hues], fontsize=7)


def _strategy_hues(s: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``s`` with a ``hue`` strategy label; labels frozen before trained, shifts ascending."""
    hue = [strategy_label(e, b) + x
           for e, b, x in zip(s["encoder"], s["box_shift_grid_px"], _model_suffixes(s))]
    s = s.assign(hue=hue)
    keys = s.drop_duplicates("hue")
    order = sorted(zip(keys["hue"], keys["encoder"], keys["box_shift_grid_px"], keys["model_key"]),
                   key=lambda t: (str(t[3]), *_strategy_sort_key((t[1], t[2]))))
    return s, [t[0] for t in order]


def plot_strategies(summary: AblationSummary, ax: Optional[Axes] = None) -> Figure:
    """Figure 4b: the four finetuning strategies (encoder frozen/trained x box shift) per
    evaluated dataset (group ``strategy``): mean ± SD subject Dice, zero-shot bar first.

    Parameters
    ----------
    summary : ``figure4.ablation_summary(subjects, experiments, "strategy")``.
    ax : where to draw (a new figure when None).

    Returns
    -------
    Figure
        Bars with gid ``"bar:<dataset>:<strategy label>"``.
    """
    title = "Finetuning strategy"
    n = max(summary.finetuned["dataset"].nunique(), 1)
    fig, ax = figure_and_axes(ax, (max(6.0, 1.2 + 1.6 * n), 4.0))
    if summary.empty:
        _empty(ax, summary, title)
        return fig
    ft, hues = _strategy_hues(summary.finetuned)
    _bar_panel(ax, summary, ft, hues)
    ax.set_title(title)
    return fig


def plot_mixing(summary: AblationSummary, ax: Optional[Axes] = None) -> Figure:
    """Figure 4d: single dataset vs anatomy-mixed vs muscle-mixed vs all-MSK training
    (group ``mixing``), one bar group per evaluated dataset, zero-shot bar first.

    Bars use in-domain results only: the anatomy mix of the knee is scored on knee DESS, not
    the spine mix. The x axis holds the summary's datasets (by default those a single-dataset
    mixing run was scored on, the reference each mix is compared with). A mix that was not
    trained on a dataset leaves its slot empty, marked "n/a".

    Parameters
    ----------
    summary : ``figure4.ablation_summary(subjects, experiments, "mixing", datasets=...)``.
    ax : where to draw (a new figure when None).

    Returns
    -------
    Figure
        Bars with gid ``"bar:<dataset>:<mix label>"``.
    """
    title = "Dataset mixing"
    fig, ax = figure_and_axes(ax, (max(6.0, 1.2 + 1.6 * len(summary.datasets)), 4.0))
    if summary.empty:
        _empty(ax, summary, title)
        return fig
    ft = summary.finetuned
    kinds = [k for k in MIX_KINDS if k in set(ft["mix_kind"])] + \
        [k for k in dict.fromkeys(ft["mix_kind"]) if k not in MIX_KINDS]
    ft = ft.assign(hue=[MIX_LABELS.get(k, str(k)) + x for k, x in zip(ft["mix_kind"], _model_suffixes(ft))])
    by_kind = {k: i for i, k in enumerate(kinds)}
    first = ft.drop_duplicates("hue")
    hues = first.assign(_k=first["mix_kind"].map(by_kind)).sort_values(["_k", "model_key"])["hue"].tolist()
    _bar_panel(ax, summary, ft, hues)
    ax.set_title(title)
    return fig


# ------------------------------------------------------------------------- knee grid (c)
def _panel_grid(target: PanelTarget, n: int, ncols_max: int = 3) -> tuple[Figure, list[Axes]]:
    """``n`` small axes in a grid of at most ``ncols_max`` columns, drawn in ``target``: a new
    figure (None), a (sub)figure, or the place of an axes (which is replaced)."""
    ncols = min(max(n, 1), ncols_max)
    nrows = math.ceil(max(n, 1) / ncols)
    if target is None:
        parent = plt.figure(figsize=(3.0 * ncols + 1.8, 2.8 * nrows), layout="constrained")
        spec = parent.add_gridspec(nrows, ncols)
    elif isinstance(target, Axes):
        parent = target.get_figure(root=False)
        spec = target.get_subplotspec().subgridspec(nrows, ncols)
        target.remove()
    else:
        parent, spec = target, target.add_gridspec(nrows, ncols)
    axes = [parent.add_subplot(spec[i // ncols, i % ncols]) for i in range(n)]
    return root_figure(parent), axes


def _knee_panel(panel: Axes, summary: AblationSummary, rows: pd.DataFrame, dataset: str, sizes: list[str],
                hues: list[str], colors: dict[str, Any]) -> None:
    """One knee dataset: a line per strategy over size, the zero-shot of each initial model dashed."""
    rows = rows.assign(_o=rows["hue"].map(hues.index)).sort_values("_o", kind="stable")
    _size_lines(panel, rows, sizes, "hue", colors, "knee")
    for model_key in rows["model_key"].unique():
        _zero_shot_line(panel, summary.zero_shot, model_key, dataset, ZERO_SHOT_COLOR,
                        f"zero_shot:{dataset}:{model_key}")
    _size_axis(panel, sizes, _n_all(summary, [dataset]), summary.value_col)
    panel.set_gid(f"knee:{dataset}")
    panel.set_title(short_dataset_name(dataset), fontsize=9)
    panel.tick_params(labelsize=7)
    panel.xaxis.label.set_fontsize(8)
    panel.yaxis.label.set_fontsize(8)


def plot_knee_grid(summary: AblationSummary, ax: PanelTarget = None) -> Figure:
    """Figure 4c: knee datasets by training size and strategy (group ``knee``).

    Parameters
    ----------
    summary : ``figure4.ablation_summary(subjects, experiments, "knee")`` (knee datasets only).
    ax : an axes (replaced by the panels, as in :func:`plot_figure4`), a (sub)figure to fill,
        or None for a new figure.

    Returns
    -------
    Figure
        One small panel per knee dataset (axes gid ``"knee:<dataset>"``), x = training subjects
        (numeric, "all (n=K)" last, K per dataset), one line per strategy label, zero-shot of the
        initial model dashed grey.
    """
    if summary.empty:
        fig, axes = (_panel_grid(ax, 1) if not isinstance(ax, Axes) else (root_figure(ax), [ax]))
        _empty(axes[0], summary, "Knee datasets")
        return fig
    ft, hues = _strategy_hues(summary.finetuned)
    sizes = size_order(ft["size"])
    colors = dict(zip(hues, arm_palette(hues).values()))
    datasets = order_datasets(ft["dataset"])
    fig, axes = _panel_grid(ax, len(datasets))
    for k, (panel, dataset) in enumerate(zip(axes, datasets)):
        _knee_panel(panel, summary, ft[ft["dataset"] == dataset], dataset, sizes, hues, colors)
        if k % min(len(datasets), 3):
            panel.set_ylabel("")
    handles = [Line2D([], [], color=colors[h], marker="o", label=h) for h in hues]
    legend_right(axes[-1], [*handles, _zero_shot_legend_handle()], fontsize=7)
    return fig


# ------------------------------------------------------------------------------ composite
def _letter(ax: Axes, letter: str) -> None:
    ax.set_title(letter, loc="left", fontweight="bold", fontsize=13)


def plot_figure4(summaries: Mapping[str, AblationSummary]) -> Figure:
    """Figure 4 in one 2 x 2 figure: a (size, top left), b (strategy, top right), c (knee
    grid, bottom left, a nested grid of small panels in its quarter) and d (mixing, bottom
    right). Every panel falls back to its "no experiments" note on its own.

    Parameters
    ----------
    summaries : ``figure4.figure4_summaries(subjects, experiments)``: the four groups' summaries.

    Returns
    -------
    Figure
    """
    fig = plt.figure(figsize=(16, 10.5), layout="constrained")
    axs = fig.subplots(2, 2)
    plot_size_curve(summaries["size"], ax=axs[0, 0])
    plot_strategies(summaries["strategy"], ax=axs[0, 1])
    plot_mixing(summaries["mixing"], ax=axs[1, 1])
    fixed = [axs[0, 0], axs[0, 1], axs[1, 1]]
    plot_knee_grid(summaries["knee"], ax=axs[1, 0])
    knee_axes = [a for a in fig.axes if all(a is not f for f in fixed)]
    for ax, letter in ((axs[0, 0], "a"), (axs[0, 1], "b"), (knee_axes[0], "c"), (axs[1, 1], "d")):
        _letter(ax, letter)
    return fig


# ------------------------------------------------------------------------ training curves
def _short_id(experiment_id: str) -> str:
    """``"Knee_3D_DESS_.../lite_medsam-frozen-shift0-nall/Run_1"`` ->
    ``"Knee DESS 86\\nlite_medsam-frozen-shift0-nall · Run_1"`` for a panel title."""
    parts = str(experiment_id).split("/")
    return short_dataset_name(parts[0]) + ("\n" + " · ".join(parts[1:]) if len(parts) > 1 else "")


def _curves(loss_ax: Axes, dice_ax: Axes, g: pd.DataFrame, eid: str, best_epoch: Any) -> None:
    """Train/val loss on ``loss_ax`` and val Dice on ``dice_ax`` for one experiment."""
    g = g.sort_values("epoch")
    for col, ls in (("train_loss", "-"), ("val_loss", "--")):
        v = pd.to_numeric(g[col], errors="coerce")
        loss_ax.plot(g["epoch"][v.notna()], v.dropna(), ls=ls, lw=1.3, marker=".",
                     label=col.replace("_", " "), gid=f"{col}:{eid}")
    dice = pd.to_numeric(g["val_dice"], errors="coerce")
    dice_ax.plot(g["epoch"][dice.notna()], dice.dropna(), color="#009E73", lw=1.3, marker=".",
                 gid=f"val_dice:{eid}")
    if pd.notna(best_epoch):
        for ax in (loss_ax, dice_ax):
            ax.axvline(float(best_epoch), color="0.5", ls=":", lw=1.0, gid=f"best:{eid}")


def plot_training_curves(history: pd.DataFrame, experiment_ids: Optional[Sequence[str]] = None,
                         experiments: Optional[pd.DataFrame] = None, ncols_max: int = 4) -> Figure:
    """Train/val loss (top) and val Dice (bottom) per epoch, one column per experiment.

    ``experiment_ids`` picks and orders the experiments (default: all of ``history`` in order
    of appearance); an id without history gets a panel saying so. With ``experiments`` the
    best epoch is marked by a dotted vertical line. Columns wrap after ``ncols_max``.
    """
    if experiment_ids is None:
        experiment_ids = list(dict.fromkeys(history["experiment_id"])) if "experiment_id" in history else []
    ids = [str(i) for i in experiment_ids]
    if not ids:
        return placeholder_figure("no training history", figsize=(4, 1.5), gid="placeholder:history")
    ncols = min(len(ids), ncols_max)
    nrows = math.ceil(len(ids) / ncols)
    fig, axs = plt.subplots(2 * nrows, ncols, figsize=(3.4 * ncols, 4.4 * nrows), squeeze=False,
                            constrained_layout=True)
    best = {} if experiments is None or experiments.empty else \
        dict(zip(experiments["experiment_id"].astype(str), experiments["best_epoch"]))
    for k, eid in enumerate(ids):
        loss_ax, dice_ax = axs[2 * (k // ncols), k % ncols], axs[2 * (k // ncols) + 1, k % ncols]
        g = history[history["experiment_id"].astype(str) == eid] if len(history) else history
        loss_ax.set_title(_short_id(eid), fontsize=8)
        if g.empty:
            _no_history(loss_ax, dice_ax, eid)
            continue
        _curves(loss_ax, dice_ax, g, eid, best.get(eid))
        loss_ax.set_ylabel("loss", fontsize=8)
        dice_ax.set_ylabel("val Dice", fontsize=8)
        dice_ax.set_xlabel("epoch", fontsize=8)
        for ax in (loss_ax, dice_ax):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        dice_ax.set_ylim(0, 1.05)
        loss_ax.legend(fontsize=7, loc="upper right")
    for k in range(len(ids), nrows * ncols):
        axs[2 * (k // ncols), k % ncols].set_visible(False)
        axs[2 * (k // ncols) + 1, k % ncols].set_visible(False)
    return fig


def _no_history(loss_ax: Axes, dice_ax: Axes, eid: str) -> None:
    placeholder(loss_ax, "no history", gid=f"placeholder:{eid}")
    image_axes(dice_ax)
