"""Figure 5a: fixed effects of the mixed models, one colour per finetuning type.

Each term is a row; each finetuning type's estimate is a point with its 95% CI, the three types
side by side within the row. The study's published ranges (flip angle, echo time, pixel spacing)
are grey bands on their rows, so a reader sees at a glance whether the regenerated effect lands
in them. Scales differ between terms (binary, min-max and z-scored predictors), which the y tick
labels state.
"""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from mskseg_lib.plots.zero_shot import _offsets

TYPE_COLORS = {"single": "#0072B2", "mixed": "#E69F00", "all_msk": "#009E73"}
TYPE_LABELS = {"single": "single dataset", "mixed": "mixed (anatomy / muscle)", "all_msk": "all-MSK"}
SCALE_NOTE = {"te_ms": "z", "tr_ms": "z", "slice_thickness_mm": "z", "pixel_spacing_mm": "z",
              "flip_angle_deg": "0-1", "rows_px": "0-1", "age_years": "0-1", "field_strength_t": "1.5 T=0, 3 T=1"}


def term_label(term: str) -> str:
    """Readable y label: the term and how its predictor was scaled."""
    parts = term.split(":")
    if len(parts) == 2:
        return f"{parts[0]} × {parts[1]}"
    note = SCALE_NOTE.get(term)
    return f"{term} ({note})" if note else term


def plot_forest(coefficients: pd.DataFrame, published: Optional[pd.DataFrame] = None,
                types: Sequence[str] = ("single", "mixed", "all_msk"), ax: Optional[Axes] = None) -> Figure:
    """Forest plot of ``coefficients`` (finetune_type, term, coef, ci_low, ci_high), intercept left out."""
    coef = coefficients[coefficients["term"] != "Intercept"]
    if ax is None:
        n_terms = max(coef["term"].nunique(), 1)
        fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * n_terms))
    else:
        fig = ax.figure
    if coef.empty:
        ax.text(0.5, 0.5, "no fitted mixed model", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    terms = list(dict.fromkeys(coef["term"]))[::-1]  # first term at the top
    present = [t for t in types if t in set(coef["finetune_type"])]
    offsets, _ = _offsets(len(present), width=0.6)
    y_of = {t: i for i, t in enumerate(terms)}
    if published is not None:
        for r in published.itertuples():
            if r.term in y_of:
                y = y_of[r.term]
                lo, hi = sorted((r.published_low, r.published_high))
                ax.fill_betweenx([y - 0.4, y + 0.4], lo - 0.005, hi + 0.005, color="0.8", zorder=0, lw=0)
    for k, kind in enumerate(present):
        c = coef[coef["finetune_type"] == kind]
        y = np.array([y_of[t] for t in c["term"]]) - offsets[k]  # first type on top within a row
        ax.errorbar(c["coef"], y, xerr=[c["coef"] - c["ci_low"], c["ci_high"] - c["coef"]], fmt="o", ms=4,
                    color=TYPE_COLORS.get(kind, "0.3"), ecolor=TYPE_COLORS.get(kind, "0.3"), capsize=2, lw=1.2)
    ax.axvline(0, color="0.3", lw=0.8, ls="--")
    ax.set_yticks(range(len(terms)), [term_label(t) for t in terms])
    ax.set_ylim(-0.6, len(terms) - 0.4)
    ax.set_xlabel("fixed effect on subject Dice (95% CI)")
    handles = [Line2D([], [], marker="o", ls="", color=TYPE_COLORS.get(k, "0.3"), label=TYPE_LABELS.get(k, k))
               for k in present]
    if published is not None and set(published["term"]) & set(terms):
        handles.append(Patch(color="0.8", label="published range (other cohort)"))
    ax.legend(handles=handles, loc="lower right", fontsize="small")
    ax.set_title("Fixed effects by finetuning type (reference: zero-shot)")
    return fig
