"""Figures of notebook 07: SAM2 video propagation through 3D volumes.

The slices of an MRI volume are treated as the frames of a video: one slice of a structure is
prompted (a point, points with negatives, or a box) and SAM2's memory carries the mask forward
and backward through the volume. Image-only models (LiteMedSAM, SAM2's image predictor) are
run the same way by prompting every slice (no memory) or by carrying the previous slice's mask
to the next as a box / point prompt. The figures answer two questions:

* :func:`plot_dice_vs_offset`: *where* does propagation drift? Median slice Dice (with the
  inter-quartile range) against the distance from the prompted slice, one line per model and
  scheme, one panel per dataset. A memory-based scheme that works stays flat; one that drifts
  falls off with the distance, and asymmetry shows whether forward or backward propagation is
  the weak direction. The far offsets rest on fewer structures (only the long ones reach them),
  so their bands are noisier.
* :func:`plot_scheme_dice`: *how good* is each scheme on the whole volume? The ``combined`` 3D
  Dice (the SAM2 knee study's "femur and tibia combined": the Dice of the union of the femur
  and tibia masks; spine: the union of the vertebral bodies), per scheme (x) and model
  (dodged), each subject a point with the median as a bar; optionally anchored on a published
  value.
* :func:`plot_example_slices`: what the drift looks like: slices of one volume at chosen
  offsets from the prompted slice, manual mask as solid contours and prediction as dashed
  contours in the same colour per label.

Conventions as everywhere in :mod:`mskseg_lib.plots`: pure functions (tables or arrays in,
Figure out), rows with non-finite Dice are dropped, empty input gives a panel that says so,
and artists carry gids (``median:<dataset>:<model>:<scheme>``, ``iqr:...``, ``subjects:...``,
``prompted_slice``, ``anchor``, ``gt_contour:<label>``, ``pred_contour:<label>``, ...) so tests
and notebooks can find them.
"""
from __future__ import annotations

import textwrap
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from mskseg_lib.data.catalog import anatomy_of, short_dataset_name
from mskseg_lib.evaluation.metrics import mean_label_dice
from mskseg_lib.plots.autolabel import label_contours
from mskseg_lib.plots.panels import arm_palette, category_axis, dodge_offsets, figure_legend, image_axes, label_cmap, panel_grid
from mskseg_lib.plots.panels import figure_datasets as _datasets
from mskseg_lib.plots.panels import placeholder_figure as _placeholder_figure
from mskseg_lib.plots.panels import require_columns as _require
from mskseg_lib.plots.style import ordered

__all__ = ["SCHEME_LABELS", "SCHEME_COLORS", "PROMPTED_COLOR", "scheme_label", "scheme_palette",
           "line_label", "plot_dice_vs_offset", "plot_scheme_dice", "plot_example_slices"]

SCHEME_LABELS: dict[str, str] = {
    "points_per_slice": "points per slice (no memory)",
    "boxes_per_slice": "boxes per slice (no memory)",
    "point_video": "1 point + video",
    "points_neg_video": "points + negatives + video",
    "box_carry": "box carried slice to slice",
    "point_carry": "point carried slice to slice",
}
# Fixed per scheme (Okabe-Ito), so a scheme keeps its colour whatever subset a figure shows:
# blues = per slice, orange/vermillion = video memory, green/pink = mask carried slice to slice.
SCHEME_COLORS: dict[str, str] = {
    "points_per_slice": "#56B4E9",
    "boxes_per_slice": "#0072B2",
    "point_video": "#E69F00",
    "points_neg_video": "#D55E00",
    "box_carry": "#009E73",
    "point_carry": "#CC79A7",
}
EXTRA_SCHEME_COLORS: tuple[str, ...] = ("#8C564B", "#7F7F7F", "#BCBD22", "#000000")  # unknown keys
MODEL_LINESTYLES: tuple[Any, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))
MODEL_MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P")
PROMPTED_COLOR = "#D55E00"  # frame of the prompted slice's panel
OFFSET_COLUMNS = ("model", "scheme", "dataset", "offset", "dice")
SCHEME_COLUMNS = ("model", "scheme", "dataset", "subject_id", "structure", "dice")


# --------------------------------------------------------------------------------- helpers
def scheme_label(scheme: str) -> str:
    """Readable name of a scheme key (``SCHEME_LABELS``); an unknown key is its own name."""
    return SCHEME_LABELS.get(str(scheme), str(scheme))


def line_label(model: str, scheme: str) -> str:
    """Legend label of one (model, scheme) line: ``"<model> · <scheme label>"``."""
    return f"{model} · {scheme_label(scheme)}"


def scheme_palette(schemes: Sequence[str]) -> dict[str, Any]:
    """Fixed colours (``SCHEME_COLORS``) for the study's schemes; any other key gets the next of
    ``EXTRA_SCHEME_COLORS`` (cycling), in the given order."""
    out: dict[str, Any] = {}
    k = 0
    for s in schemes:
        if s in SCHEME_COLORS:
            out[s] = SCHEME_COLORS[s]
        else:
            out[s] = EXTRA_SCHEME_COLORS[k % len(EXTRA_SCHEME_COLORS)]
            k += 1
    return out


def _scheme_order(schemes: Sequence[str]) -> list[str]:
    """Distinct schemes in ``SCHEME_LABELS`` order, unknown keys after them in order of appearance."""
    return ordered([str(s) for s in schemes], SCHEME_LABELS)


def _finite_dice(df: pd.DataFrame) -> pd.DataFrame:
    """Copy with string model/scheme/dataset and float dice, rows with non-finite dice dropped."""
    out = df.copy()
    for col in ("model", "scheme", "dataset"):
        out[col] = out[col].astype(str)
    out["dice"] = pd.to_numeric(out["dice"], errors="coerce").astype(float)
    return out[np.isfinite(out["dice"])]


def _offset_text(k: int) -> str:
    return "0" if k == 0 else f"{k:+d}"


# ---------------------------------------------------------------- Dice against the offset
def plot_dice_vs_offset(slices: pd.DataFrame, *, max_offset: int | None = None,
                        title: str | None = None) -> Figure:
    """Median slice Dice against the offset from the prompted slice, with its IQR as a band.

    ``slices``: the engine's slice table (columns ``model``, ``scheme``, ``dataset``,
    ``offset``, ``dice``, ...; one row per model x scheme x subject x structure x slice). One
    panel per dataset (columns, shared y, anatomy order); x = ``offset`` (slice index minus
    the structure's prompted slice; negative = before it); per (model, scheme) a line through
    the median Dice over all subjects and structures at each offset (gid
    ``median:<dataset>:<model>:<scheme>``, label :func:`line_label`) and the 25th-75th
    percentile band around it (gid ``iqr:...``). Colour = scheme (``SCHEME_COLORS``), line
    style = model. A grey dashed vertical line at 0 (gid ``prompted_slice``) marks the
    prompted slice. Rows with non-finite Dice are ignored; with ``max_offset`` offsets beyond
    +/- ``max_offset`` are dropped (a few very long structures otherwise stretch the x axis
    with single-sample medians). The y axis runs from 0 to 1.02; one legend for all panels sits
    below them. No scored slice -> one panel saying "no slices scored".
    """
    if slices is None or slices.empty:
        return _placeholder_figure("no slices scored", title)
    _require(slices, OFFSET_COLUMNS, "slices")
    data = _finite_dice(slices)
    data = data.assign(offset=pd.to_numeric(data["offset"], errors="coerce"))
    data = data[np.isfinite(data["offset"])].astype({"offset": int})
    if max_offset is not None:
        data = data[data["offset"].abs() <= abs(int(max_offset))]
    datasets = _datasets(data)
    if not datasets:
        return _placeholder_figure("no slices scored", title)

    models = list(dict.fromkeys(data["model"]))
    schemes = _scheme_order(data["scheme"].unique())
    colors = scheme_palette(schemes)
    style = {m: MODEL_LINESTYLES[i % len(MODEL_LINESTYLES)] for i, m in enumerate(models)}
    fig, axes = panel_grid(len(datasets), len(datasets), (4.2, 3.8), sharey=True, extra_in=(0.6, 0.0))
    handles: dict[str, Any] = {}
    for ax, dataset in zip(axes[0], datasets):
        sub = data[data["dataset"] == dataset]
        for scheme in schemes:
            for model in models:
                grp = sub[(sub["scheme"] == scheme) & (sub["model"] == model)]
                if grp.empty:
                    continue
                q = grp.groupby("offset")["dice"].quantile([0.25, 0.5, 0.75]).unstack()
                x = q.index.to_numpy(dtype=float)
                key = f"{dataset}:{model}:{scheme}"
                label = line_label(model, scheme)
                ax.fill_between(x, q[0.25].to_numpy(), q[0.75].to_numpy(), color=colors[scheme],
                                alpha=0.18, lw=0, gid=f"iqr:{key}")
                (line,) = ax.plot(x, q[0.5].to_numpy(), color=colors[scheme], ls=style[model],
                                  lw=1.5, label=label, gid=f"median:{key}")
                handles.setdefault(label, line)
        vline = ax.axvline(0, color="0.35", ls="--", lw=1.0, zorder=0.5, label="prompted slice",
                           gid="prompted_slice")
        handles.setdefault("prompted slice", vline)
        ax.set_ylim(0.0, 1.02)
        if max_offset is not None:
            pad = max(abs(int(max_offset)) * 0.03, 0.5)
            ax.set_xlim(-abs(int(max_offset)) - pad, abs(int(max_offset)) + pad)
        ax.set_xlabel("offset from the prompted slice (slices)")
        ax.set_title(short_dataset_name(dataset))
    axes[0, 0].set_ylabel("slice Dice (median, IQR band)")
    ordered_labels = [line_label(m, s) for s in schemes for m in models
                      if line_label(m, s) in handles] + ["prompted slice"]
    figure_legend(fig, [handles[k] for k in ordered_labels], ncols_max=3)
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------- 3D Dice per scheme and model
def plot_scheme_dice(structures: pd.DataFrame, *, anchor: float | None = None,
                     anchor_label: str = "published", anchor_anatomy: str | None = None,
                     title: str | None = None) -> Figure:
    """The ``combined`` 3D Dice (femur + tibia union), per scheme and model, one panel per dataset.

    ``structures``: the engine's structure table; only its ``structure == "combined"`` rows
    (one per model x scheme x subject) are drawn. x = scheme (``SCHEME_LABELS`` order of the
    schemes present, the same in every panel); per scheme one slot per model (dodged, in order
    of first appearance, same slot in every panel, so a model without that scheme leaves a
    gap): each subject as a jittered point (gid ``subjects:<dataset>:<model>:<scheme>``) and
    the median as a black bar across the slot (gid ``median:<dataset>:<model>:<scheme>``).
    Colour and marker = model. With ``anchor``, a dotted horizontal line at that value in every
    panel (gid ``anchor``) labelled ``anchor_label`` in the legend, e.g. "published: 0.9196
    (points + negatives + video, OAI-ZIB)", to read the reproduction against the paper.
    ``anchor_anatomy`` (e.g. "knee") limits the line to the panels of that anatomy: a published
    knee value is not a reference for a spine panel. Non-finite Dice rows are dropped; nothing
    left -> one panel saying "no volumes scored".
    """
    if structures is None or structures.empty:
        return _placeholder_figure("no volumes scored", title)
    _require(structures, SCHEME_COLUMNS, "structures")
    data = _finite_dice(structures[structures["structure"].astype(str) == "combined"])
    datasets = _datasets(data)
    if not datasets:
        return _placeholder_figure("no volumes scored", title)

    models = list(dict.fromkeys(data["model"]))
    schemes = _scheme_order(data["scheme"].unique())
    palette = arm_palette(models)
    markers = {m: MODEL_MARKERS[i % len(MODEL_MARKERS)] for i, m in enumerate(models)}
    offsets, slot = dodge_offsets(len(models))
    dodge = dict(zip(models, offsets))
    rng = np.random.default_rng(0)  # jitter: reproducible, caller's RNG untouched
    width = max(3.6, 1.0 + 1.15 * len(schemes))
    fig, axes = panel_grid(len(datasets), len(datasets), (width, 4.2), sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        sub = data[data["dataset"] == dataset]
        for i, scheme in enumerate(schemes):
            for model in models:
                v = sub.loc[(sub["scheme"] == scheme) & (sub["model"] == model), "dice"].to_numpy()
                if v.size == 0:
                    continue
                x = i + dodge[model]
                key = f"{dataset}:{model}:{scheme}"
                ax.scatter(x + rng.uniform(-0.22, 0.22, v.size) * slot, v, s=14,
                           color=palette[model], marker=markers[model], alpha=0.75,
                           edgecolor="white", linewidth=0.3, zorder=2, gid=f"subjects:{key}")
                ax.plot([x - 0.4 * slot, x + 0.4 * slot], [np.median(v)] * 2, color="black",
                        lw=2.0, solid_capstyle="butt", zorder=3, gid=f"median:{key}")
        if anchor is not None and (anchor_anatomy is None or anatomy_of(dataset) == anchor_anatomy):
            ax.axhline(float(anchor), color="0.2", ls=":", lw=1.3, zorder=1, label=anchor_label,
                       gid="anchor")
        category_axis(ax, [textwrap.fill(scheme_label(s), 14, break_long_words=False) for s in schemes], fontsize=8)
        ax.set_ylim(0.0, 1.02)
        ax.set_title(short_dataset_name(dataset))
    axes[0, 0].set_ylabel("3D Dice (combined)")
    handles: list[Any] = [Line2D([], [], ls="", marker=markers[m], color=palette[m], label=m)
                          for m in models]
    handles.append(Line2D([], [], color="black", lw=2.0, label="median"))
    if anchor is not None:
        handles.append(Line2D([], [], color="0.2", ls=":", lw=1.3, label=anchor_label))
    figure_legend(fig, handles)
    if title:
        fig.suptitle(title)
    return fig


# -------------------------------------------------------------------------- example slices
def plot_example_slices(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, prompt_slice: int,
                        offsets: list[int], *, label_names: dict[int, str] | None = None,
                        title: str | None = None) -> Figure:
    """Slices of one volume at ``offsets`` from the prompted slice, manual vs predicted contours.

    ``image``, ``gt`` and ``pred``: (N, H, W) stacks, slice first, already in display
    orientation (drawn with ``imshow(origin="upper")``, image in grey on one intensity scale
    for the whole stack so slices compare); ``gt``/``pred`` integer label maps. One panel per
    distinct requested offset ``k`` whose slice ``prompt_slice + k`` lies in 0..N-1 (others are
    skipped and not drawn), up to six per row, titled ``"offset +k (slice s)"``. Per label one
    colour (:func:`~mskseg_lib.plots.zero_shot.label_cmap`): the manual mask as solid contours
    (gid ``gt_contour:<label>``), the prediction as dashed contours (gid
    ``pred_contour:<label>``); the corner of each panel gives the slice's mean label Dice
    (:func:`~mskseg_lib.evaluation.metrics.mean_label_dice`, gid ``slice_dice``). The prompted
    slice's panel has its title suffixed ", prompted" and an orange frame. The legend below says
    solid = manual, dashed = predicted and names the labels (``label_names`` {value: name}, else
    the value). Stacks of different shapes, or not 3D,
    raise ValueError naming the shapes; no offset inside the volume -> a panel saying so.
    """
    image, gt, pred = np.asarray(image), np.asarray(gt), np.asarray(pred)
    if not (image.shape == gt.shape == pred.shape) or image.ndim != 3:
        raise ValueError(f"image {image.shape}, gt {gt.shape} and pred {pred.shape} must be (N, H, W) "
                         "stacks of one shape")
    gt, pred = gt.astype(int), pred.astype(int)
    n = image.shape[0]
    prompt_slice = int(prompt_slice)
    panels = [(int(k), prompt_slice + int(k)) for k in dict.fromkeys(int(k) for k in offsets)
              if 0 <= prompt_slice + int(k) < n]
    if not panels:
        return _placeholder_figure(f"no slice of the {n}-slice volume at offsets {list(offsets)} "
                                   f"from slice {prompt_slice}", title)
    names = {int(k): str(v) for k, v in dict(label_names or {}).items()}
    max_label = int(max(gt.max(initial=0), pred.max(initial=0), max(names, default=0)))
    cmap, norm = label_cmap(max_label)
    finite = image[np.isfinite(image)] if np.issubdtype(image.dtype, np.floating) else image
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)

    fig, axs = panel_grid(len(panels), 6, (2.4, 2.4), extra_in=(0.0, 0.8))
    present: set[int] = set()
    for ax, (k, s) in zip(axs.ravel(), panels):
        ax.imshow(image[s], cmap="gray", vmin=vmin, vmax=vmax, origin="upper",
                  interpolation="nearest", gid="image")
        for mask, name, ls in ((gt[s], "gt", "-"), (pred[s], "pred", "--")):
            for value, pieces in label_contours(mask).items():
                present.add(value)
                for piece in pieces:
                    ax.plot(piece[:, 1], piece[:, 0], color=cmap(norm(value)), ls=ls, lw=1.1,
                            gid=f"{name}_contour:{value}")
        ax.set_xlim(-0.5, image.shape[2] - 0.5)
        ax.set_ylim(image.shape[1] - 0.5, -0.5)
        dice = mean_label_dice(pred[s], gt[s])
        ax.text(0.02, 0.02, "Dice n/a" if np.isnan(dice) else f"Dice {dice:.2f}",
                transform=ax.transAxes, ha="left", va="bottom", fontsize=7, color="white",
                bbox=dict(facecolor="black", alpha=0.5, lw=0, pad=1.5), gid="slice_dice")
        image_axes(ax)
        text = f"offset {_offset_text(k)} (slice {s})"
        if k == 0:
            text += ", prompted"
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color(PROMPTED_COLOR)
                spine.set_linewidth(2.5)
        ax.set_title(text, fontsize=8, color=PROMPTED_COLOR if k == 0 else "black")
    handles: list[Any] = [Line2D([], [], color="0.2", ls="-", lw=1.1, label="manual (solid)"),
                          Line2D([], [], color="0.2", ls="--", lw=1.1, label="predicted (dashed)")]
    handles += [Patch(facecolor=cmap(norm(v)), label=names.get(v, str(v))) for v in sorted(present)]
    figure_legend(fig, handles, ncols_max=6, fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
