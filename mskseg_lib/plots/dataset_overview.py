"""The study's dataset figure (figure 2, panels a-f), its QC montage and tables S0-S2.

Every function here is pure: it takes the prepared tables (``subjects``, ``slices``: see
:mod:`mskseg_lib.data.tables`) or ``catalog.labels_table()`` and returns a matplotlib Figure or
a pandas DataFrame. Nothing is read or written; notebook 01 saves the results with
:mod:`mskseg_lib.reporting`.

Missing values are expected (real data lack ages, weights or timings): every plot drops them
per variable and says how many were missing, and every table counts them.
"""
from __future__ import annotations

import re
import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mskseg_lib.plots.style import (
    ANATOMY_ORDER,
    SEX_COLORS,
    SPLIT_ALPHA,
    TISSUE_ORDER,
    anatomy_color,
    ordered,
    tissue_color,
)

SPLITS = ("train", "val", "test")
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

_DROP_TOKENS = {"2D", "3D", "Research", "Clinical", "Anatomical", "Compositional"}
_ABBREVIATIONS = {"Undersampled": "US", "MyoSegmenTUM": "MyoSeg"}


# --------------------------------------------------------------------------------- helpers
def short_dataset_name(name: str) -> str:
    """Short label for a dataset name, for axes and titles.

    Drops the acquisition dimension, protocol type and task words and an ``-echoN`` suffix:
    ``"Knee_3D_DESS_Research_Anatomical_86"`` -> ``"Knee DESS 86"``,
    ``"Knee_2D_MAPSS-echo1_Research_Compositional_22"`` -> ``"Knee MAPSS 22"``,
    ``"Knee_3D_CUBE_Undersampled_Research_Anatomical_50"`` -> ``"Knee CUBE US 50"``.
    The trailing subject count is kept, so the twelve study names stay distinct.
    """
    tokens = [t for t in str(name).split("_") if t and t not in _DROP_TOKENS]
    tokens = [_ABBREVIATIONS.get(re.sub(r"-echo\d+$", "", t), re.sub(r"-echo\d+$", "", t))
              for t in tokens]
    return " ".join(tokens) if tokens else str(name)


def _short_names(datasets: Sequence[str]) -> dict[str, str]:
    """Dataset -> short name, falling back to the full name where short names collide."""
    short = {d: short_dataset_name(d) for d in datasets}
    counts = pd.Series(list(short.values())).value_counts()
    return {d: (s if counts[s] == 1 else d) for d, s in short.items()}


def _anatomies(df: pd.DataFrame) -> list[str]:
    return ordered(df["anatomy"].tolist(), ANATOMY_ORDER)


def dataset_order(subjects: pd.DataFrame) -> list[str]:
    """Datasets grouped by anatomy (``ANATOMY_ORDER``), in order of appearance within one."""
    first = subjects.drop_duplicates("dataset")[["dataset", "anatomy"]]
    rank = {a: i for i, a in enumerate(_anatomies(subjects))}
    first = first.assign(_r=first["anatomy"].map(rank), _i=range(len(first)))
    return first.sort_values(["_r", "_i"])["dataset"].tolist()


def labels_for_datasets(datasets: Iterable[str]) -> pd.DataFrame:
    """``catalog.labels_table`` of the given datasets (the real spine included); names that the
    catalog does not know (e.g. a manifest source) are skipped."""
    from mskseg_lib.data.catalog import get_dataset, labels_table

    specs = []
    for name in dict.fromkeys(datasets):
        try:
            specs.append(get_dataset(name))
        except KeyError:
            continue
    table = labels_table(specs)
    if table.empty:
        table = pd.DataFrame(columns=["dataset", "anatomy", "label_value", "label_name",
                                      "tissue_class"])
    return table


def normalize_sex(values: Iterable[Any]) -> pd.Series:
    """``"F"``/``"female"`` -> F, ``"M"``/``"male"`` -> M, anything else (None, NaN, "") -> unknown."""
    def one(v: Any) -> str:
        s = str(v).strip().upper() if isinstance(v, str) else ""
        if s in {"F", "FEMALE"}:
            return "F"
        if s in {"M", "MALE"}:
            return "M"
        return "unknown"

    return pd.Series([one(v) for v in values], index=getattr(values, "index", None), dtype=object)


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def _kde(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density with Scott's bandwidth."""
    n = len(values)
    bw = values.std(ddof=1) * n ** (-1.0 / 5.0)
    z = (grid[:, None] - values[None, :]) / bw
    return np.exp(-0.5 * z**2).sum(axis=1) / (n * bw * np.sqrt(2 * np.pi))


def _fig_of(ax: Optional[Axes], figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


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
        values = _numeric(subjects, column)
        known = values.dropna()
        if len(known):
            span = max(float(known.max() - known.min()), 1.0)
            grid = np.linspace(known.min() - 0.15 * span, known.max() + 0.15 * span, 256)
        for anatomy in anatomies:
            v = values[subjects["anatomy"] == anatomy].dropna().to_numpy()
            color = anatomy_color(anatomy)
            label = f"{anatomy} (n={len(v)})"
            if len(v) >= 2 and v.std() > 0:
                density = _kde(v, grid)
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
                         age_years=_numeric(subjects, "age_years"),
                         weight_kg=_numeric(subjects, "weight_kg"),
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
            x = _numeric(subjects, column)
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
        ax = fig.add_subplot(111)
        ax.axis("off")
        ax.text(0.5, 0.5, "no subject has any of the acquisition attributes", ha="center",
                va="center", transform=ax.transAxes)
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
    fig, ax = _fig_of(ax, (6.2, 5.0))
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
def plot_qc_montage(samples: Sequence[Mapping[str, Any]], cmap: str = "tab10",
                    alpha: float = 0.45, cell_in: float = 1.9,
                    order: Optional[Sequence[str]] = None, wrap_cols: int = 5) -> Figure:
    """Grid of slices with their masks, one row per dataset.

    Each sample: ``{"dataset", "subject_id", "slice_index", "image" (uint8 2D), "mask"
    (int 2D), "label_names" {value: name}}``. Rows follow ``order`` (e.g. :func:`dataset_order`
    of the subjects table; datasets not in it go last) or else the order of first appearance.
    Labels are overlaid with a qualitative colormap (``cmap``; label value v -> colour v-1,
    cycling) at ``alpha``; background 0 is transparent. Each row ends with a legend of the
    labels present in it.

    When every dataset has a single sample, one row per dataset would be a tall strip, so the
    datasets are wrapped into a grid of ``wrap_cols`` columns instead, the dataset named in
    each title and the legend under each slice.
    """
    samples = list(samples)
    if not samples:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no QC samples", ha="center", va="center")
        return fig
    by_ds: dict[str, list[Mapping[str, Any]]] = {}
    for s in samples:
        by_ds.setdefault(str(s["dataset"]), []).append(s)
    if order is not None:
        keys = ordered(list(by_ds), [str(d) for d in order])
        by_ds = {k: by_ds[k] for k in keys}
    short = _short_names(list(by_ds))
    n_per = max(len(v) for v in by_ds.values())
    wrapped = n_per == 1 and len(by_ds) > 1
    if wrapped:
        n_cols = min(max(int(wrap_cols), 1), len(by_ds))
        n_rows = -(-len(by_ds) // n_cols)
        figsize = (cell_in * 1.25 * n_cols, cell_in * 1.6 * n_rows)
    else:
        n_rows, n_cols = len(by_ds), n_per
        figsize = (cell_in * n_cols + 2.2, cell_in * n_rows)
    base = plt.get_cmap(cmap)
    n_colors = getattr(base, "N", 20)
    colors = [base(i % n_colors) for i in range(n_colors)]
    lut = ListedColormap(colors)

    fig, axs = plt.subplots(n_rows, n_cols, figsize=figsize, squeeze=False)
    for ax in axs.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.grid(False)
    used: set[tuple[int, int]] = set()
    for r, (dataset, items) in enumerate(by_ds.items()):
        present: dict[int, str] = {}
        for c, s in enumerate(items):
            pos = divmod(r, n_cols) if wrapped else (r, c)
            used.add(pos)
            ax = axs[pos]
            image = np.asarray(s["image"])
            mask = np.asarray(s["mask"]).astype(int)
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            overlay = np.ma.masked_where(mask <= 0, (mask - 1) % n_colors)
            ax.imshow(overlay, cmap=lut, vmin=-0.5, vmax=n_colors - 0.5, alpha=alpha,
                      interpolation="nearest")
            title = f"{s['subject_id']} · z{s['slice_index']}"
            if wrapped:
                title = f"{short[dataset]}\n{title}"
            ax.set_title(title, fontsize=7, pad=2)
            names = {int(k): str(v) for k, v in dict(s.get("label_names", {})).items()}
            for v in np.unique(mask[mask > 0]):
                present[int(v)] = names.get(int(v), str(int(v)))
        handles = [Patch(facecolor=colors[(v - 1) % n_colors], alpha=0.8, label=name)
                   for v, name in sorted(present.items())]
        if wrapped:
            if handles:
                axs[divmod(r, n_cols)].legend(handles=handles, loc="upper center",
                                              bbox_to_anchor=(0.5, -0.02), fontsize=5.5,
                                              ncol=2, handlelength=1.0, borderaxespad=0,
                                              columnspacing=0.8)
            continue
        axs[r, 0].set_ylabel(short[dataset], fontsize=8, rotation=0, ha="right", va="center",
                             labelpad=4)
        if handles:
            axs[r, len(items) - 1].legend(handles=handles, loc="center left",
                                          bbox_to_anchor=(1.02, 0.5), fontsize=5.5,
                                          ncol=1 if len(handles) <= 6 else 2,
                                          handlelength=1.0, borderaxespad=0, columnspacing=0.8)
    for pos in np.ndindex(axs.shape):
        if pos not in used:
            axs[pos].axis("off")
    if wrapped:
        fig.subplots_adjust(left=0.02, right=0.98, wspace=0.15, hspace=0.6, top=0.95, bottom=0.08)
    else:
        fig.subplots_adjust(left=0.14, right=0.72 if n_cols == 1 else 0.8, wspace=0.05,
                            hspace=0.3, top=0.97, bottom=0.02)
    return fig


# ---------------------------------------------------------------------------------- tables
def _mean_sd(values: pd.Series, digits: int = 1) -> str:
    v = values.dropna()
    if len(v) == 0:
        return "n/a"
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _fmt(x: float) -> str:
    """Up to 3 significant digits, no trailing zeros: 1500 -> "1500", 0.546875 -> "0.547"."""
    return np.format_float_positional(float(x), precision=3, unique=True, fractional=False,
                                      trim="-")


def _median_range(values: pd.Series) -> str:
    v = values.dropna()
    if len(v) == 0:
        return "n/a"
    lo, hi, med = v.min(), v.max(), v.median()
    if lo == hi:
        return _fmt(med)
    return f"{_fmt(med)} [{_fmt(lo)}–{_fmt(hi)}]"


def _distinct(values: Iterable[Any], fmt=str, max_items: int = 4, by_value: bool = False) -> str:
    """Distinct values, most frequent first (or in ascending order with ``by_value``)."""
    vals = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))
            and v != ""]
    if not vals:
        return "n/a"
    if by_value:
        items = list(dict.fromkeys(fmt(v) for v in sorted(vals)))
    else:
        counts = pd.Series([fmt(v) for v in vals]).value_counts(sort=False)
        items = sorted(counts.index, key=lambda k: (-counts[k], k))
    shown = items[:max_items]
    return ", ".join(shown) + (", …" if len(items) > max_items else "")


def table_s0_datasets(subjects: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Table S0: one row per dataset of ``subjects`` (anatomy order).

    Columns: dataset, anatomy, plane, acquisition, labels (names in label-value order,
    comma-separated), n_labels, task. A dataset absent from ``labels`` gets "" and 0.
    """
    rows = []
    first = subjects.drop_duplicates("dataset").set_index("dataset")
    for dataset in dataset_order(subjects):
        lab = labels[labels["dataset"] == dataset].sort_values("label_value")
        rows.append({
            "dataset": dataset,
            "anatomy": first.at[dataset, "anatomy"],
            "plane": first.at[dataset, "plane"],
            "acquisition": first.at[dataset, "acquisition"],
            "labels": ", ".join(lab["label_name"].astype(str)),
            "n_labels": int(len(lab)),
            "task": first.at[dataset, "task"],
        })
    return pd.DataFrame(rows, columns=["dataset", "anatomy", "plane", "acquisition", "labels",
                                       "n_labels", "task"])


_S1_VARS = (("age_years", "age_years"), ("weight_kg", "weight_kg"), ("bmi", "bmi"))


def _s1_row(name: str, anatomy: str, g: pd.DataFrame, numeric: bool) -> dict[str, Any]:
    split = g["split"].value_counts() if "split" in g else pd.Series(dtype=int)
    sex = normalize_sex(g["sex"]).value_counts()
    row: dict[str, Any] = {"dataset": name, "anatomy": anatomy, "n_subjects": int(len(g))}
    for s in SPLITS:
        row[f"n_{s}"] = int(split.get(s, 0))
    for out, column in _S1_VARS:
        v = _numeric(g, column)
        if numeric:
            row[f"{out}_mean"] = float(v.mean()) if v.notna().any() else np.nan
            row[f"{out}_sd"] = float(v.std(ddof=1)) if v.notna().sum() > 1 else np.nan
        else:
            row[out] = _mean_sd(v)
    row["n_female"] = int(sex.get("F", 0))
    row["n_male"] = int(sex.get("M", 0))
    row["n_sex_unknown"] = int(sex.get("unknown", 0))
    row["n_age_missing"] = int(_numeric(g, "age_years").isna().sum())
    row["n_weight_missing"] = int(_numeric(g, "weight_kg").isna().sum())
    return row


def table_s1_demographics(subjects: pd.DataFrame, numeric: bool = False,
                          total: bool = True) -> pd.DataFrame:
    """Table S1: demographics per dataset (anatomy order), plus an "All datasets" row.

    Columns: dataset, anatomy, n_subjects, n_train, n_val, n_test, age_years, weight_kg, bmi
    ("mean ± SD" over known values; one value alone is shown without SD; none -> "n/a"),
    n_female, n_male, n_sex_unknown, n_age_missing, n_weight_missing. With ``numeric=True``
    each "mean ± SD" column becomes two float columns ``<var>_mean`` and ``<var>_sd``.
    """
    rows = [_s1_row(d, subjects.loc[subjects["dataset"] == d, "anatomy"].iloc[0],
                    subjects[subjects["dataset"] == d], numeric)
            for d in dataset_order(subjects)]
    if total and len(subjects):
        rows.append(_s1_row("All datasets", "all", subjects, numeric))
    return pd.DataFrame(rows)


def table_s2_acquisition(subjects: pd.DataFrame) -> pd.DataFrame:
    """Table S2: acquisition per dataset (anatomy order), summarised over its subjects.

    Columns: dataset, vendor (distinct values, most frequent first), field_strength_t,
    te_ms, tr_ms, flip_angle_deg, slice_thickness_mm, pixel_spacing_mm ("median [min–max]"
    over known values, a single number when constant, "n/a" when all unknown), matrix
    ("rows x cols", distinct), acquisition (2D/3D), protocol_type.
    """
    rows = []
    for dataset in dataset_order(subjects):
        g = subjects[subjects["dataset"] == dataset]
        fs = _numeric(g, "field_strength_t").dropna()
        matrix = [f"{int(r)} x {int(c)}" for r, c in zip(_numeric(g, "rows_px"), _numeric(g, "cols_px"))
                  if np.isfinite(r) and np.isfinite(c)]
        rows.append({
            "dataset": dataset,
            "vendor": _distinct(g["vendor"].tolist() if "vendor" in g else []),
            "field_strength_t": _distinct(fs.tolist(), fmt=_fmt, by_value=True),
            "te_ms": _median_range(_numeric(g, "te_ms")),
            "tr_ms": _median_range(_numeric(g, "tr_ms")),
            "flip_angle_deg": _median_range(_numeric(g, "flip_angle_deg")),
            "slice_thickness_mm": _median_range(_numeric(g, "slice_thickness_mm")),
            "pixel_spacing_mm": _median_range(_numeric(g, "pixel_spacing_mm")),
            "matrix": _distinct(matrix, max_items=3),
            "acquisition": _distinct(g["acquisition"].tolist()),
            "protocol_type": _distinct(g["protocol_type"].tolist()),
        })
    return pd.DataFrame(rows)
