"""The study's finetuning ablations (figure 4) and the training curves behind them.

Panels, each drawn from the engine's ``subjects`` and ``experiments`` tables:

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
from typing import Any, Iterable, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from mskseg_lib.finetuning.report import (CONDITION, group_scores, in_group, order_datasets,
                                          summarise, zero_shot_scores)
from mskseg_lib.plots.dataset_overview import short_dataset_name
from mskseg_lib.plots.zero_shot import VALUE_LABELS, _dataset_axis, _offsets, anatomy_of, arm_palette

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


def _n_all(scores: pd.DataFrame) -> Any:
    """Largest ``n_train_subjects_max`` of the runs with ``train_subjects == "all"``."""
    if "n_train_subjects_max" not in scores:
        return np.nan
    runs = scores[scores["train_subjects"].astype(str) == "all"]
    return pd.to_numeric(runs["n_train_subjects_max"], errors="coerce").max()


def _root(target: Union[Axes, Figure, SubFigure]) -> Figure:
    """The top-level Figure of an axes or (sub)figure."""
    return target.get_figure(root=True) if not isinstance(target, Figure) else target


def _fig_of(ax: Optional[Axes], figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        return plt.subplots(figsize=figsize, constrained_layout=True)
    return _root(ax), ax


def _placeholder(ax: Axes, group: str, defined: bool = False) -> None:
    """Say in the panel why it is empty: no experiment of ``group``, or none with results yet
    (pending, failed, or not scored under this condition)."""
    text = (f'no results of group "{group}" yet' if defined
            else f'no experiments of group "{group}" in this profile')
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="0.4", gid=f"placeholder:{group}")
    ax.set_xticks([])
    ax.set_yticks([])


def _empty(ax: Axes, experiments: pd.DataFrame, group: str, title: str) -> None:
    _placeholder(ax, group, defined=not in_group(experiments, group).empty)
    ax.set_title(title)


def _model_suffixes(scores: pd.DataFrame, models: Optional[Iterable[Any]] = None) -> list[str]:
    """``" · <model>"`` per row of ``scores`` (or per entry of ``models``) when the panel
    mixes initial models, so labels stay unambiguous; empty strings otherwise."""
    models = list(scores["model"] if models is None else models)
    multi = scores["model_key"].nunique() > 1
    return [f" · {m}" if multi else "" for m in models]


def _zero_shot_summary(subjects: pd.DataFrame, scores: pd.DataFrame, condition: str,
                       value_col: str) -> pd.DataFrame:
    """Zero-shot mean/SD per (model_key, dataset) for the models and datasets of ``scores``."""
    zs = zero_shot_scores(subjects, scores["model_key"].unique(), condition, value_col)
    zs = zs[zs["dataset"].isin(set(scores["dataset"]))]
    return summarise(zs, ["model_key", "dataset"])


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
        g = summary[summary[series_col] == series].assign(_x=lambda d: d["size"].map(x_of) + dx)
        g = g.sort_values("_x")
        cont = ax.errorbar(g["_x"], g["mean"], yerr=g["sd"].fillna(0.0), color=colors[series],
                           marker="o", ms=4, lw=1.4, capsize=3, label=series)
        cont.lines[0].set_gid(f"{gid_prefix}:{series}")
        for bars in cont.lines[2]:
            bars.set_gid(f"sd:{series}")


def _zero_shot_line(ax: Axes, zs: pd.DataFrame, model_key: str, dataset: str, color: Any,
                    gid: str) -> None:
    """Dashed horizontal line at the zero-shot mean of ``model_key`` on ``dataset`` (from a
    :func:`_zero_shot_summary` table); nothing when that baseline is missing."""
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


def plot_size_curve(subjects: pd.DataFrame, experiments: pd.DataFrame, ax: Optional[Axes] = None,
                    condition: str = CONDITION, value_col: str = "dice_mean_slice") -> Figure:
    """Figure 4a: Dice vs number of training subjects per dataset (group ``size``).

    One line per evaluated dataset (and initial model, when several), x ordered numerically
    with "all (n=K)" last, mean ± SD over test subjects; the dataset's zero-shot Dice of the
    same initial model is a dashed line in the same colour (gid ``"zero_shot:<series>"``).
    """
    title = "Training-set size"
    fig, ax = _fig_of(ax, (6.0, 4.0))
    s = group_scores(subjects, experiments, "size", condition, value_col)
    if s.empty:
        _empty(ax, experiments, "size", title)
        return fig
    s = s.assign(size=s["train_subjects"].astype(str).str.strip(),
                 series=[short_dataset_name(d) + x for d, x in zip(s["dataset"], _model_suffixes(s))])
    sizes = size_order(s["size"])
    summary = summarise(s, ["series", "model_key", "size"])
    series_order = _series_in_dataset_order(s)
    colors = dict(zip(series_order, arm_palette(series_order).values()))
    summary = summary.assign(_o=summary["series"].map(series_order.index)).sort_values("_o", kind="stable")
    _size_lines(ax, summary, sizes, "series", colors, "size")
    zs = _zero_shot_summary(subjects, s, condition, value_col)
    for series, model_key, dataset in s[["series", "model_key", "dataset"]].drop_duplicates().to_numpy():
        _zero_shot_line(ax, zs, model_key, dataset, colors[series], f"zero_shot:{series}")
    _size_axis(ax, sizes, _n_all(s), value_col)
    ax.set_title(title)
    handles = [Line2D([], [], color=colors[k], marker="o", label=k) for k in series_order]
    ax.legend(handles=[*handles, _zero_shot_legend_handle()], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
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
    offsets, slot = _offsets(len(hues))
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


def _bar_panel(ax: Axes, subjects: pd.DataFrame, s: pd.DataFrame, hues: list[str],
               condition: str, value_col: str) -> None:
    """Finetuned bars (``s`` with a ``hue`` column) and the zero-shot bars of their models."""
    datasets = order_datasets(s["dataset"])
    zs = _zero_shot_summary(subjects, s, condition, value_col)
    names = s.drop_duplicates("model_key").set_index("model_key")["model"]
    zs = zs.assign(hue=[ZERO_SHOT_LABEL + x for x in _model_suffixes(s, names.reindex(zs["model_key"]))])
    zs_hues = [ZERO_SHOT_LABEL + x for x in _model_suffixes(s, names)]
    summary = pd.concat([zs, summarise(s, ["hue", "dataset"])], ignore_index=True)
    all_hues = [*zs_hues, *hues]
    colors = {**{h: ZERO_SHOT_COLOR for h in zs_hues}, **dict(zip(hues, arm_palette(hues).values()))}
    _grouped_bars(ax, summary, datasets, all_hues, colors)
    _dataset_axis(ax, datasets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(VALUE_LABELS.get(value_col, value_col))
    ax.legend(handles=[Patch(facecolor=colors[h], label=h) for h in all_hues], fontsize=7,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _strategy_hues(s: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``s`` with a ``hue`` strategy label; labels frozen before trained, shifts ascending."""
    hue = [strategy_label(e, b) + x
           for e, b, x in zip(s["encoder"], s["box_shift_grid_px"], _model_suffixes(s))]
    s = s.assign(hue=hue)
    keys = s.drop_duplicates("hue")
    order = sorted(zip(keys["hue"], keys["encoder"], keys["box_shift_grid_px"], keys["model_key"]),
                   key=lambda t: (str(t[3]), *_strategy_sort_key((t[1], t[2]))))
    return s, [t[0] for t in order]


def plot_strategies(subjects: pd.DataFrame, experiments: pd.DataFrame, ax: Optional[Axes] = None,
                    condition: str = CONDITION, value_col: str = "dice_mean_slice") -> Figure:
    """Figure 4b: the four finetuning strategies (encoder frozen/trained x box shift) per
    evaluated dataset (group ``strategy``): mean ± SD subject Dice, zero-shot bar first."""
    title = "Finetuning strategy"
    s = group_scores(subjects, experiments, "strategy", condition, value_col)
    n = max(s["dataset"].nunique(), 1)
    fig, ax = _fig_of(ax, (max(6.0, 1.2 + 1.6 * n), 4.0))
    if s.empty:
        _empty(ax, experiments, "strategy", title)
        return fig
    s, hues = _strategy_hues(s)
    _bar_panel(ax, subjects, s, hues, condition, value_col)
    ax.set_title(title)
    return fig


def plot_mixing(subjects: pd.DataFrame, experiments: pd.DataFrame, ax: Optional[Axes] = None,
                datasets: Optional[Sequence[str]] = None, condition: str = CONDITION,
                value_col: str = "dice_mean_slice") -> Figure:
    """Figure 4d: single dataset vs anatomy-mixed vs muscle-mixed vs all-MSK training
    (group ``mixing``), one bar group per evaluated dataset, zero-shot bar first.

    Bars use in-domain results only: the anatomy mix of the knee is scored on knee DESS, not
    the spine mix. By default the x axis holds the datasets that a single-dataset mixing run
    was scored on (the reference each mix is compared with); ``datasets`` overrides it. A
    mix that was not trained on a dataset leaves its slot empty, marked "n/a".
    """
    title = "Dataset mixing"
    s = group_scores(subjects, experiments, "mixing", condition, value_col)
    if datasets is None:
        singles = s[s["mix_kind"].astype(str) == "single"] if len(s) else s
        datasets = order_datasets((singles if len(singles) else s)["dataset"])
    s = s[s["dataset"].isin([str(d) for d in datasets])]
    fig, ax = _fig_of(ax, (max(6.0, 1.2 + 1.6 * len(datasets)), 4.0))
    if s.empty:
        _empty(ax, experiments, "mixing", title)
        return fig
    kinds = [k for k in MIX_KINDS if k in set(s["mix_kind"])] + \
        [k for k in dict.fromkeys(s["mix_kind"]) if k not in MIX_KINDS]
    s = s.assign(hue=[MIX_LABELS.get(k, str(k)) + x for k, x in zip(s["mix_kind"], _model_suffixes(s))])
    by_kind = {k: i for i, k in enumerate(kinds)}
    first = s.drop_duplicates("hue")
    hues = first.assign(_k=first["mix_kind"].map(by_kind)).sort_values(["_k", "model_key"])["hue"].tolist()
    _bar_panel(ax, subjects, s, hues, condition, value_col)
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
    return _root(parent), axes


def plot_knee_grid(subjects: pd.DataFrame, experiments: pd.DataFrame, ax: PanelTarget = None,
                   condition: str = CONDITION, value_col: str = "dice_mean_slice") -> Figure:
    """Figure 4c: knee datasets by training size and strategy (group ``knee``).

    One small panel per knee dataset (anatomy from the catalog; axes gid ``"knee:<dataset>"``),
    x = training subjects (numeric, "all (n=K)" last, K per dataset), one line per strategy
    label, zero-shot of the initial model dashed grey. ``ax`` may be an axes (replaced by the
    panels, as in :func:`plot_figure4`), a (sub)figure to fill, or None for a new figure.
    """
    s = group_scores(subjects, experiments, "knee", condition, value_col)
    if len(s):
        s = s[s["dataset"].map(anatomy_of) == "knee"]
    if s.empty:
        fig, axes = (_panel_grid(ax, 1) if not isinstance(ax, Axes) else (_root(ax), [ax]))
        _empty(axes[0], experiments, "knee", "Knee datasets")
        return fig
    s, hues = _strategy_hues(s)
    s = s.assign(size=s["train_subjects"].astype(str).str.strip())
    sizes = size_order(s["size"])
    colors = dict(zip(hues, arm_palette(hues).values()))
    datasets = order_datasets(s["dataset"])
    fig, axes = _panel_grid(ax, len(datasets))
    zs = _zero_shot_summary(subjects, s, condition, value_col)
    for k, (panel, dataset) in enumerate(zip(axes, datasets)):
        d = s[s["dataset"] == dataset]
        summary = summarise(d, ["hue", "size"])
        summary = summary.assign(_o=summary["hue"].map(hues.index)).sort_values("_o", kind="stable")
        _size_lines(panel, summary, sizes, "hue", colors, "knee")
        for model_key in d["model_key"].unique():
            _zero_shot_line(panel, zs, model_key, dataset, ZERO_SHOT_COLOR,
                            f"zero_shot:{dataset}:{model_key}")
        _size_axis(panel, sizes, _n_all(d), value_col)
        panel.set_gid(f"knee:{dataset}")
        panel.set_title(short_dataset_name(dataset), fontsize=9)
        panel.tick_params(labelsize=7)
        panel.xaxis.label.set_fontsize(8)
        panel.yaxis.label.set_fontsize(8)
        if k % min(len(datasets), 3):
            panel.set_ylabel("")
    handles = [Line2D([], [], color=colors[h], marker="o", label=h) for h in hues]
    axes[-1].legend(handles=[*handles, _zero_shot_legend_handle()], fontsize=7,
                    loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# ------------------------------------------------------------------------------ composite
def _letter(ax: Axes, letter: str) -> None:
    ax.set_title(letter, loc="left", fontweight="bold", fontsize=13)


def plot_figure4(subjects: pd.DataFrame, experiments: pd.DataFrame, condition: str = CONDITION,
                 value_col: str = "dice_mean_slice") -> Figure:
    """Figure 4 in one 2 x 2 figure: a (size, top left), b (strategy, top right), c (knee
    grid, bottom left, a nested grid of small panels in its quarter) and d (mixing, bottom
    right). Every panel falls back to its "no experiments" note on its own."""
    fig = plt.figure(figsize=(16, 10.5), layout="constrained")
    axs = fig.subplots(2, 2)
    kw = dict(condition=condition, value_col=value_col)
    plot_size_curve(subjects, experiments, ax=axs[0, 0], **kw)
    plot_strategies(subjects, experiments, ax=axs[0, 1], **kw)
    plot_mixing(subjects, experiments, ax=axs[1, 1], **kw)
    fixed = [axs[0, 0], axs[0, 1], axs[1, 1]]
    plot_knee_grid(subjects, experiments, ax=axs[1, 0], **kw)
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
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no training history", ha="center", va="center", gid="placeholder:history")
        return fig
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
    loss_ax.text(0.5, 0.5, "no history", transform=loss_ax.transAxes, ha="center", va="center",
                 color="0.4", gid=f"placeholder:{eid}")
    for ax in (loss_ax, dice_ax):
        ax.set_xticks([])
        ax.set_yticks([])
