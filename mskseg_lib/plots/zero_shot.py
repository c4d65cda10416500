"""The study's zero-shot baselines (figure 3): Dice per dataset and arm, its spread, overlays.

Every function is pure: it takes the evaluation engine's tables (``subjects``: one row per arm,
dataset and subject; ``friedman``: one row per dataset) or overlay samples, and returns a
matplotlib Figure or a pandas DataFrame. An *arm* is a model under one prompt condition.

Datasets are grouped by anatomy like every other figure
(:func:`mskseg_lib.plots.panels.figure_datasets`); their anatomy comes from the catalog, since
the result tables do not carry it. Missing Dice values (a subject whose slices all failed) are
dropped per group, and a group without any is simply not drawn. Figures are built with the
shared helpers of :mod:`mskseg_lib.plots.panels` (``format_p``, ``label_cmap`` and
``arm_palette`` live there and are importable from here too).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mskseg_lib.data.catalog import ANATOMY_ORDER, anatomy_of, dataset_order, short_dataset_name
from mskseg_lib.plots.panels import (
    arm_palette,
    dataset_axis,
    dodge_offsets,
    figure_and_axes,
    figure_datasets,
    format_p,
    image_axes,
    label_cmap,
    label_legend,
    legend_right,
    patch_handles,
    placeholder,
    placeholder_figure,
)
from mskseg_lib.plots.style import ordered

__all__ = ["VALUE_LABELS", "BOX_COLOR", "plot_dice_boxplots", "plot_condition_panels",
           "dice_variance_table", "plot_dice_variance", "pick_overlay_samples", "plot_overlay_panels",
           "plot_qc_overlays",
           "arm_palette", "format_p", "label_cmap"]

VALUE_LABELS = {"dice_mean_slice": "Dice (mean over slices)", "dice_3d": "3D Dice",
                "iou_mean_slice": "IoU (mean over slices)"}
BOX_COLOR = "#39FF14"  # prompt boxes: bright green, visible on grey MRI and on the label colours


# --------------------------------------------------------------------------------- helpers
def _arms(df: pd.DataFrame, arm_col: str) -> list[str]:
    return list(dict.fromkeys(df[arm_col].astype(str)))


def _legend_title(arm_col: str) -> str:
    """Legend title for the column the arms come from (``arm`` -> "Arm", ``model`` -> "Model")."""
    return {"arm": "Arm", "model": "Model", "condition": "Prompt condition"}.get(arm_col, arm_col)


# ----------------------------------------------------------------------- panel (a): boxes
def plot_dice_boxplots(subjects: pd.DataFrame, friedman: Optional[pd.DataFrame] = None,
                       value_col: str = "dice_mean_slice", arm_col: str = "arm",
                       ax: Optional[Axes] = None, title: Optional[str] = None) -> Figure:
    """Figure 3a: subject Dice per dataset, one box per arm with the subjects as points.

    Boxes show where the arms differ and the points show how few subjects some datasets
    have, so a box is never read without its sample. Above each dataset group is the
    BH-corrected Friedman p of that dataset ("n/a" when it was not run or the dataset is
    missing from ``friedman``).

    Parameters
    ----------
    subjects : pandas.DataFrame
        One row per arm, dataset and subject: columns ``dataset``, ``arm_col`` and
        ``value_col`` (Dice in 0-1; missing values are dropped per box).
    friedman : pandas.DataFrame, optional
        One row per dataset: columns ``dataset`` and ``p_bh`` (BH-adjusted Friedman p).
    value_col : str
        Column of ``subjects`` to draw (``dice_mean_slice``, ``dice_3d``, ``iou_mean_slice``).
    arm_col : str
        Column naming the arm (``arm``, ``model`` or ``condition``); also the legend title.
    ax : Axes, optional
        Draw here; a new figure when None.
    title : str, optional
        Axes title (default: "Zero-shot Dice per dataset (Friedman, BH-adjusted)").

    Returns
    -------
    Figure
        Boxes carry ``gid`` ``"box:<dataset>:<arm>"``, the p texts ``"p:<dataset>"``.
    """
    datasets, arms = figure_datasets(subjects), _arms(subjects, arm_col)
    fig, ax = figure_and_axes(ax, (max(6.0, 0.5 + len(datasets) * (0.4 + 0.35 * len(arms))), 4.2))
    colors = arm_palette(arms)
    offsets, slot = dodge_offsets(len(arms))
    values = pd.to_numeric(subjects[value_col], errors="coerce")
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    for i, dataset in enumerate(datasets):
        for j, arm in enumerate(arms):
            sel = (subjects["dataset"] == dataset) & (subjects[arm_col].astype(str) == arm)
            v = values[sel].dropna().to_numpy(dtype=float)
            if v.size == 0:
                continue
            x = i + offsets[j]
            bp = ax.boxplot([v], positions=[x], widths=slot * 0.8, patch_artist=True,
                            showfliers=False, manage_ticks=False,
                            medianprops=dict(color="black", lw=1.2))
            box = bp["boxes"][0]
            box.set(facecolor=colors[arm], alpha=0.45, edgecolor="0.25", gid=f"box:{dataset}:{arm}")
            ax.scatter(x + rng.uniform(-0.25, 0.25, v.size) * slot, v, s=9, color=colors[arm],
                       edgecolor="white", linewidth=0.3, zorder=3)
    p_of = {} if friedman is None else dict(zip(friedman["dataset"], friedman["p_bh"]))
    for i, dataset in enumerate(datasets):
        ax.text(i, 1.0, format_p(p_of.get(dataset)), transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=7.5, gid=f"p:{dataset}")
    dataset_axis(ax, datasets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(VALUE_LABELS.get(value_col, value_col))
    ax.set_title(title or "Zero-shot Dice per dataset (Friedman, BH-adjusted)", pad=16)
    legend_right(ax, patch_handles(colors, alpha=0.6), _legend_title(arm_col))
    return fig


def plot_condition_panels(subjects: pd.DataFrame, friedman: Optional[pd.DataFrame] = None,
                          value_col: str = "dice_mean_slice", analysis_prefix: str = "prompt conditions · ",
                          models: Optional[Sequence[str]] = None) -> Figure:
    """The project's extra zero-shot figure: one row per model, subject Dice per dataset and
    prompt condition (exact vs shifted boxes), each row with its own Friedman p across
    conditions (BH-adjusted across datasets).

    Parameters
    ----------
    subjects : pandas.DataFrame
        One row per model, condition, dataset and subject: columns ``model``, ``condition``,
        ``dataset`` and ``value_col``.
    friedman : pandas.DataFrame, optional
        The extra-analysis table: columns ``analysis``, ``dataset``, ``p_bh``; the rows of
        analysis ``analysis_prefix + <model>`` annotate that model's row.
    value_col : str
        Column of ``subjects`` to draw.
    analysis_prefix : str
        Prefix of the ``analysis`` values, before the model name.
    models : sequence of str, optional
        Rows to draw, in order (default: the models of ``subjects`` in order of appearance).

    Returns
    -------
    Figure
        One :func:`plot_dice_boxplots` panel per model with the condition as the arm; axes
        carry ``gid`` ``"model:<model>"``. No model -> one panel saying "no zero-shot results".
    """
    models = list(dict.fromkeys(subjects["model"].astype(str))) if models is None else list(models)
    n_datasets = max(subjects["dataset"].nunique(), 1)
    n_arms = max(subjects["condition"].nunique(), 1)
    fig, axs = plt.subplots(max(len(models), 1), 1, squeeze=False, constrained_layout=True,
                            figsize=(max(6.0, 0.5 + n_datasets * (0.4 + 0.35 * n_arms)), 3.8 * max(len(models), 1)))
    if not models:
        placeholder(axs[0, 0], "no zero-shot results")
        return fig
    for ax, model in zip(axs[:, 0], models):
        sub = subjects[subjects["model"].astype(str) == model]
        fr = None
        if friedman is not None and "analysis" in friedman:
            fr = friedman[friedman["analysis"] == analysis_prefix + model]
        plot_dice_boxplots(sub, fr, value_col=value_col, arm_col="condition", ax=ax,
                           title=f"{model}: exact vs shifted boxes (Friedman across conditions, BH-adjusted)")
        ax.set_gid(f"model:{model}")
    return fig


# -------------------------------------------------------------------- panel (b): variance
def dice_variance_table(subjects: pd.DataFrame, value_col: str = "dice_mean_slice",
                        arm_col: str = "arm") -> pd.DataFrame:
    """Spread of subject Dice per dataset and arm (figure 3b's numbers).

    Parameters
    ----------
    subjects : pandas.DataFrame
        As for :func:`plot_dice_boxplots`.
    value_col : str
        Column whose spread is computed.
    arm_col : str
        Column naming the arm.

    Returns
    -------
    pandas.DataFrame
        Columns dataset, arm, n_subjects (non-missing values), mean, sd, variance (ddof=1,
        NaN with fewer than two subjects). Rows follow the figure's dataset order then arm
        appearance; only (dataset, arm) pairs present in ``subjects`` are listed.
    """
    cols = ["dataset", "arm", "n_subjects", "mean", "sd", "variance"]
    rows = []
    values = pd.to_numeric(subjects[value_col], errors="coerce")
    arms = subjects[arm_col].astype(str)
    for dataset in figure_datasets(subjects):
        for arm in _arms(subjects, arm_col):
            sel = (subjects["dataset"] == dataset) & (arms == arm)
            if not sel.any():
                continue
            v = values[sel].dropna()
            rows.append({"dataset": dataset, "arm": arm, "n_subjects": int(len(v)),
                         "mean": float(v.mean()) if len(v) else np.nan,
                         "sd": float(v.std(ddof=1)) if len(v) > 1 else np.nan,
                         "variance": float(v.var(ddof=1)) if len(v) > 1 else np.nan})
    return pd.DataFrame(rows, columns=cols)


def plot_dice_variance(subjects: pd.DataFrame, value_col: str = "dice_mean_slice",
                       arm_col: str = "arm", ax: Optional[Axes] = None) -> Figure:
    """Figure 3b: variance of subject Dice per dataset, one bar per arm.

    Shows how consistent each arm is across subjects, which a median hides.

    Parameters
    ----------
    subjects : pandas.DataFrame
        As for :func:`plot_dice_boxplots`.
    value_col : str
        Column whose variance is drawn (:func:`dice_variance_table`).
    arm_col : str
        Column naming the arm.
    ax : Axes, optional
        Draw here; a new figure when None.

    Returns
    -------
    Figure
        Bars carry ``gid`` ``"bar:<dataset>:<arm>"``. A dataset with fewer than two subjects
        keeps its slot but gets no bar, and an "n<2" note (``gid`` ``"na:<dataset>"``) where no
        arm has one.
    """
    table = dice_variance_table(subjects, value_col, arm_col)
    datasets, arms = figure_datasets(subjects), _arms(subjects, arm_col)
    fig, ax = figure_and_axes(ax, (max(6.0, 0.5 + len(datasets) * (0.4 + 0.3 * len(arms))), 3.6))
    colors = arm_palette(arms)
    offsets, slot = dodge_offsets(len(arms))
    for row in table.itertuples():
        if not np.isfinite(row.variance):
            continue
        i, j = datasets.index(row.dataset), arms.index(row.arm)
        ax.bar(i + offsets[j], row.variance, width=slot * 0.9, color=colors[row.arm],
               edgecolor="white", lw=0.5, gid=f"bar:{row.dataset}:{row.arm}")
    for i, dataset in enumerate(datasets):  # say why a slot is empty, so it is not read as 0
        if not table.loc[table["dataset"] == dataset, "variance"].notna().any():
            ax.text(i, 0, "n<2", ha="center", va="bottom", fontsize=7, color="0.4",
                    gid=f"na:{dataset}")
    dataset_axis(ax, datasets)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"Variance of {VALUE_LABELS.get(value_col, value_col)}", fontsize=9)
    ax.set_title("Between-subject variance of Dice")
    legend_right(ax, patch_handles(colors), _legend_title(arm_col))
    return fig


# --------------------------------------------------------------------- panel (c): overlays
def _n_labels(sample: Mapping[str, Any]) -> int:
    gt = np.asarray(sample["gt"])
    return int(np.unique(gt[gt > 0]).size)


def pick_overlay_samples(candidates: Sequence[Mapping[str, Any]],
                         per_anatomy: int = 1) -> list[Mapping[str, Any]]:
    """Samples for figure 3c: ``per_anatomy`` per anatomy, anatomies in ``ANATOMY_ORDER``.

    Within an anatomy the slices with the most ground-truth labels come first (the most to
    look at); ties go to the dataset that comes first in
    :func:`~mskseg_lib.data.catalog.dataset_order` of the candidates, then to the order given.

    Parameters
    ----------
    candidates : sequence of mapping
        Overlay samples (see :func:`plot_overlay_panels`): each with ``dataset``, ``gt`` and
        optionally ``anatomy`` (else taken from the catalog).
    per_anatomy : int
        Samples kept per anatomy.

    Returns
    -------
    list of mapping
        The chosen samples, anatomy by anatomy.
    """
    cands = list(candidates)
    if not cands:
        return []
    anat = [str(c.get("anatomy") or anatomy_of(c["dataset"])) for c in cands]
    frame = pd.DataFrame({"dataset": [str(c["dataset"]) for c in cands], "anatomy": anat})
    ds_rank = {d: r for r, d in enumerate(dataset_order(frame))}
    out: list[Mapping[str, Any]] = []
    for anatomy in ordered(anat, ANATOMY_ORDER):
        idx = [i for i, a in enumerate(anat) if a == anatomy]
        idx.sort(key=lambda i: (-_n_labels(cands[i]), ds_rank[str(cands[i]["dataset"])], i))
        out.extend(cands[i] for i in idx[:per_anatomy])
    return out


def plot_overlay_panels(samples: Sequence[Mapping[str, Any]], max_rows: int = 5,
                        alpha: float = 0.5, cell_in: float = 2.2) -> Figure:
    """Figure 3c: one row per sample: image with its box prompts, ground truth, prediction.

    Parameters
    ----------
    samples : sequence of mapping
        Each: ``image`` (H, W) uint8; ``gt`` and ``pred`` (H, W) integer label maps;
        ``boxes`` (N, 4) prompt boxes ``x0, y0, x1, y1`` as inclusive pixel indices;
        ``dataset``; optional ``model``, ``dice`` (slice Dice, shown in the prediction's title)
        and ``label_names`` {value: name}. With more than ``max_rows`` samples,
        :func:`pick_overlay_samples` keeps one per anatomy (then the first ``max_rows``).
    max_rows : int
        Most rows drawn.
    alpha : float
        Opacity of the label overlays.
    cell_in : float
        Side of one image panel, inches.

    Returns
    -------
    Figure
        Labels share one colormap and norm across the figure (:func:`label_cmap`); background
        (0) is transparent. No sample -> one panel saying "no overlay samples".
    """
    samples = list(samples)
    if len(samples) > max_rows:
        samples = pick_overlay_samples(samples)[:max_rows]
    if not samples:
        return placeholder_figure("no overlay samples", figsize=(4, 1.5))
    max_label = max(int(max([np.max(s["gt"]), np.max(s["pred"]), *dict(s.get("label_names", {}))]))
                    for s in samples)
    cmap, norm = label_cmap(max_label)
    fig, axs = plt.subplots(len(samples), 3, figsize=(3 * cell_in + 1.8, cell_in * len(samples)),
                            squeeze=False)
    for r, s in enumerate(samples):
        image = np.asarray(s["image"])
        names = {int(k): str(v) for k, v in dict(s.get("label_names", {})).items()}
        for ax in axs[r]:
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            image_axes(ax)
        for x0, y0, x1, y1 in s.get("boxes", []):  # inclusive pixel indices -> pixel edges
            axs[r, 0].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1,
                                          fill=False, edgecolor=BOX_COLOR, lw=1.0))
        present: set[int] = set()
        for ax, key in ((axs[r, 1], "gt"), (axs[r, 2], "pred")):
            mask = np.asarray(s[key]).astype(int)
            present.update(int(v) for v in np.unique(mask[mask > 0]))
            ax.imshow(np.ma.masked_where(mask <= 0, mask), cmap=cmap, norm=norm, alpha=alpha,
                      interpolation="nearest")
        dice = float(s.get("dice", np.nan))
        axs[r, 0].set_title("Image + prompts", fontsize=8)
        axs[r, 1].set_title("Ground truth", fontsize=8)
        axs[r, 2].set_title(f"Prediction · Dice {dice:.3f}" if np.isfinite(dice)
                            else "Prediction · Dice n/a", fontsize=8)
        axs[r, 0].set_ylabel(f"{short_dataset_name(s['dataset'])}\n{s.get('model', '')}",
                             fontsize=8)
        label_legend(axs[r, 2], {v: cmap(norm(v)) for v in sorted(present)}, names, alpha=0.8)
    fig.subplots_adjust(left=0.1, right=0.78, wspace=0.05, hspace=0.25, top=0.95, bottom=0.03)
    return fig


def plot_qc_overlays(samples: Sequence[Mapping[str, Any]]) -> dict[str, Figure]:
    """QC panels of a zero-shot run: one figure per dataset, all its samples as rows.

    Parameters
    ----------
    samples : sequence of mapping
        Overlay samples as for :func:`plot_overlay_panels` (``evaluation.overlays.overlay_samples``).

    Returns
    -------
    dict of str to Figure
        Dataset name -> :func:`plot_overlay_panels` of its samples, datasets sorted by name.
    """
    out: dict[str, Figure] = {}
    for dataset in sorted({str(s["dataset"]) for s in samples}):
        rows = [s for s in samples if str(s["dataset"]) == dataset]
        out[dataset] = plot_overlay_panels(rows, max_rows=len(rows))
    return out
