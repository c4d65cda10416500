"""Figure 5a: fixed effects of the mixed models, one colour per finetuning type.

Each term is a row; each finetuning type's estimate is a point with its 95% CI, the three types
side by side within the row. The study's published values are drawn in grey on their rows: a
band where the text gives only a range over the types (flip angle, echo time), an open diamond
with its 95% CI where it gives a coefficient (echo time for mixed-dataset and mskSAM
finetuning, beside that type's point; pixel spacing, type not stated, at the row's centre), so a
reader sees at a glance whether the regenerated effect lands near them. Scales differ between
terms (z-scored, min-max scaled and 0/1 predictors), which the y tick labels state.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from mskseg_lib.plots.panels import dodge_offsets, figure_and_axes, placeholder

TYPE_COLORS = {"single": "#0072B2", "mixed": "#E69F00", "all_msk": "#009E73"}
TYPE_LABELS = {"single": "Type 1: single dataset", "mixed": "Type 2: mixed (anatomy / tissue / sequence)",
               "all_msk": "Type 3: mskSAM (all MSK)"}
SCALE_NOTE = {"te_ms": "z", "tr_ms": "z", "slice_thickness_mm": "z", "pixel_spacing_mm": "z",
              "flip_angle_deg": "0-1", "rows_px": "0-1", "age_years": "0-1", "field_strength_t": "1.5 T=0, 3 T=1",
              "acquisition_3d": "2D=0, 3D=1", "finetuned": "0/1", "encoder_finetuned": "0/1",
              "box_shift_applied": "0/1"}
NOT_DRAWN = ("Intercept", "Group Var")
PUBLISHED_COLOR = "0.45"


def term_label(term: str) -> str:
    """Readable y label: the term and how its predictor was scaled."""
    parts = term.split(":")
    if len(parts) == 2:
        return f"{parts[0]} × {parts[1]}"
    note = SCALE_NOTE.get(term, "0/1" if term.startswith("initial_weights_") else None)
    return f"{term} ({note})" if note else term


def plot_forest(coefficients: pd.DataFrame, published: Optional[pd.DataFrame] = None,
                types: Sequence[str] = ("single", "mixed", "all_msk"), ax: Optional[Axes] = None,
                xlabel: str = "fixed effect on the dataset's mean Dice (95% CI)",
                reference: str = "SAM ViT-B zero-shot") -> Figure:
    """Forest plot of ``coefficients`` (finetune_type, term, coef, ci_low, ci_high).

    ``published``: the study's values as :func:`mskseg_lib.stats.study_effects.published_mixed_effects`
    returns them (term, finetune_type, coef, ci_low, ci_high, range_low, range_high); rows for
    terms not in the plot are ignored. The intercept and the random-intercept variance are not
    drawn. ``reference`` names the reference level in the title.
    """
    coef = coefficients[~coefficients["term"].isin(NOT_DRAWN)]
    fig, ax = figure_and_axes(ax, (7, 1.4 + 0.45 * max(coef["term"].nunique(), 1)), constrained=False)
    if coef.empty:
        placeholder(ax, "no fitted mixed model")
        return fig
    terms = list(dict.fromkeys(coef["term"]))[::-1]  # first term at the top
    present = [t for t in types if t in set(coef["finetune_type"])]
    offsets, _ = dodge_offsets(len(present), width=0.6)  # y offsets within a row
    slot_of = {kind: -offsets[k] for k, kind in enumerate(present)}  # first type on top within a row
    y_of = {t: i for i, t in enumerate(terms)}
    drew_published = False
    if published is not None:
        for r in published[published["term"].isin(y_of)].itertuples():
            y = y_of[r.term]
            if pd.notna(r.range_low):
                ax.fill_betweenx([y - 0.4, y + 0.4], r.range_low, r.range_high, color="0.85", zorder=0, lw=0)
                drew_published = True
            if pd.notna(r.coef):
                if r.finetune_type in slot_of:
                    y_pub = y + slot_of[r.finetune_type]
                elif r.finetune_type == "not stated":
                    y_pub = float(y)
                else:
                    continue  # a type not fitted here
                ax.errorbar([r.coef], [y_pub], xerr=[[r.coef - r.ci_low], [r.ci_high - r.coef]], fmt="D", ms=5,
                            mfc="none", color=PUBLISHED_COLOR, ecolor=PUBLISHED_COLOR, capsize=2, lw=1, zorder=2)
                drew_published = True
    for kind in present:
        c = coef[coef["finetune_type"] == kind]
        y = np.array([y_of[t] for t in c["term"]]) + slot_of[kind]
        color = TYPE_COLORS.get(kind, "0.3")
        ax.errorbar(c["coef"], y, xerr=[c["coef"] - c["ci_low"], c["ci_high"] - c["coef"]], fmt="o", ms=4,
                    color=color, ecolor=color, capsize=2, lw=1.2, zorder=3)
    ax.axvline(0, color="0.3", lw=0.8, ls="--")
    ax.set_yticks(range(len(terms)), [term_label(t) for t in terms])
    ax.set_ylim(-0.6, len(terms) - 0.4)
    ax.set_xlabel(xlabel)
    handles = [Line2D([], [], marker="o", ls="", color=TYPE_COLORS.get(k, "0.3"), label=TYPE_LABELS.get(k, k))
               for k in present]
    if drew_published:
        handles += [Patch(color="0.85", label="published range over types"),
                    Line2D([], [], marker="D", mfc="none", ls="", color=PUBLISHED_COLOR,
                           label="published estimate (95% CI)")]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small", frameon=False)
    ax.set_title(f"Fixed effects by finetuning type (reference: {reference})")
    return fig
