"""The zero-shot tests of notebook 02: the study's S4/S5 tests and the project's extra analyses.

* S4: the study's Friedman test: SAM ViT-B, SAM2 hiera-b+ and MedSAM ViT-B with exact boxes,
  subjects as blocks, BH across datasets.
* S5: the study's post-hoc Wilcoxon signed-rank tests, run where the BH-adjusted Friedman p
  is below 0.05, BH within dataset; the other readings of the text as labelled variant columns.
* Extra analyses (never mixed into S4/S5): Friedman and Wilcoxon across each model's prompt
  conditions (exact vs shifted boxes), and across every model that ran with exact boxes when
  that set differs from the study's (e.g. LiteMedSAM added).

Where a study model did not run (no checkpoint under ``fixture`` and ``default``), S4 and S5
keep one row per dataset saying which models are missing and why.
:func:`mskseg_lib.evaluation.report.table_s4` / ``table_s5`` put the printed p-values beside.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from mskseg_lib.evaluation.report import ALPHA, EXACT_CONDITION, VALUE_COL, _model_order
from mskseg_lib.reference import STUDY_MODELS
from mskseg_lib.stats.comparisons import friedman_by_group, gated_wilcoxon


def _why_missing(models: Optional[pd.DataFrame], name: str) -> str:
    """Status of a study model from the run's models table ("not run: checkpoint missing")."""
    if models is None or models.empty or "model" not in models:
        return "no scores"
    hit = models[models["model"].astype(str) == name]
    if hit.empty:
        return "not requested by the profile (zero_shot.models)"
    status = str(hit["status"].iloc[0])
    return "available but no scores" if status == "available" else status


def _study_scores(subjects: pd.DataFrame, condition: str) -> pd.DataFrame:
    sel = subjects["model"].isin(STUDY_MODELS.values()) & (subjects["condition"].astype(str) == condition)
    return subjects[sel]


def study_friedman(subjects: pd.DataFrame, models: Optional[pd.DataFrame] = None,
                   condition: str = EXACT_CONDITION, value_col: str = VALUE_COL) -> pd.DataFrame:
    """The study's Friedman test per dataset: SAM ViT-B, SAM2 hiera-b+, MedSAM ViT-B under
    ``condition`` (exact boxes), subjects as blocks, BH across datasets (table S4).

    Every dataset of ``subjects`` keeps a row. Where a study model has no scores the row says
    which and why (from ``models``, the run's models table: e.g. "not run: checkpoint missing")
    and which models did run, so the table is never empty.

    Parameters
    ----------
    subjects : DataFrame
        The zero-shot subject table: one row per (model, condition, dataset, subject) with Dice.
    models : DataFrame, optional
        The run's models table (status and reason of each model).
    condition : str
        The prompt condition tested.
    value_col : str
        The subject score.

    Returns
    -------
    DataFrame
        One row per dataset: ``FRIEDMAN_COLUMNS`` of :func:`~mskseg_lib.stats.comparisons.friedman_by_group`.
    """
    datasets = list(dict.fromkeys(subjects["dataset"]))
    arms = list(STUDY_MODELS.values())
    out = friedman_by_group(_study_scores(subjects, condition), arm_col="model", value_col=value_col,
                            arms=arms, groups=datasets)
    ran = [m for m in _model_order(subjects["model"]) if m not in arms]
    for i, row in out.iterrows():
        if not str(row["note"]).startswith("not run: no scores for"):
            continue
        have = set(subjects.loc[subjects["dataset"] == row["dataset"], "model"].astype(str))
        missing = [m for m in arms if m not in have or m in str(row["note"])]
        reasons = "; ".join(f"{m}: {_why_missing(models, m)}" for m in missing)
        extra = [m for m in ran if m in have]
        out.at[i, "note"] = (f"not run: the study's test needs {', '.join(arms)} with {condition}; "
                             f"missing {reasons}" + (f" (ran: {', '.join(extra)}, an extra model: "
                                                     "see the extra analyses)" if extra else ""))
    return out


def study_wilcoxon(subjects: pd.DataFrame, friedman: pd.DataFrame, condition: str = EXACT_CONDITION,
                   value_col: str = VALUE_COL, alpha: float = ALPHA) -> pd.DataFrame:
    """The study's post-hoc tests with the default reading and the variants as columns (table S5).

    Default: pairs of the study models tested where the BH-adjusted Friedman p < ``alpha``,
    BH within dataset (``p_bh``). Variants: ``variant_raw_gate_p_value`` /
    ``variant_raw_gate_p_bh`` (gate on the raw Friedman p, BH within dataset) and
    ``variant_bh_all_pairs_p_bh`` (adjusted gate, BH over every pair tested in the table).

    Parameters
    ----------
    subjects : DataFrame
        The zero-shot subject table.
    friedman : DataFrame
        :func:`study_friedman`'s table (the gate).
    condition : str
        The prompt condition tested.
    value_col : str
        The subject score.
    alpha : float
        The gate's level.

    Returns
    -------
    DataFrame
        One row per (dataset, model pair): the Wilcoxon columns, the gate and the variant columns.
    """
    data = _study_scores(subjects, condition)
    kw = dict(arm_col="model", value_col=value_col, arms=list(STUDY_MODELS.values()), alpha=alpha)
    default = gated_wilcoxon(data, friedman, **kw)
    raw = gated_wilcoxon(data, friedman, gate="p_value", **kw)
    pooled = gated_wilcoxon(data, friedman, correction="all", **kw)
    default["variant_raw_gate_p_value"] = raw["p_value"].to_numpy()
    default["variant_raw_gate_p_bh"] = raw["p_bh"].to_numpy()
    default["variant_bh_all_pairs_p_bh"] = pooled["p_bh"].to_numpy()
    for i, row in default.iterrows():  # carry the Friedman's reason for a test that could not run
        if not np.isfinite(row["friedman_p"]):
            note = str(friedman.loc[friedman["dataset"] == row["dataset"], "note"].squeeze())
            inner = note[len("not run: "):] if note.startswith("not run: ") else note
            default.at[i, "note"] = f"not run: no Friedman test ({inner})" if note else row["note"]
    return default


def extra_tests(subjects: pd.DataFrame, conditions: Sequence[str], condition: str = EXACT_CONDITION,
                value_col: str = VALUE_COL, alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The project's extra zero-shot tests, each labelled in an ``analysis`` column.

    * ``prompt conditions · <model>``: per model that ran, Friedman across its prompt
      ``conditions`` (exact and shifted boxes; subjects as blocks, BH across datasets) and the
      gated Wilcoxon pairs (same readings as S5);
    * ``all models · <condition>``: Friedman across every model that ran under exact boxes,
      when that set is not the study's three (e.g. with LiteMedSAM); with fewer than three such
      models one row says so.

    Parameters
    ----------
    subjects : DataFrame
        The zero-shot subject table.
    conditions : sequence of str
        The run's prompt conditions.
    condition : str
        The exact-box condition.
    value_col : str
        The subject score.
    alpha : float
        The post-hoc gate's level.

    Returns
    -------
    friedman, wilcoxon : DataFrame
        Both with ``analysis`` first.
    """
    fr_parts, wx_parts = [], []
    datasets = list(dict.fromkeys(subjects["dataset"]))
    for model in _model_order(subjects["model"]):
        data = subjects[subjects["model"].astype(str) == model]
        arms = [c for c in conditions if c in set(data["condition"].astype(str))]
        label = f"prompt conditions · {model}"
        fr = friedman_by_group(data, arm_col="condition", value_col=value_col, arms=arms, groups=datasets)
        wx = gated_wilcoxon(data, fr, arm_col="condition", value_col=value_col, arms=arms, alpha=alpha)
        fr_parts.append(fr.assign(analysis=label))
        wx_parts.append(wx.assign(analysis=label))
    exact = subjects[subjects["condition"].astype(str) == condition]
    models = _model_order(exact["model"])
    label = f"all models · {condition}"
    if set(models) != set(STUDY_MODELS.values()):
        if len(models) >= 3:
            fr = friedman_by_group(exact, arm_col="model", value_col=value_col, arms=models, groups=datasets)
            wx = gated_wilcoxon(exact, fr, arm_col="model", value_col=value_col, arms=models, alpha=alpha)
            fr_parts.append(fr.assign(analysis=label))
            wx_parts.append(wx.assign(analysis=label))
        else:
            fr_parts.append(pd.DataFrame([{
                "analysis": label, "dataset": "all", "n_subjects": 0, "n_arms": len(models),
                "arms": ",".join(models), "note": f"not run: needs >= 3 models with {condition}, "
                                                  f"have {len(models)} ({', '.join(models) or 'none'})"}]))
    fr = pd.concat(fr_parts, ignore_index=True) if fr_parts else pd.DataFrame(columns=["analysis", "dataset"])
    wx = pd.concat(wx_parts, ignore_index=True) if wx_parts else pd.DataFrame(columns=["analysis", "dataset"])
    return (fr[["analysis", *[c for c in fr.columns if c != "analysis"]]],
            wx[["analysis", *[c for c in wx.columns if c != "analysis"]]])


__all__ = ["study_friedman", "study_wilcoxon", "extra_tests"]
