"""The study's zero-shot baselines (figure 3): Dice per dataset and arm, its spread, overlays.

Every function is pure: it takes the evaluation engine's tables (``subjects``: one row per arm,
dataset and subject; ``friedman``: one row per dataset) or overlay samples, and returns a
matplotlib Figure or a pandas DataFrame. An *arm* is a model under one prompt condition.

Datasets are grouped by anatomy like every other figure (:func:`dataset_order`); their anatomy
comes from the catalog, since the result tables do not carry it. Missing Dice values (a subject
whose slices all failed) are dropped per group, and a group without any is simply not drawn.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from mskseg_lib.plots.dataset_overview import dataset_order, short_dataset_name
from mskseg_lib.plots.style import ANATOMY_ORDER, anatomy_color, ordered

VALUE_LABELS = {"dice_mean_slice": "Dice (mean over slices)", "dice_3d": "3D Dice",
                "iou_mean_slice": "IoU (mean over slices)"}
BOX_COLOR = "#39FF14"  # prompt boxes: bright green, visible on grey MRI and on the label colours


# --------------------------------------------------------------------------------- helpers
def anatomy_of(dataset: str) -> str:
    """Anatomy of a dataset from the catalog; an unknown name falls back to its first word
    (``"Knee_x"`` -> ``"knee"``), so results of a manifest source still group sensibly."""
    from mskseg_lib.data.catalog import get_dataset

    try:
        return get_dataset(str(dataset)).anatomy
    except KeyError:
        return str(dataset).split("_")[0].lower()


def _datasets(df: pd.DataFrame) -> list[str]:
    """Datasets of a result table in figure order (anatomy groups, then first appearance)."""
    if df.empty:
        return []
    first = df.drop_duplicates("dataset")[["dataset"]]
    return dataset_order(first.assign(anatomy=first["dataset"].map(anatomy_of)))


def _arms(df: pd.DataFrame, arm_col: str) -> list[str]:
    return list(dict.fromkeys(df[arm_col].astype(str)))


def arm_palette(arms: Sequence[str]) -> dict[str, Any]:
    """One colour-blind-friendly colour per arm, in the given order."""
    return dict(zip(arms, sns.color_palette("colorblind", max(len(arms), 1))))


def format_p(p: Any) -> str:
    """``0.0123`` -> ``"p=0.012"``, below 0.001 -> ``"p<0.001"``, NaN/None -> ``"n/a"``."""
    try:
        p = float(p)
    except (TypeError, ValueError):
        return "n/a"
    if not np.isfinite(p):
        return "n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _fig_of(ax: Optional[Axes], figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        return plt.subplots(figsize=figsize, constrained_layout=True)
    return ax.figure, ax


def _dataset_axis(ax: Axes, datasets: list[str]) -> None:
    """Short dataset names as x ticks, coloured by anatomy."""
    ax.set_xticks(range(len(datasets)), [short_dataset_name(d) for d in datasets],
                  rotation=30, ha="right")
    for tick, d in zip(ax.get_xticklabels(), datasets):
        tick.set_color(anatomy_color(anatomy_of(d)))
    ax.set_xlim(-0.6, len(datasets) - 0.4)
    ax.grid(axis="x", visible=False)


def _arm_legend(ax: Axes, colors: Mapping[str, Any], alpha: float = 1.0, title: str = "Arm") -> None:
    if colors:
        ax.legend(handles=[Patch(facecolor=c, alpha=alpha, label=a) for a, c in colors.items()],
                  title=title, fontsize=8, title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))


def _legend_title(arm_col: str) -> str:
    """Legend title for the column the arms come from (``arm`` -> "Arm", ``model`` -> "Model")."""
    return {"arm": "Arm", "model": "Model", "condition": "Prompt condition"}.get(arm_col, arm_col)


def _offsets(n_arms: int, width: float = 0.8) -> tuple[np.ndarray, float]:
    """x offsets of ``n_arms`` side-by-side slots in a group of total ``width``, and slot width."""
    slot = width / max(n_arms, 1)
    return (np.arange(n_arms) - (n_arms - 1) / 2) * slot, slot


# ----------------------------------------------------------------------- panel (a): boxes
def plot_dice_boxplots(subjects: pd.DataFrame, friedman: Optional[pd.DataFrame] = None,
                       value_col: str = "dice_mean_slice", arm_col: str = "arm",
                       ax: Optional[Axes] = None, title: Optional[str] = None) -> Figure:
    """Figure 3a: subject Dice per dataset, one box per arm with the subjects as points.

    Boxes show where the arms differ and the points show how few subjects some datasets
    have, so a box is never read without its sample. Above each dataset group is the
    BH-corrected Friedman p of that dataset (``friedman["p_bh"]``; "n/a" when it was not run
    or the dataset is missing from ``friedman``). Boxes carry ``gid`` ``"box:<dataset>:<arm>"``,
    the p texts ``"p:<dataset>"``.
    """
    datasets, arms = _datasets(subjects), _arms(subjects, arm_col)
    fig, ax = _fig_of(ax, (max(6.0, 0.5 + len(datasets) * (0.4 + 0.35 * len(arms))), 4.2))
    colors = arm_palette(arms)
    offsets, slot = _offsets(len(arms))
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
    _dataset_axis(ax, datasets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(VALUE_LABELS.get(value_col, value_col))
    ax.set_title(title or "Zero-shot Dice per dataset (Friedman, BH-adjusted)", pad=16)
    _arm_legend(ax, colors, alpha=0.6, title=_legend_title(arm_col))
    return fig


def plot_condition_panels(subjects: pd.DataFrame, friedman: Optional[pd.DataFrame] = None,
                          value_col: str = "dice_mean_slice", analysis_prefix: str = "prompt conditions · ",
                          models: Optional[Sequence[str]] = None) -> Figure:
    """The project's extra zero-shot figure: one row per model, subject Dice per dataset and
    prompt condition (exact vs shifted boxes), each row with its own Friedman p across
    conditions (BH-adjusted across datasets).

    ``friedman`` is the extra-analysis table (an ``analysis`` column, rows of analysis
    ``analysis_prefix + <model>``); panels are :func:`plot_dice_boxplots` with the condition as
    the arm. Axes carry ``gid`` ``"model:<model>"``.
    """
    models = list(dict.fromkeys(subjects["model"].astype(str))) if models is None else list(models)
    n_datasets = max(subjects["dataset"].nunique(), 1)
    n_arms = max(subjects["condition"].nunique(), 1)
    fig, axs = plt.subplots(max(len(models), 1), 1, squeeze=False, constrained_layout=True,
                            figsize=(max(6.0, 0.5 + n_datasets * (0.4 + 0.35 * n_arms)), 3.8 * max(len(models), 1)))
    if not models:
        axs[0, 0].text(0.5, 0.5, "no zero-shot results", ha="center", va="center")
        axs[0, 0].axis("off")
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

    Columns: dataset, arm, n_subjects (non-missing values), mean, sd, variance (ddof=1, NaN
    with fewer than two subjects). Rows follow :func:`dataset_order` then arm appearance; only
    (dataset, arm) pairs present in ``subjects`` are listed.
    """
    cols = ["dataset", "arm", "n_subjects", "mean", "sd", "variance"]
    rows = []
    values = pd.to_numeric(subjects[value_col], errors="coerce")
    arms = subjects[arm_col].astype(str)
    for dataset in _datasets(subjects):
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

    Shows how consistent each arm is across subjects, which a median hides. A dataset with
    fewer than two subjects keeps its slot but gets no bar, and an "n<2" note (``gid``
    ``"na:<dataset>"``) where no arm has one. Bars carry ``gid`` ``"bar:<dataset>:<arm>"``.
    """
    table = dice_variance_table(subjects, value_col, arm_col)
    datasets, arms = _datasets(subjects), _arms(subjects, arm_col)
    fig, ax = _fig_of(ax, (max(6.0, 0.5 + len(datasets) * (0.4 + 0.3 * len(arms))), 3.6))
    colors = arm_palette(arms)
    offsets, slot = _offsets(len(arms))
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
    _dataset_axis(ax, datasets)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"Variance of {VALUE_LABELS.get(value_col, value_col)}", fontsize=9)
    ax.set_title("Between-subject variance of Dice")
    _arm_legend(ax, colors, title=_legend_title(arm_col))
    return fig


# --------------------------------------------------------------------- panel (c): overlays
def _n_labels(sample: Mapping[str, Any]) -> int:
    gt = np.asarray(sample["gt"])
    return int(np.unique(gt[gt > 0]).size)


def pick_overlay_samples(candidates: Sequence[Mapping[str, Any]],
                         per_anatomy: int = 1) -> list[Mapping[str, Any]]:
    """Samples for figure 3c: ``per_anatomy`` per anatomy, anatomies in ``ANATOMY_ORDER``.

    Within an anatomy the slices with the most ground-truth labels come first (the most to
    look at); ties go to the dataset that comes first in :func:`dataset_order` of the
    candidates, then to the order given.
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


def label_cmap(max_label: int) -> tuple[ListedColormap, BoundaryNorm]:
    """One qualitative colour per label value 1..max_label (cycling), with its norm, shared by
    ground truth and prediction so a label has the same colour in both."""
    n = max(int(max_label), 1)
    base = plt.get_cmap("tab10" if n <= 10 else "tab20")
    cmap = ListedColormap([base(i % base.N) for i in range(n)])
    return cmap, BoundaryNorm(np.arange(0.5, n + 1.0), cmap.N)


def plot_overlay_panels(samples: Sequence[Mapping[str, Any]], max_rows: int = 5,
                        alpha: float = 0.5, cell_in: float = 2.2) -> Figure:
    """Figure 3c: one row per sample: image with its box prompts, ground truth, prediction.

    When more than ``max_rows`` samples are given, :func:`pick_overlay_samples` keeps one per
    anatomy (then the first ``max_rows``). Labels share one colormap and norm across the whole
    figure; background (0) is transparent. The prediction's title carries the slice Dice.
    """
    samples = list(samples)
    if len(samples) > max_rows:
        samples = pick_overlay_samples(samples)[:max_rows]
    if not samples:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no overlay samples", ha="center", va="center")
        return fig
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
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
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
        handles = [Patch(facecolor=cmap(norm(v)), alpha=0.8, label=names.get(v, str(v)))
                   for v in sorted(present)]
        if handles:
            axs[r, 2].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5),
                             fontsize=6, handlelength=1.0, borderaxespad=0)
    fig.subplots_adjust(left=0.1, right=0.78, wspace=0.05, hspace=0.25, top=0.95, bottom=0.03)
    return fig
