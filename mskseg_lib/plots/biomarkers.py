"""Figure 5b: agreement of biomarkers from manual and predicted masks, and their true error.

Per biomarker, a Bland-Altman panel (mean of the two measurements against predicted - manual,
with the bias and limits of agreement of ``mskseg_lib.stats.agreement``: mean +- 1.96 SD when
the analysis was parametric, median and 2.5/97.5 percentiles when not, each with its 95% CI as
a shaded band) and a regression panel as the study draws it: manual (y) against automated, i.e.
predicted-mask, values (x), identity line dashed, the fitted line or the Gaussian-process mean with
its 95% band over the automated range, annotated with the ICC (ICC(3,1) with ICC(A,1) beside it,
or the mixed-model ICC's bootstrap median), R2 and p or Spearman's rho).

``plot_truth_error`` goes beyond the study: the synthetic cohort knows every biomarker's true
value, so the error of manual *and* predicted masks against the truth can be shown, which a
manual-vs-predicted comparison cannot separate.

The panels draw an ``AgreementResult`` computed by :mod:`mskseg_lib.stats.agreement` (nothing
is computed here): ``agreement_table(...).results`` or, for a table of pairs,
``agreement_or_reason``, whose reason (a string, or None for no pairs) is drawn as a placeholder
panel saying why there is nothing to show. Artists carry gids (``ba_points``, ``identity``,
``reg_fit``, ...) so tests and notebooks can find them.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from mskseg_lib.plots.panels import figure_and_axes, format_p, panel_grid, placeholder, placeholder_figure, require_columns
from mskseg_lib.stats.agreement import AgreementResult

POINT_COLOR = "#0072B2"
MANUAL_COLOR = "#0072B2"  # blue
PREDICTED_COLOR = "#D55E00"  # vermillion
LINE_COLOR = "0.2"
BAND_ALPHA = 0.15

__all__ = ["plot_bland_altman", "plot_regression", "plot_figure5b", "plot_truth_error"]


# --------------------------------------------------------------------------------- helpers
def _as_result(obj: AgreementResult | str | None) -> AgreementResult | str:
    """The result to draw, or the text of a placeholder panel (a reason string; None: no pairs)."""
    if obj is None:
        return "no paired values"
    if isinstance(obj, (AgreementResult, str)):
        return obj
    raise TypeError(f"expected an AgreementResult (stats.agreement.agreement_or_reason / agreement_table), a reason "
                    f"string or None, got {type(obj).__name__}")


def _with_unit(label: str, unit: Optional[str]) -> str:
    return f"{label} ({unit})" if unit else label


def _fmt(value: float) -> str:
    """Three significant digits, units free (cm³ and mm alike)."""
    return f"{value:.3g}" if np.isfinite(value) else "n/a"


# --------------------------------------------------------------------------------- panels
def plot_bland_altman(result: AgreementResult | str | None, ax: Optional[Axes] = None, title: Optional[str] = None,
                      unit: Optional[str] = None) -> Figure:
    """Bland-Altman panel: mean of manual and predicted vs predicted - manual.

    Lines: bias (mean, or median when non-parametric), limits of agreement (+-1.96 SD, or the
    2.5th/97.5th percentiles), each with its 95% CI shaded and its value written at the right.
    """
    fig, ax = figure_and_axes(ax, (5.0, 3.8))
    res = _as_result(result)
    if isinstance(res, str):
        placeholder(ax, res, title)
        return fig
    ba, data = res.bland_altman, res.data
    ax.axhline(0.0, color="0.6", lw=0.7, gid="ba_zero")
    ax.scatter(data["mean"], data["difference"], s=18, color=POINT_COLOR, alpha=0.75, lw=0, gid="ba_points")
    parametric = ba.method == "parametric"
    lines = [("bias", ba.bias, (ba.bias_ci_low, ba.bias_ci_high), "-", "mean" if parametric else "median"),
             ("loa_upper", ba.loa_upper, (ba.loa_upper_ci_low, ba.loa_upper_ci_high), "--",
              "+1.96 SD" if parametric else "97.5th pct"),
             ("loa_lower", ba.loa_lower, (ba.loa_lower_ci_low, ba.loa_lower_ci_high), "--",
              "−1.96 SD" if parametric else "2.5th pct")]
    right = blended_transform_factory(ax.transAxes, ax.transData)
    for name, y, (lo, hi), ls, label in lines:
        ax.axhline(y, color=LINE_COLOR, lw=1.2, ls=ls, gid=f"ba_{name}")
        if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
            ax.axhspan(lo, hi, color=LINE_COLOR, alpha=BAND_ALPHA, lw=0, gid=f"ba_{name}_ci")
        ax.text(0.99, y, f"{label}: {_fmt(y)}", transform=right, ha="right",
                va="top" if name == "loa_lower" else "bottom", fontsize=8,
                gid=f"ba_label_{name}")
    ax.set_xlabel(_with_unit("mean of manual and predicted", unit))
    ax.set_ylabel(_with_unit("predicted − manual", unit))
    ax.set_title(title or f"Bland-Altman ({ba.method})")
    return fig


def _regression_text(res: AgreementResult) -> str:
    icc, reg, rho = res.icc, res.regression, res.spearman
    name = "ICC(3,1)" if icc.method == "ICC(3,1)" else "ICC (LMM, bootstrap median)"
    lines = [f"{name} = {icc.icc:.2f} [{icc.ci_low:.2f}, {icc.ci_high:.2f}]"]
    if icc.method == "ICC(3,1)" and res.icc_a1 is not None:
        lines.append(f"ICC(A,1) = {res.icc_a1.icc:.2f}")
    if reg.method == "linear":
        lines += [f"y = {_fmt(reg.slope)}x {'+' if reg.intercept >= 0 else '−'} {_fmt(abs(reg.intercept))}",
                  f"R² = {reg.r2:.2f}, {format_p(reg.p_value)}"]
    else:
        lines += [f"GP R² = {reg.r2:.2f}", f"ρ = {rho.rho:.2f}, {format_p(rho.p_value)}"]
    lines.append(f"n = {res.n_pairs}")
    return "\n".join(lines)


def plot_regression(result: AgreementResult | str | None, ax: Optional[Axes] = None, title: Optional[str] = None,
                    unit: Optional[str] = None) -> Figure:
    """Manual (y) vs automated (x) with the identity line (dashed), the fitted line or the GP
    mean and 95% band, and the ICC, R2 and p (or GP R2 and Spearman's rho) in the corner."""
    fig, ax = figure_and_axes(ax, (4.2, 4.0))
    res = _as_result(result)
    if isinstance(res, str):
        placeholder(ax, res, title)
        return fig
    data, reg = res.data, res.regression
    ax.scatter(data["predicted"], data["manual"], s=18, color=POINT_COLOR, alpha=0.75, lw=0, gid="reg_points")
    values = np.r_[data["manual"].to_numpy(), data["predicted"].to_numpy()]
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], ls="--", color="0.5", lw=1.0, gid="identity", label="identity")
    if reg.band_low is not None and reg.band_high is not None:
        ax.fill_between(reg.grid_x, reg.band_low, reg.band_high, color=PREDICTED_COLOR, alpha=BAND_ALPHA, lw=0,
                        gid="reg_band", label="GP 95% band")
    ax.plot(reg.grid_x, reg.fit_y, color=PREDICTED_COLOR, lw=1.5, gid="reg_fit",
            label="linear fit" if reg.method == "linear" else "GP mean")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.text(0.03, 0.97, _regression_text(res), transform=ax.transAxes, ha="left", va="top", fontsize=8,
            gid="reg_annotation", bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    ax.legend(loc="lower right", fontsize="small")
    ax.set_xlabel(_with_unit("automated (predicted masks)", unit))
    ax.set_ylabel(_with_unit("manual masks", unit))
    ax.set_title(title or ("linear regression" if reg.method == "linear" else "Gaussian-process regression"))
    return fig


# --------------------------------------------------------------------------------- figures
def _label(key: Any) -> str:
    return " · ".join(map(str, key)) if isinstance(key, tuple) else str(key)


def _unit(units: Optional[Mapping[Any, str]], key: Any) -> Optional[str]:
    """Unit of ``key``; a tuple key (biomarker, structure) falls back to its biomarker's unit."""
    if not units:
        return None
    if key in units:
        return units[key]
    return units.get(key[0]) if isinstance(key, tuple) and key else None


def plot_figure5b(results: Mapping[Any, AgreementResult], units: Optional[Mapping[Any, str]] = None) -> Figure:
    """Figure 5b: one row per biomarker, Bland-Altman left and regression right.

    Keys name the rows (a tuple key such as (biomarker, structure) is joined with " · "); the
    row's name and the decision head its Bland-Altman panel.
    """
    if not results:
        return placeholder_figure("no biomarker agreement results")
    n = len(results)
    fig, axes = plt.subplots(n, 2, figsize=(10, 3.9 * n), squeeze=False, constrained_layout=True,
                             gridspec_kw={"width_ratios": [1.35, 1]})
    for row, (key, res) in enumerate(results.items()):
        label, unit = _label(key), _unit(units, key)
        decision = f" ({res.test_choice.decision})" if isinstance(res, AgreementResult) else ""
        plot_bland_altman(res, ax=axes[row, 0], title=f"{label}{decision}: Bland-Altman", unit=unit)
        plot_regression(res, ax=axes[row, 1], title="manual vs automated", unit=unit)
        axes[row, 0].title.set_fontsize("medium")
    return fig


def plot_truth_error(df: pd.DataFrame, true_col: str = "true", manual_col: str = "manual",
                     predicted_col: str = "predicted", panel_col: str = "biomarker",
                     units: Optional[Mapping[Any, str]] = None, ncols: int = 3,
                     panels: Optional[Sequence[Any]] = None) -> Figure:
    """Beyond the study: error against the cohort's true value, for manual and predicted masks.

    One subplot per ``panel_col`` value: x = true value, y = measured - true, blue for manual
    masks, vermillion for predicted ones, the mean error of each in the legend. Rows with a
    missing value are left out of that arm only.
    """
    if not df.empty:
        require_columns(df, (true_col, manual_col, predicted_col, panel_col), "df")
    names = list(panels) if panels is not None else ([] if df.empty else list(dict.fromkeys(df[panel_col])))
    if not names:
        return placeholder_figure("no biomarkers with true values")
    fig, axes = panel_grid(len(names), ncols, (4.2, 3.6))
    for ax, name in zip(axes.ravel(), names):
        sub = df[df[panel_col] == name]
        unit = _unit(units, name)
        truth = pd.to_numeric(sub[true_col], errors="coerce")
        drawn = False
        for arm, col, color in (("manual", manual_col, MANUAL_COLOR), ("predicted", predicted_col, PREDICTED_COLOR)):
            error = pd.to_numeric(sub[col], errors="coerce") - truth
            ok = np.isfinite(error) & np.isfinite(truth)
            if not ok.any():
                continue
            drawn = True
            ax.scatter(truth[ok], error[ok], s=16, color=color, alpha=0.75, lw=0, gid=f"truth_{arm}",
                       label=f"{arm} masks (mean {_fmt(float(error[ok].mean()))})")
        if not drawn:
            placeholder(ax, "no values with a known truth", str(name))
            continue
        ax.axhline(0.0, color="0.4", lw=0.8, ls="--", gid="truth_zero")
        ax.legend(loc="best", fontsize="small")
        ax.set_xlabel(_with_unit("true value", unit))
        ax.set_ylabel(_with_unit("measured − true", unit))
        ax.set_title(str(name))
    return fig
