"""Figure 6 of the study (notebook 06): does AutoLabel lose accuracy by prompting with detector
boxes instead of ground-truth boxes?

* **6a** (:func:`plot_figure6a`): subject Dice of each model with ground-truth box prompts and
  with detector box prompts, as paired raincloud plots, one panel per dataset. A raincloud
  shows the whole distribution (cloud), every subject (rain) and the quartiles (box) at once,
  which matters here because detector failures make the distributions skewed and bimodal
  (a missed structure costs a whole subject) where a box or a mean alone would hide it.
  Each model carries the BH-adjusted Wilcoxon rank-sum p of the two conditions, the study's
  test (:func:`mskseg_lib.stats.comparisons.ranksum_by_group`, or table S71 of
  :func:`mskseg_lib.autolabel.prompt_tests.prompt_condition_tests`, whose ``p_bh`` it is).
* **6b** (:func:`plot_figure6b`): example slices, one row each: the detector's boxes, the
  ground-truth and predicted labels as overlays, and the same as contours (where a fill hides
  how far a border is off, a contour shows it).
* :func:`plot_postprocess_cost` (figure X06a, no study counterpart): mean subject Dice with
  the pipeline's post-processing on and off, the Dice cost (or gain) of the cleanup.

**ptitprince.** The clouds and the rain are drawn with ptitprince (0.3.1, the release for
seaborn 0.13). Its ``RainCloud`` runs with the installed seaborn 0.13 / matplotlib 3.11 but is
not used as a whole, for two bugs that hit this figure: (1) its hue legend is drawn with
``plt.legend``, i.e. on pyplot's *current* axes, which in a multi-panel figure is the last
panel, not the one being drawn; (2) a group whose values are all equal (one subject, or
Dice 1.0 everywhere) goes through ``draw_single_observation``, which tests ``orient == "v"``
while seaborn 0.13 reports ``"x"``, so the line is drawn with x and y swapped, at x = the Dice
value, and stretches the y axis. It also draws both hue levels' clouds at the same place.
So the figure uses ptitprince's pieces, as ``RainCloud`` does internally:
``ptitprince.half_violinplot`` with ``split=True`` gives back-to-back clouds per model
(ground truth to the left, detector to the right; only for groups with >= 2 distinct
values), ``ptitprince.stripplot`` with ``move`` places each condition's rain outside its
cloud, and a matplotlib box (house style, as in figure 3a) sits on the rain.

As everywhere in :mod:`mskseg_lib.plots`, functions are pure (tables or samples in, Figure
out), non-finite Dice values (a model that found nothing) are dropped and counted, empty input
gives a panel that says so, and artists carry gids (``cloud:<dataset>:<model>:<condition>``,
``rain:...``, ``box:...``, ``p:<dataset>:<model>``, ``det_box``, ``gt_contour:<label>``, ...)
so tests and notebooks can find them.
"""
from __future__ import annotations

import textwrap
from typing import Any, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import ptitprince as pt
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.transforms import blended_transform_factory
from skimage.measure import find_contours

from mskseg_lib.data.catalog import short_dataset_name
from mskseg_lib.plots.panels import (
    category_axis,
    figure_legend,
    format_p,
    image_axes,
    label_cmap,
    label_legend,
    panel_grid,
    patch_handles,
)
from mskseg_lib.plots.panels import figure_datasets as _datasets
from mskseg_lib.plots.panels import placeholder as _placeholder
from mskseg_lib.plots.panels import placeholder_figure as _placeholder_figure
from mskseg_lib.plots.panels import require_columns as _require
from mskseg_lib.plots.zero_shot import BOX_COLOR

__all__ = ["CONDITION_COLORS", "CONDITION_LABELS", "plot_figure6a", "plot_figure6b",
           "plot_postprocess_cost", "condition_palette", "label_contours"]

CONDITION_COLORS: dict[str, str] = {"gt_box": "#0072B2", "detector": "#D55E00"}  # blue, vermillion
CONDITION_LABELS: dict[str, str] = {"gt_box": "ground-truth boxes", "detector": "detector boxes"}
POSTPROCESS_COLORS: dict[str, str] = {"off": "#999999", "on": "#009E73"}

# Raincloud geometry, in units of the distance between two models.
CLOUD_WIDTH = 0.44  # both clouds together: each extends up to 0.22 from the model's centre
RAIN_MOVE = 0.33  # rain and box of a condition sit this far left (first) or right (second)
RAIN_JITTER = 0.045
BOX_WIDTH = 0.07
CLOUD_BW = 0.2  # gaussian_kde bandwidth factor, ptitprince RainCloud's default


# --------------------------------------------------------------------------------- helpers
def condition_palette(conditions: Sequence[str]) -> dict[str, Any]:
    """Fixed colours for ``gt_box`` / ``detector``, colour-blind palette for any other name."""
    extra = iter(sns.color_palette("colorblind", 10)[2:])
    return {c: CONDITION_COLORS.get(c) or next(extra) for c in conditions}


def _condition_label(condition: str) -> str:
    return CONDITION_LABELS.get(condition, str(condition))


class _SeededJitter:
    """seaborn's stripplot jitters with numpy's global RNG: seed it for a reproducible figure
    and put the caller's state back afterwards."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self.state = np.random.get_state()
        np.random.seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        np.random.set_state(self.state)


def _new(artists: Sequence[Any], before: int) -> list[Any]:
    return list(artists)[before:]


# --------------------------------------------------------------------- figure 6a: rainclouds
def _draw_clouds(ax: Axes, data: pd.DataFrame, dataset: str, models: list[str],
                 conditions: Sequence[str], colors: Mapping[str, Any]) -> None:
    """Back-to-back half violins (ptitprince) of the groups with >= 2 distinct values."""
    distinct = data.groupby(["_model", "_cond"])["_v"].transform("nunique")
    cloud = data[distinct >= 2]
    if cloud.empty:
        return
    before = len(ax.collections)
    pt.half_violinplot(x="_model", y="_v", hue="_cond", data=cloud, order=models,
                       hue_order=list(conditions), split=True, palette=dict(colors), saturation=1,
                       width=CLOUD_WIDTH, offset=0.0, inner=None, cut=0.0, bw=CLOUD_BW,
                       scale="area", orient="v", linewidth=0.8, ax=ax, alpha=0.55, zorder=1)
    for coll in _new(ax.collections, before):
        x = np.concatenate([p.vertices[:, 0] for p in coll.get_paths()])
        centre = int(round(float(np.mean(x))))
        side = 0 if np.mean(x) < centre else 1  # split: first condition left, second right
        coll.set_gid(f"cloud:{dataset}:{models[centre]}:{conditions[side]}")


def _draw_rain_and_boxes(ax: Axes, data: pd.DataFrame, dataset: str, models: list[str],
                         conditions: Sequence[str], colors: Mapping[str, Any], seed: int) -> None:
    """Subjects as jittered points (ptitprince stripplot) with a box on each condition's rain."""
    for j, cond in enumerate(conditions):
        move = -RAIN_MOVE if j == 0 else RAIN_MOVE
        rain = data[data["_cond"] == cond]
        if rain.empty:
            continue
        before = len(ax.collections)
        with _SeededJitter(seed + j):
            pt.stripplot(x="_model", y="_v", data=rain, order=models, orient="v",
                         color=colors[cond], move=move, jitter=RAIN_JITTER, size=3.2,
                         edgecolor="white", linewidth=0.3, ax=ax, zorder=2)
        for coll in _new(ax.collections, before):
            offsets = np.asarray(coll.get_offsets())
            if offsets.size:
                centre = int(round(float(np.mean(offsets[:, 0]) - move)))
                coll.set_gid(f"rain:{dataset}:{models[centre]}:{cond}")
        for i, model in enumerate(models):
            v = rain.loc[rain["_model"] == model, "_v"].to_numpy(dtype=float)
            if v.size == 0:
                continue
            bp = ax.boxplot([v], positions=[i + move], widths=BOX_WIDTH, patch_artist=True,
                            showfliers=False, manage_ticks=False, zorder=3,
                            medianprops=dict(color="black", lw=1.2),
                            whiskerprops=dict(color="0.2", lw=0.9), capprops=dict(color="0.2", lw=0.9))
            bp["boxes"][0].set(facecolor="white", alpha=0.75, edgecolor="0.2", lw=0.9,
                               gid=f"box:{dataset}:{model}:{cond}")


def _p_lookup(tests: Optional[pd.DataFrame], model_col: str, p_col: str) -> Optional[dict]:
    if tests is None:
        return None
    if tests.empty:
        return {}
    _require(tests, ["dataset", model_col, p_col], "tests")
    return {(str(d), str(m)): p for d, m, p in zip(tests["dataset"], tests[model_col], tests[p_col])}


def plot_figure6a(subjects: pd.DataFrame, tests: Optional[pd.DataFrame] = None,
                  value_col: str = "dice", *, condition_col: str = "prompt",
                  model_col: str = "model", conditions: Sequence[str] = ("gt_box", "detector"),
                  p_col: str = "p_bh", ncols: int = 3, seed: int = 0) -> Figure:
    """Figure 6a: subject Dice with ground-truth vs detector box prompts, paired rainclouds.

    ``subjects``: one row per dataset x subject x model x prompt condition, columns
    ``dataset``, ``model_col``, ``condition_col`` and ``value_col``. One panel per dataset
    (anatomy order, as in figure 3); x = model (order of first appearance); per model the
    first condition's cloud faces left with its rain and box further left, the second
    condition's mirror it to the right, so the two are read side by side. Rows of other
    conditions are ignored. Non-finite values are dropped; where some were, a grey
    ``"<k> NaN"`` under that condition's rain (gid ``nan:<dataset>:<model>:<condition>``) says
    how many subjects have no Dice, so a missing detector is not mistaken for a good one.

    ``tests`` (output of :func:`~mskseg_lib.stats.comparisons.ranksum_by_group`): columns
    ``dataset``, ``model_col`` and ``p_col``; each model gets ``format_p`` of its BH-adjusted
    rank-sum p above its pair (gid ``p:<dataset>:<model>``, "n/a" when the test did not run or
    is not in the table). Without ``tests`` nothing is annotated.
    """
    conditions = [str(c) for c in conditions]
    if len(conditions) != 2 or conditions[0] == conditions[1]:
        raise ValueError(f"figure 6a pairs exactly two conditions, got {conditions!r}")
    if not subjects.empty:
        _require(subjects, ["dataset", model_col, condition_col, value_col], "subjects")
    p_of = _p_lookup(tests, model_col, p_col)
    data = pd.DataFrame()
    if not subjects.empty:
        data = pd.DataFrame({
            "dataset": subjects["dataset"].astype(str), "_model": subjects[model_col].astype(str),
            "_cond": subjects[condition_col].astype(str),
            "_v": pd.to_numeric(subjects[value_col], errors="coerce").astype(float)})
        data = data[data["_cond"].isin(conditions)]
        data["_v"] = data["_v"].where(np.isfinite(data["_v"]))
    datasets = _datasets(data)
    if not datasets:
        return _placeholder_figure(f"no subject {value_col} values for {' / '.join(conditions)}")
    colors = condition_palette(conditions)
    n_models = data.groupby("dataset")["_model"].nunique().max()
    fig, axes = panel_grid(len(datasets), ncols, (max(3.6, 1.6 + 1.3 * n_models), 3.8))
    finite_all = data["_v"].dropna()
    dice_like = finite_all.empty or bool(((finite_all >= 0) & (finite_all <= 1)).all())
    for ax, dataset in zip(axes.ravel(), datasets):
        sub = data[data["dataset"] == dataset]
        models = list(dict.fromkeys(sub["_model"]))
        title = short_dataset_name(dataset)
        finite = sub.dropna(subset=["_v"])
        if finite.empty:
            _placeholder(ax, f"no finite {value_col} values", title)
            continue
        _draw_clouds(ax, finite, dataset, models, conditions, colors)
        _draw_rain_and_boxes(ax, finite, dataset, models, conditions, colors, seed)
        xaxis = blended_transform_factory(ax.transData, ax.transAxes)
        for i, model in enumerate(models):
            for j, cond in enumerate(conditions):
                sel = (sub["_model"] == model) & (sub["_cond"] == cond)
                n_nan = int(sub.loc[sel, "_v"].isna().sum())
                if n_nan:
                    ax.text(i + (-RAIN_MOVE if j == 0 else RAIN_MOVE), 0.01, f"{n_nan} NaN",
                            transform=xaxis, ha="center", va="bottom", fontsize=6.5, color="0.4",
                            gid=f"nan:{dataset}:{model}:{cond}")
            if p_of is not None:
                ax.text(i, 1.0, format_p(p_of.get((dataset, model))), transform=xaxis,
                        ha="center", va="bottom", fontsize=7.5, gid=f"p:{dataset}:{model}")
        if ax.get_legend() is not None:  # ptitprince's hue legend; the figure has one for all
            ax.get_legend().remove()
        category_axis(ax, models)
        if dice_like:
            ax.set_ylim(0.0, 1.05)
        ax.set_xlabel("")
        ax.set_ylabel("Dice" if value_col == "dice" else value_col)
        ax.set_title(title, pad=14 if p_of is not None else 6)
    handles = patch_handles({_condition_label(c): colors[c] for c in conditions}, alpha=0.7)
    figure_legend(fig, handles, "upper", title=("Prompt (BH-adjusted Wilcoxon rank-sum p per model)"
                                                if p_of is not None else "Prompt"))
    return fig


# --------------------------------------------------------------- figure 6b: example slices
def label_contours(mask: np.ndarray) -> dict[int, list[np.ndarray]]:
    """Label value -> its contours as (K, 2) arrays of (row, col), in pixel-centre coordinates.

    ``skimage.measure.find_contours`` at level 0.5 of each label's binary mask, padded by one
    pixel so that a structure touching the border still gets a closed contour; the contour
    runs half-way between the label's pixels and its neighbours.
    """
    mask = np.asarray(mask).astype(int)
    out: dict[int, list[np.ndarray]] = {}
    for value in np.unique(mask[mask > 0]):
        binary = np.pad(mask == value, 1).astype(float)
        out[int(value)] = [c - 1.0 for c in find_contours(binary, 0.5)]
    return out


def _box_rect(box: Sequence[float], inclusive: bool) -> tuple[tuple[float, float], float, float]:
    """Rectangle (xy, width, height) in imshow coordinates (pixel centres at integers)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if inclusive:  # indices of the first and last covered pixel -> pixel edges
        return (x0 - 0.5, y0 - 0.5), x1 - x0 + 1.0, y1 - y0 + 1.0
    return (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0  # continuous edges (pixel 0 spans 0..1)


def _max_label(s: Mapping[str, Any]) -> int:
    values = [np.max(np.asarray(s["gt"]), initial=0), np.max(np.asarray(s["pred"]), initial=0),
              np.max(np.asarray(s.get("det_labels", []), dtype=float), initial=0),
              *[int(k) for k in dict(s.get("label_names", {}) or {})]]
    return int(max(values))


def plot_figure6b(samples: Sequence[Mapping[str, Any]], max_rows: int = 5, *, alpha: float = 0.5,
                  cell_in: float = 2.2, boxes_inclusive: bool = True) -> Figure:
    """Figure 6b: example slices, one row per sample (the first ``max_rows``), five columns:

    1. the image with the detector's boxes (gid ``det_box``), coloured by their label;
    2. / 3. ground-truth / predicted labels as overlays (gids ``gt_overlay`` / ``pred_overlay``);
    4. / 5. ground-truth / predicted labels as contours (gids ``gt_contour:<label>`` /
       ``pred_contour:<label>``, one line per contour piece, :func:`label_contours`).

    A sample: ``image`` (H, W) uint8; ``gt`` and ``pred`` (H, W) integer label maps;
    ``det_boxes`` (N, 4) x0, y0, x1, y1 in image pixels (inclusive pixel indices as in
    :mod:`mskseg_lib.data.boxes`, or continuous edges with ``boxes_inclusive=False``);
    ``det_labels`` (N,) label values; ``title`` (e.g. "dataset / subject / slice / model,
    Dice 0.83"), written beside the row; optional ``label_names`` {value: name} for the legend.
    One label colour map (:func:`~mskseg_lib.plots.zero_shot.label_cmap`) serves the whole
    figure, so a label has the same colour in boxes, overlays and contours.
    """
    samples = list(samples)[:max(int(max_rows), 0)]
    if not samples:
        return _placeholder_figure("no examples", figsize=(4, 1.5))
    cmap, norm = label_cmap(max(_max_label(s) for s in samples))

    def color(value: Any) -> Any:
        return cmap(norm(int(value)))

    fig, axs = plt.subplots(len(samples), 5, figsize=(5 * cell_in + 1.6, cell_in * len(samples) + 0.3),
                            squeeze=False)
    titles = ("Detector boxes", "Ground truth", "Prediction", "Ground-truth contours",
              "Predicted contours")
    for r, s in enumerate(samples):
        image = np.asarray(s["image"])
        gt, pred = np.asarray(s["gt"]).astype(int), np.asarray(s["pred"]).astype(int)
        if gt.shape != image.shape or pred.shape != image.shape:
            raise ValueError(f"sample {r}: image {image.shape}, gt {gt.shape} and pred {pred.shape} "
                             "must have one shape")
        boxes = np.asarray(s.get("det_boxes", []), dtype=float).reshape(-1, 4)
        labels = s.get("det_labels")
        if labels is not None and len(labels) != len(boxes):
            raise ValueError(f"sample {r}: {len(boxes)} det_boxes but {len(labels)} det_labels")
        vmax = 255 if image.dtype == np.uint8 else None
        for c, ax in enumerate(axs[r]):
            ax.imshow(image, cmap="gray", vmin=0 if vmax else None, vmax=vmax,
                      interpolation="nearest", gid="image")
            image_axes(ax)
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        for k, box in enumerate(boxes):
            xy, w, h = _box_rect(box, boxes_inclusive)
            edge = color(labels[k]) if labels is not None else BOX_COLOR
            axs[r, 0].add_patch(Rectangle(xy, w, h, fill=False, edgecolor=edge, lw=1.2, gid="det_box"))
        for ax, mask, name in ((axs[r, 1], gt, "gt"), (axs[r, 2], pred, "pred")):
            ax.imshow(np.ma.masked_where(mask <= 0, mask), cmap=cmap, norm=norm, alpha=alpha,
                      interpolation="nearest", gid=f"{name}_overlay")
        for ax, mask, name in ((axs[r, 3], gt, "gt"), (axs[r, 4], pred, "pred")):
            for value, pieces in label_contours(mask).items():
                for piece in pieces:
                    ax.plot(piece[:, 1], piece[:, 0], color=color(value), lw=1.0,
                            gid=f"{name}_contour:{value}")
            ax.set_xlim(-0.5, mask.shape[1] - 0.5)
            ax.set_ylim(mask.shape[0] - 0.5, -0.5)
        axs[r, 0].set_ylabel(textwrap.fill(str(s.get("title", "")), 28, break_long_words=False,
                                                break_on_hyphens=False), fontsize=7)
        names = {int(k): str(v) for k, v in dict(s.get("label_names", {}) or {}).items()}
        present = sorted(set(np.unique(gt[gt > 0]).tolist()) | set(np.unique(pred[pred > 0]).tolist())
                         | ({int(v) for v in labels} if labels is not None else set()))
        label_legend(axs[r, 4], {v: color(v) for v in present}, names)
    fig.subplots_adjust(left=0.08, right=0.88, wspace=0.04, hspace=0.08,
                        top=1 - 0.35 / fig.get_figheight(), bottom=0.02)
    return fig


# ------------------------------------------------------------ post-processing on vs off
def plot_postprocess_cost(df: pd.DataFrame, value_col: str = "dice", *, model_col: str = "model",
                          postprocess_col: str = "postprocess", ncols: int = 3,
                          seed: int = 0) -> Figure:
    """Mean subject Dice with post-processing off and on, per dataset (panel) and model (x).

    ``df``: columns ``dataset``, ``model_col``, ``postprocess_col`` ("off"/"on") and
    ``value_col``, one row per subject. Bars are means of the finite values (gid
    ``bar:<dataset>:<model>:<off|on>``) with the subjects as points; above each model the
    difference of means, on - off (gid ``delta:<dataset>:<model>``, e.g. "Δ -0.012"), which is
    the Dice cost (negative) or gain of the cleanup.
    """
    if not df.empty:
        _require(df, ["dataset", model_col, postprocess_col, value_col], "df")
    data = pd.DataFrame()
    if not df.empty:
        data = pd.DataFrame({"dataset": df["dataset"].astype(str), "_model": df[model_col].astype(str),
                             "_pp": df[postprocess_col].astype(str).str.lower(),
                             "_v": pd.to_numeric(df[value_col], errors="coerce").astype(float)})
        data = data[data["_pp"].isin(["off", "on"]) & np.isfinite(data["_v"])]
    datasets = _datasets(data)
    if not datasets:
        return _placeholder_figure("no post-processing comparison")
    n_models = data.groupby("dataset")["_model"].nunique().max()
    fig, axes = panel_grid(len(datasets), ncols, (max(3.2, 1.4 + 1.0 * n_models), 3.4))
    rng = np.random.default_rng(seed)
    for ax, dataset in zip(axes.ravel(), datasets):
        sub = data[data["dataset"] == dataset]
        models = list(dict.fromkeys(sub["_model"]))
        xaxis = blended_transform_factory(ax.transData, ax.transAxes)
        for i, model in enumerate(models):
            means = {}
            for j, state in enumerate(("off", "on")):
                v = sub.loc[(sub["_model"] == model) & (sub["_pp"] == state), "_v"].to_numpy()
                if v.size == 0:
                    continue
                x = i + (j - 0.5) * 0.36
                means[state] = float(v.mean())
                ax.bar(x, means[state], width=0.34, color=POSTPROCESS_COLORS[state], alpha=0.8,
                       gid=f"bar:{dataset}:{model}:{state}")
                ax.scatter(x + rng.uniform(-0.1, 0.1, v.size), v, s=8, color="0.15", lw=0, zorder=3)
            text = f"Δ {means['on'] - means['off']:+.3f}" if len(means) == 2 else "Δ n/a"
            ax.text(i, 1.0, text, transform=xaxis, ha="center", va="bottom", fontsize=7.5,
                    gid=f"delta:{dataset}:{model}")
        category_axis(ax, models)
        ax.set_ylim(0.0, 1.05)
        ax.set_ylabel("mean subject Dice" if value_col == "dice" else f"mean {value_col}")
        ax.set_title(short_dataset_name(dataset), pad=14)
    figure_legend(fig, patch_handles({f"post-processing {s}": c for s, c in POSTPROCESS_COLORS.items()}, alpha=0.8),
                  "upper")
    return fig
