"""Ground-truth boxes vs detector boxes: the study's test and the paired test beside it (S71).

The study compares the two prompt conditions per (dataset, model) with the Wilcoxon
**rank-sum** test, Benjamini-Hochberg-adjusted (figure 6a, table S71): the subject Dice values
of the two conditions are treated as two independent samples
(:func:`mskseg_lib.stats.comparisons.ranksum_by_group`). The design is paired, though: the same
test subjects are segmented under both prompt sources, from the same embeddings. The test that
design calls for is the Wilcoxon **signed-rank** test on the per-subject differences, which
this module adds as the project's variant, labelled, beside the study's test (never instead of
it).

* :func:`signed_rank_by_group`: two-sided signed-rank test per group on the subjects scored
  under both conditions (``scipy.stats.wilcoxon``: exact null distribution for small samples
  without ties or zero differences, its normal approximation otherwise), BH over every test of
  the table that ran.
* :func:`prompt_condition_tests`: table S71, the rank-sum columns (the study's) and the
  signed-rank columns prefixed ``signed_rank_`` (the variant) in one row per group.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mskseg_lib.stats.comparisons import bh_correct, ranksum_by_group

__all__ = ["SIGNED_RANK_COLUMNS", "signed_rank_by_group", "prompt_condition_tests"]

SIGNED_RANK_COLUMNS = ["condition_a", "condition_b", "n_pairs", "median_a", "median_b", "median_difference",
                       "statistic", "p_value", "p_bh", "note"]


def _as_list(cols: str | Sequence[str]) -> list[str]:
    out = [cols] if isinstance(cols, str) else list(cols)
    if not out:
        raise ValueError("group_cols must name at least one column")
    return out


def _signed_rank_pair(a: np.ndarray, b: np.ndarray) -> dict:
    """Signed-rank test of paired samples a, b (finite pairs only, already aligned)."""
    d = a - b
    row = {"n_pairs": int(d.size), "median_a": float(np.median(a)) if a.size else np.nan,
           "median_b": float(np.median(b)) if b.size else np.nan,
           "median_difference": float(np.median(d)) if d.size else np.nan,
           "statistic": np.nan, "p_value": np.nan, "note": ""}
    if d.size < 2:
        row["note"] = f"not run: needs >= 2 subjects scored under both conditions, have {d.size}"
    elif np.all(d == 0):
        row["note"] = "not run: every paired difference is zero"
    else:
        res = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
        row["statistic"], row["p_value"] = float(res.statistic), float(res.pvalue)
    return row


def signed_rank_by_group(df: pd.DataFrame, group_cols: str | Sequence[str] = ("dataset", "model"),
                         condition_col: str = "prompt", value_col: str = "dice", block_col: str = "subject_id",
                         conditions: tuple[str, str] = ("gt_box", "detector")) -> pd.DataFrame:
    """Two-sided Wilcoxon signed-rank test of condition a vs b within each group, paired by subject.

    Parameters
    ----------
    df : long table, one row per (group, subject, condition) with a numeric ``value_col``.
    group_cols : the columns of one test (default: dataset and model).
    condition_col, conditions : the two conditions compared (a first).
    block_col : the pairing unit (the subject scored under both conditions).

    Returns
    -------
    DataFrame, one row per group present in ``df`` (sorted): ``group_cols``, condition_a,
    condition_b, n_pairs (subjects finite under both), median_a, median_b, median_difference
    (median of the paired a - b differences), statistic (scipy's: the smaller of the signed-rank
    sums), p_value, p_bh (BH over every test of the table that ran), note ("not run: ..." where
    fewer than 2 pairs or every difference is zero). Zero differences are dropped (Wilcoxon's
    ``zero_method="wilcox"``), as in :func:`mskseg_lib.stats.comparisons.pairwise_wilcoxon`.
    """
    groups = _as_list(group_cols)
    cond_a, cond_b = conditions
    if cond_a == cond_b:
        raise ValueError(f"conditions must be two different values, got {conditions!r}")
    for col in [*groups, condition_col, value_col, block_col]:
        if col not in df.columns:
            raise ValueError(f"missing column {col!r}; available columns: {list(df.columns)}")
    values = pd.to_numeric(df[value_col], errors="coerce").astype(float)
    data = df[[*groups, block_col, condition_col]].assign(_value=values.where(np.isfinite(values)))
    both = data[data[condition_col].isin([cond_a, cond_b])]
    dup = both.duplicated(subset=[*groups, block_col, condition_col], keep=False)
    if dup.any():
        example = tuple(both.loc[dup, [*groups, block_col, condition_col]].iloc[0])
        raise ValueError(f"duplicate rows for {(*groups, block_col, condition_col)}, e.g. {example}: "
                         "each subject must appear once per condition")
    rows = []
    for key, sub in data.groupby(groups, sort=True, dropna=False):  # every group keeps a row
        key = key if isinstance(key, tuple) else (key,)
        sub = sub[sub[condition_col].isin([cond_a, cond_b])]
        wide = sub.pivot(index=block_col, columns=condition_col, values="_value")
        wide = wide.reindex(columns=[cond_a, cond_b]).dropna()  # subjects finite under both
        rows.append({**dict(zip(groups, key)), "condition_a": cond_a, "condition_b": cond_b,
                     **_signed_rank_pair(wide[cond_a].to_numpy(float), wide[cond_b].to_numpy(float))})
    out = pd.DataFrame(rows, columns=[*groups, *SIGNED_RANK_COLUMNS])
    out["p_bh"] = bh_correct(out["p_value"])
    return out


def prompt_condition_tests(subjects: pd.DataFrame, group_cols: Sequence[str] = ("dataset", "model"),
                           condition_col: str = "prompt", value_col: str = "dice", block_col: str = "subject_id",
                           conditions: tuple[str, str] = ("gt_box", "detector")) -> pd.DataFrame:
    """Table S71: per group the study's rank-sum test and, beside it, the paired signed-rank test.

    Returns the columns of :func:`~mskseg_lib.stats.comparisons.ranksum_by_group` (the study's
    test: condition_a, condition_b, n_a, n_b, median_a, median_b, median_difference, statistic,
    p_value, p_bh, note) followed by ``signed_rank_n_pairs``, ``signed_rank_median_difference``,
    ``signed_rank_statistic``, ``signed_rank_p_value``, ``signed_rank_p_bh`` and
    ``signed_rank_note`` (the project's variant). Each family is BH-adjusted on its own.
    """
    groups = list(group_cols)
    ranksum = ranksum_by_group(subjects, group_cols=tuple(groups), condition_col=condition_col,
                               value_col=value_col, conditions=conditions)
    paired = signed_rank_by_group(subjects, groups, condition_col, value_col, block_col, conditions)
    keep = ["n_pairs", "median_difference", "statistic", "p_value", "p_bh", "note"]
    paired = paired[[*groups, *keep]].rename(columns={c: f"signed_rank_{c}" for c in keep})
    return ranksum.merge(paired, on=groups, how="left")
