"""The study's dataset figure (figure 2, panels a-f) and its QC montage.

Every function here draws: it takes the prepared tables (``subjects``, ``slices``: see
:mod:`mskseg_lib.data.tables`) or ``catalog.labels_table()`` and returns a matplotlib Figure.
Nothing is read or written; notebook 01 saves the results with :mod:`mskseg_lib.reporting`. The
tables S0-S2 that go with the figure are :mod:`mskseg_lib.data.summary`'s.

Missing values are expected (real data lack ages, weights or timings): every plot drops them
per variable and says how many were missing.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy.stats import gaussian_kde

from mskseg_lib.data.catalog import dataset_order, short_dataset_name
from mskseg_lib.data.splits import SPLITS
from mskseg_lib.data.summary import normalize_sex, numeric_column
from mskseg_lib.plots.panels import figure_and_axes, image_axes, label_legend, placeholder, placeholder_figure
from mskseg_lib.plots.style import (
    ANATOMY_ORDER,
    SEX_COLORS,
    SPLIT_ALPHA,
    TISSUE_ORDER,
    anatomy_color,
    ordered,
    tissue_color,
)

SEX_LEVELS = ("F", "M", "unknown")

# Binary acquisition attributes of the UpSet panel: label -> (column, comparison, value).
# Numeric comparisons on NaN are False, and a missing vendor/acquisition matches nothing, so
# an unknown parameter counts as "attribute absent". 3T uses 2.5 T as the cut-off because
# scanners report their nominal 3 T field differently (Siemens headers say 2.89 T).
UPSET_THRESHOLDS: dict[str, tuple[str, str, Any]] = {
    "3T": ("field_strength_t", ">=", 2.5),
    "thin slice (≤1.5 mm)": ("slice_thickness_mm", "<=", 1.5),
    "long TR (≥1000 ms)": ("tr_ms", ">=", 1000.0),
    "long TE (≥30 ms)": ("te_ms", ">=", 30.0),
    "large flip (≥60°)": ("flip_angle_deg", ">=", 60.0),
    "3D acquisition": ("acquisition", "==", "3D"),
    "vendor GE": ("vendor", "startswith", "GE"),
}


# --------------------------------------------------------------------------------- helpers
def _short_names(datasets: Sequence[str]) -> dict[str, str]:
    """Dataset -> short name, falling back to the full name where short names collide."""
    short = {d: short_dataset_name(d) for d in datasets}
    counts = pd.Series(list(short.values())).value_counts()
    return {d: (s if counts[s] == 1 else d) for d, s in short.items()}


@contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed NumPy's global random state for the ``with`` body, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _anatomies(df: pd.DataFrame) -> list[str]:
    return ordered(df["anatomy"].tolist(), ANATOMY_ORDER)


def _two_axes(axes: Optional[Sequence[Axes]], figsize: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    if axes is None:
        fig, axs = plt.subplots(1, 2, figsize=figsize, constrained_layout=True)
        return fig, list(axs)
    axs = list(axes)
    if len(axs) != 2:
        raise ValueError(f"expected two axes, got {len(axs)}")
    return axs[0].figure, axs


# ----------------------------------------------------------------------- panel (a): density
def plot_age_weight_density(subjects: pd.DataFrame, axes: Optional[Sequence[Axes]] = None) -> Figure:
    """Panel (a): kernel density of age (left) and weight (right), one curve per anatomy.

    Missing ages/weights are dropped per variable and counted in each axes' corner. An
    anatomy with a single known value (or no spread) is drawn as a dashed vertical line; one
    with none is left out of that axes' legend.
    """
    fig, axs = _two_axes(axes, (10, 3.8))
    anatomies = _anatomies(subjects)
    for ax, column, xlabel in zip(axs, ("age_years", "weight_kg"), ("Age (years)", "Weight (kg)")):
        values = numeric_column(subjects, column)
        known = values.dropna()
        if len(known):
            span = max(float(known.max() - known.min()), 1.0)
            grid = np.linspace(known.min() - 0.15 * span, known.max() + 0.15 * span, 256)
        for anatomy in anatomies:
            v = values[subjects["anatomy"] == anatomy].dropna().to_numpy()
            color = anatomy_color(anatomy)
            label = f"{anatomy} (n={len(v)})"
            if len(v) >= 2 and v.std() > 0:
                density = gaussian_kde(v, bw_method="scott")(grid)  # Scott's bandwidth
                ax.plot(grid, density, color=color, lw=1.8, label=label)
                ax.fill_between(grid, density, color=color, alpha=0.12, lw=0)
            elif len(v) >= 1:
                ax.axvline(float(v[0]), color=color, lw=1.5, ls="--", label=label)
        n_missing = int(values.isna().sum())
        ax.text(0.99, 0.97, f"missing: {n_missing}", transform=ax.transAxes,
                ha="right", va="top", fontsize=8, color="0.35")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Density")
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="Anatomy", fontsize=8, title_fontsize=8, loc="best")
    axs[0].set_title("Age")
    axs[1].set_title("Weight")
    return fig


# ------------------------------------------------------------------------ panel (b): counts
def _stacked_split_bars(ax: Axes, counts: pd.DataFrame, anatomies: list[str]) -> None:
    """counts: index anatomy, columns split -> stacked bars, anatomy colour, split alpha."""
    splits = ordered(list(counts.columns), SPLITS)
    for i, anatomy in enumerate(anatomies):
        bottom = 0.0
        for split in splits:
            h = float(counts.at[anatomy, split]) if anatomy in counts.index else 0.0
            if h <= 0:
                continue
            ax.bar(i, h, bottom=bottom, width=0.7, color=anatomy_color(anatomy),
                   alpha=SPLIT_ALPHA.get(split, 0.45), edgecolor="white", lw=0.8)
            bottom += h
        ax.annotate(f"{int(bottom)}", (i, bottom), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(anatomies)), anatomies)
    ax.grid(axis="x", visible=False)
    ax.margins(y=0.12)


def plot_counts_per_anatomy(subjects: pd.DataFrame, slices: pd.DataFrame,
                            axes: Optional[Sequence[Axes]] = None) -> Figure:
    """Panel (b): subjects (left) and processed slices (right) per anatomy, stacked by split.

    Bars take the anatomy colour; train/val/test are shaded from dark to light and each bar
    carries its total. A slice's anatomy comes from its dataset in ``subjects`` (unmatched
    datasets are counted as "unknown").
    """
    fig, axs = _two_axes(axes, (9, 3.6))
    anatomies = _anatomies(subjects)
    subj = subjects.groupby(["anatomy", "split"]).size().unstack(fill_value=0)
    anat_of = subjects.drop_duplicates("dataset").set_index("dataset")["anatomy"]
    sl = slices.assign(anatomy=slices["dataset"].map(anat_of).fillna("unknown"))
    sl_anatomies = anatomies + (["unknown"] if (sl["anatomy"] == "unknown").any() else [])
    sl_counts = sl.groupby(["anatomy", "split"]).size().unstack(fill_value=0)
    _stacked_split_bars(axs[0], subj, anatomies)
    _stacked_split_bars(axs[1], sl_counts, sl_anatomies)
    axs[0].set_ylabel("Subjects")
    axs[1].set_ylabel("Processed slices")
    axs[0].set_title("Subjects per anatomy")
    axs[1].set_title("Slices per anatomy")
    splits = ordered(list(subj.columns) + list(sl_counts.columns), SPLITS)
    handles = [Patch(facecolor="0.3", alpha=SPLIT_ALPHA.get(s, 0.45), label=s) for s in splits]
    axs[1].legend(handles=handles, title="Split", fontsize=8, title_fontsize=8, loc="upper right")
    return fig


# ----------------------------------------------------------------------- panel (c): violins
def plot_demographic_violins(subjects: pd.DataFrame, hue: str = "sequence") -> Figure:
    """Panel (c): age (top) and weight (bottom) violins per dataset, grouped by anatomy.

    Datasets are ordered by anatomy, with a tinted band and the anatomy name over each group;
    x labels are :func:`short_dataset_name`. ``hue`` is ``"sequence"`` or ``"protocol_type"``.
    Individual subjects are overlaid as points; missing values are dropped per row of the
    figure (a dataset without any known value shows an empty slot).
    """
    if hue not in subjects:
        raise KeyError(f"hue column {hue!r} not in subjects")
    order = dataset_order(subjects)
    short = _short_names(order)
    x_order = [short[d] for d in order]
    df = subjects.assign(_x=subjects["dataset"].map(short),
                         age_years=numeric_column(subjects, "age_years"),
                         weight_kg=numeric_column(subjects, "weight_kg"),
                         _hue=subjects[hue].fillna("unknown").astype(str))
    hue_levels = sorted(df["_hue"].unique())
    palette = dict(zip(hue_levels, sns.color_palette("Set2", len(hue_levels))))
    anat_of = df.drop_duplicates("dataset").set_index("_x")["anatomy"]

    width = max(7.0, 0.75 * len(order) + 2.5)
    fig, axs = plt.subplots(2, 1, figsize=(width, 7.0), sharex=True, constrained_layout=True)
    for ax, column, ylabel in zip(axs, ("age_years", "weight_kg"), ("Age (years)", "Weight (kg)")):
        data = df.dropna(subset=[column])
        # group bands: one tinted span per anatomy
        start = 0
        for anatomy, group in _runs([anat_of[x] for x in x_order]):
            ax.axvspan(start - 0.5, start + group - 0.5, color=anatomy_color(anatomy),
                       alpha=0.08, lw=0, zorder=0)
            if ax is axs[0]:
                ax.text(start + (group - 1) / 2, 1.01, anatomy, transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=9, fontweight="bold",
                        color=anatomy_color(anatomy))
            start += group
        if len(data):
            sns.violinplot(data=data, x="_x", y=column, order=x_order, hue="_hue",
                           hue_order=hue_levels, palette=palette, dodge=False, cut=0,
                           inner=None, density_norm="width", linewidth=0.8, ax=ax,
                           legend="auto" if ax is axs[0] else False)
            with _seeded_global_rng(0):  # seaborn jitters with np.random: the same figure on every run
                sns.stripplot(data=data, x="_x", y=column, order=x_order, color="0.15", size=2.5,
                              jitter=0.12, alpha=0.7, ax=ax, legend=False)
        missing = df.groupby("_x")[column].apply(lambda s: int(s.isna().sum()))
        for i, x in enumerate(x_order):
            if missing.get(x, 0):
                ax.text(i, 0.02, f"{missing[x]} missing", transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=7, color="0.4")
        ax.set_ylabel(ylabel)
        ax.set_xlabel("")
        ax.set_xlim(-0.5, len(x_order) - 0.5)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo - 0.1 * (hi - lo), hi)  # room for the "missing" notes
    legend = axs[0].get_legend()
    if legend is not None:
        sns.move_legend(axs[0], "upper left", bbox_to_anchor=(1.0, 1.0),
                        title=hue.replace("_", " "), fontsize=8, title_fontsize=8)
    axs[1].tick_params(axis="x", rotation=40)
    for label in axs[1].get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    return fig


def _runs(items: list[str]) -> list[tuple[str, int]]:
    """Consecutive runs: ["a","a","b"] -> [("a", 2), ("b", 1)]."""
    out: list[tuple[str, int]] = []
    for item in items:
        if out and out[-1][0] == item:
            out[-1] = (item, out[-1][1] + 1)
        else:
            out.append((item, 1))
    return out


# ------------------------------------------------------------------------- panel (d): UpSet
def acquisition_indicators(subjects: pd.DataFrame,
                           thresholds: Mapping[str, tuple[str, str, Any]] = UPSET_THRESHOLDS) -> pd.DataFrame:
    """Boolean acquisition attributes per subject (same index as ``subjects``).

    One column per entry of ``thresholds`` (default :data:`UPSET_THRESHOLDS`). Unknown values
    (NaN timings or field strength, missing vendor/acquisition, missing column) are treated
    as False: the subject is counted as *not* having that attribute. Vendor matching is
    case-insensitive on the start of the name (``"GE MEDICAL SYSTEMS"`` is GE).
    """
    out = {}
    for label, (column, op, value) in thresholds.items():
        if op in {">=", "<=", ">", "<"}:
            x = numeric_column(subjects, column)
            result = {">=": x >= value, "<=": x <= value, ">": x > value, "<": x < value}[op]
        elif op in {"==", "startswith"}:
            raw = subjects[column] if column in subjects else pd.Series(None, index=subjects.index)
            s = raw.map(lambda v: v.strip().upper() if isinstance(v, str) else "")
            target = str(value).upper()
            result = s == target if op == "==" else s.str.startswith(target) & (s != "")
        else:
            raise ValueError(f"unknown comparison {op!r} for {label!r}")
        out[label] = result.fillna(False).astype(bool)
    return pd.DataFrame(out, index=subjects.index)


def plot_acquisition_upset(subjects: pd.DataFrame, fig: Optional[Figure] = None,
                           **upset_kwargs: Any) -> Figure:
    """Panel (d): UpSet plot of the binary acquisition attributes of :func:`acquisition_indicators`.

    Bars count subjects per combination of attributes. Unknown parameters count as False (see
    :func:`acquisition_indicators`); attributes that no subject has are dropped by
    ``upsetplot.from_indicators`` and named in a footnote. ``upset_kwargs`` go to
    ``upsetplot.UpSet``.
    """
    import upsetplot

    indicators = acquisition_indicators(subjects)
    absent = [c for c in indicators.columns if not indicators[c].any()]
    if fig is None:
        fig = plt.figure(figsize=(9, 5))
    if indicators.empty or len(absent) == indicators.shape[1]:
        placeholder(fig.add_subplot(111), "no subject has any of the acquisition attributes")
        return fig
    data = upsetplot.from_indicators(indicators)
    kwargs = dict(subset_size="count", show_counts=True, sort_by="cardinality",
                  sort_categories_by="-input", facecolor="0.25")
    kwargs.update(upset_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # upsetplot 0.9 on pandas 2.x
        upsetplot.UpSet(data, **kwargs).plot(fig=fig)
    note = "Unknown parameters count as absent."
    if absent:
        note += " No subject: " + ", ".join(absent) + "."
    fig.text(0.01, 0.005, note, fontsize=7, color="0.35", ha="left", va="bottom")
    return fig


# ------------------------------------------------------------------------- panel (e): donuts
def plot_sex_donuts(subjects: pd.DataFrame) -> Figure:
    """Panel (e): one donut per anatomy with female / male / unknown subject counts.

    Sex values other than F/M (None, NaN, empty) are "unknown". Categories with no subject
    are left out of a donut, so each donut has one wedge per category present.
    """
    anatomies = _anatomies(subjects)
    n = max(len(anatomies), 1)
    fig, axs = plt.subplots(1, n, figsize=(2.3 * n, 2.9), squeeze=False)
    sex = normalize_sex(subjects["sex"])
    sex.index = subjects.index
    for ax, anatomy in zip(axs[0], anatomies):
        counts = sex[subjects["anatomy"] == anatomy].value_counts()
        levels = [s for s in SEX_LEVELS if counts.get(s, 0) > 0]
        values = [int(counts[s]) for s in levels]
        total = sum(values)
        ax.pie(values, colors=[SEX_COLORS[s] for s in levels], startangle=90, counterclock=False,
               wedgeprops=dict(width=0.38, edgecolor="white", linewidth=1.2),
               autopct=lambda p, t=total: f"{round(p * t / 100)}", pctdistance=0.81,
               textprops=dict(fontsize=8, color="black"))
        ax.text(0, 0, f"{anatomy}\nn={total}", ha="center", va="center", fontsize=9,
                fontweight="bold", color=anatomy_color(anatomy))
        ax.set_aspect("equal")
    handles = [Patch(facecolor=SEX_COLORS[s], label={"F": "female", "M": "male"}.get(s, s))
               for s in SEX_LEVELS]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fig.subplots_adjust(bottom=0.15, top=0.98, wspace=0.05, left=0.02, right=0.98)
    return fig


def plot_tissue_layered_donut(labels: pd.DataFrame, ax: Optional[Axes] = None) -> Figure:
    """Panel (f): nested donut, anatomy (inner ring) and tissue class within it (outer ring).

    Sizes are numbers of labels, i.e. rows of ``labels`` (one per dataset and label, as from
    :func:`mskseg_lib.data.catalog.labels_table`): the same structure annotated in two datasets
    counts twice. Wedges carry ``gid`` ``"inner:<anatomy>"`` / ``"outer:<anatomy>:<tissue>"``.
    """
    fig, ax = figure_and_axes(ax, (6.2, 5.0), constrained=False)
    anatomies = _anatomies(labels)
    counts = labels.groupby(["anatomy", "tissue_class"]).size()
    inner = [int(counts.loc[a].sum()) for a in anatomies]
    outer_keys = [(a, t) for a in anatomies
                  for t in ordered(counts.loc[a].index.tolist(), TISSUE_ORDER)]
    outer = [int(counts.loc[k]) for k in outer_keys]
    total = max(sum(inner), 1)
    common = dict(startangle=90, counterclock=False)
    inner_wedges, inner_texts = ax.pie(
        inner, radius=0.66, colors=[anatomy_color(a) for a in anatomies],
        labels=[a if c / total >= 0.07 else "" for a, c in zip(anatomies, inner)],
        labeldistance=0.77, textprops=dict(fontsize=7.5, color="white", fontweight="bold",
                                           ha="center"),
        wedgeprops=dict(width=0.3, edgecolor="white", linewidth=1.0), **common)
    outer_wedges, _ = ax.pie(
        outer, radius=1.0, colors=[tissue_color(t) for _, t in outer_keys],
        wedgeprops=dict(width=0.32, edgecolor="white", linewidth=1.0), **common)
    for wedge, a in zip(inner_wedges, anatomies):
        wedge.set_gid(f"inner:{a}")
    for wedge, (a, t), c in zip(outer_wedges, outer_keys, outer):
        wedge.set_gid(f"outer:{a}:{t}")
        if c / total >= 0.04:  # count inside the wedge where it fits
            theta = np.deg2rad((wedge.theta1 + wedge.theta2) / 2)
            ax.text(0.84 * np.cos(theta), 0.84 * np.sin(theta), str(c), ha="center",
                    va="center", fontsize=7)
    ax.text(0, 0, f"{sum(inner)}\nlabels", ha="center", va="center", fontsize=9)
    ax.set_aspect("equal")
    anatomy_handles = [Patch(facecolor=anatomy_color(a), label=f"{a} ({c})")
                       for a, c in zip(anatomies, inner)]
    tissues = ordered([t for _, t in outer_keys], TISSUE_ORDER)
    tissue_handles = [Patch(facecolor=tissue_color(t),
                            label=f"{t} ({int(sum(c for (a, tt), c in zip(outer_keys, outer) if tt == t))})")
                      for t in tissues]
    leg = ax.legend(handles=anatomy_handles, title="Anatomy (inner)", loc="upper left",
                    bbox_to_anchor=(1.0, 1.0), fontsize=8, title_fontsize=8)
    ax.add_artist(leg)
    ax.legend(handles=tissue_handles, title="Tissue (outer)", loc="lower left",
              bbox_to_anchor=(1.0, 0.0), fontsize=8, title_fontsize=8)
    return fig


# ------------------------------------------------------------------------------ QC montage
def _samples_by_dataset(samples: Sequence[Mapping[str, Any]],
                        order: Optional[Sequence[str]]) -> dict[str, list[Mapping[str, Any]]]:
    """Samples grouped by dataset, datasets in ``order`` (others after) or first appearance."""
    by_ds: dict[str, list[Mapping[str, Any]]] = {}
    for s in samples:
        by_ds.setdefault(str(s["dataset"]), []).append(s)
    if order is not None:
        keys = ordered(list(by_ds), [str(d) for d in order])
        by_ds = {k: by_ds[k] for k in keys}
    return by_ds


def _montage_grid(n_datasets: int, n_per: int, wrap_cols: int,
                  cell_in: float) -> tuple[bool, int, int, tuple[float, float]]:
    """(wrapped, rows, columns, figure size): one row per dataset, or a wrapped grid of datasets
    when each has a single sample."""
    if n_per == 1 and n_datasets > 1:
        n_cols = min(max(int(wrap_cols), 1), n_datasets)
        n_rows = -(-n_datasets // n_cols)
        return True, n_rows, n_cols, (cell_in * 1.25 * n_cols, cell_in * 1.6 * n_rows)
    return False, n_datasets, n_per, (cell_in * n_per + 2.2, cell_in * n_datasets)


def _draw_qc_sample(ax: Axes, sample: Mapping[str, Any], lut: ListedColormap, alpha: float,
                    title: str) -> dict[int, str]:
    """One slice with its label overlay (value v -> colour v-1, background transparent); returns
    the labels present ({value: name})."""
    n_colors = lut.N
    image = np.asarray(sample["image"])
    mask = np.asarray(sample["mask"]).astype(int)
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    overlay = np.ma.masked_where(mask <= 0, (mask - 1) % n_colors)
    ax.imshow(overlay, cmap=lut, vmin=-0.5, vmax=n_colors - 0.5, alpha=alpha, interpolation="nearest")
    ax.set_title(title, fontsize=7, pad=2)
    names = {int(k): str(v) for k, v in dict(sample.get("label_names", {})).items()}
    return {int(v): names.get(int(v), str(int(v))) for v in np.unique(mask[mask > 0])}


def _qc_row_legend(axs: np.ndarray, r: int, n_items: int, present: dict[int, str], colors: list,
                   wrapped: bool, n_cols: int, row_label: str) -> None:
    """The labels of one dataset: under its slice (wrapped grid) or at the end of its row."""
    n_colors = len(colors)
    if wrapped:
        handles = [Patch(facecolor=colors[(v - 1) % n_colors], alpha=0.8, label=name)
                   for v, name in sorted(present.items())]
        if handles:
            axs[divmod(r, n_cols)].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02),
                                          fontsize=5.5, ncol=2, handlelength=1.0, borderaxespad=0,
                                          columnspacing=0.8)
        return
    axs[r, 0].set_ylabel(row_label, fontsize=8, rotation=0, ha="right", va="center", labelpad=4)
    label_legend(axs[r, n_items - 1], {v: colors[(v - 1) % n_colors] for v in sorted(present)}, present,
                 alpha=0.8, fontsize=5.5, ncols=1 if len(present) <= 6 else 2)


def plot_qc_montage(samples: Sequence[Mapping[str, Any]], cmap: str = "tab10",
                    alpha: float = 0.45, cell_in: float = 1.9,
                    order: Optional[Sequence[str]] = None, wrap_cols: int = 5) -> Figure:
    """Grid of slices with their masks, one row per dataset.

    Each sample: ``{"dataset", "subject_id", "slice_index", "image" (uint8 2D), "mask"
    (int 2D), "label_names" {value: name}}``. Rows follow ``order`` (e.g.
    :func:`mskseg_lib.data.catalog.dataset_order` of the subjects table; datasets not in it go
    last) or else the order of first appearance. Labels are overlaid with a qualitative colormap
    (``cmap``; label value v -> colour v-1, cycling) at ``alpha``; background 0 is transparent.
    Each row ends with a legend of the labels present in it.

    When every dataset has a single sample, one row per dataset would be a tall strip, so the
    datasets are wrapped into a grid of ``wrap_cols`` columns instead, the dataset named in
    each title and the legend under each slice.
    """
    samples = list(samples)
    if not samples:
        return placeholder_figure("no QC samples", figsize=(4, 1.5))
    by_ds = _samples_by_dataset(samples, order)
    short = _short_names(list(by_ds))
    wrapped, n_rows, n_cols, figsize = _montage_grid(len(by_ds), max(len(v) for v in by_ds.values()),
                                                     wrap_cols, cell_in)
    base = plt.get_cmap(cmap)
    colors = [base(i % getattr(base, "N", 20)) for i in range(getattr(base, "N", 20))]
    lut = ListedColormap(colors)
    fig, axs = plt.subplots(n_rows, n_cols, figsize=figsize, squeeze=False)
    for ax in axs.flat:
        image_axes(ax)
        for spine in ax.spines.values():
            spine.set_visible(False)
    used: set[tuple[int, int]] = set()
    for r, (dataset, items) in enumerate(by_ds.items()):
        present: dict[int, str] = {}
        for c, s in enumerate(items):
            pos = divmod(r, n_cols) if wrapped else (r, c)
            used.add(pos)
            title = f"{s['subject_id']} · z{s['slice_index']}"
            present.update(_draw_qc_sample(axs[pos], s, lut, alpha, f"{short[dataset]}\n{title}" if wrapped else title))
        _qc_row_legend(axs, r, len(items), present, colors, wrapped, n_cols, short[dataset])
    for pos in np.ndindex(axs.shape):
        if pos not in used:
            axs[pos].axis("off")
    if wrapped:
        fig.subplots_adjust(left=0.02, right=0.98, wspace=0.15, hspace=0.6, top=0.95, bottom=0.08)
    else:
        fig.subplots_adjust(left=0.14, right=0.72 if n_cols == 1 else 0.8, wspace=0.05,
                            hspace=0.3, top=0.97, bottom=0.02)
    return fig
