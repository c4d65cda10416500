"""Non-parametric comparisons of segmentation models on per-subject scores (e.g. Dice).

Each subject is scored by every model ("arm") on the same images, so the scores are paired:
the tests here use subjects as blocks (Friedman across all arms, Wilcoxon signed-rank for each
pair) instead of treating the arms as independent samples. Groups (datasets) are tested
separately and their p-values are corrected with Benjamini-Hochberg (false discovery rate).
Tests that cannot run keep their row with NaN results and a ``note`` saying why.
"""
from __future__ import annotations

from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from statsmodels.stats.multitest import multipletests

__all__ = ["bh_correct", "complete_blocks", "friedman_by_group", "pairwise_wilcoxon"]

FRIEDMAN_COLUMNS = ["n_subjects", "n_arms", "arms", "statistic", "p_value", "kendall_w", "p_bh", "note"]
WILCOXON_COLUMNS = ["arm_a", "arm_b", "n_subjects", "median_a", "median_b", "median_difference",
                    "statistic", "p_value", "p_bh", "note"]


def bh_correct(p_values: ArrayLike) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (FDR), in the input order.

    NaN entries (tests that did not run) stay NaN and are left out of the family, so the
    number of tests m counts only the finite p-values.
    """
    p = np.asarray(p_values, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


def _check(df: pd.DataFrame, key_cols: list[str], value_col: str) -> None:
    """Raise ValueError for a missing column or for duplicate rows of ``key_cols``."""
    for col in [*key_cols, value_col]:
        if col not in df.columns:
            raise ValueError(f"missing column {col!r}; available columns: {list(df.columns)}")
    dup = df.duplicated(subset=key_cols, keep=False)
    if dup.any():
        example = tuple(df.loc[dup, key_cols].iloc[0])
        raise ValueError(f"duplicate rows for {tuple(key_cols)}, e.g. {example}: "
                         "each key must appear once")


def _wide(df: pd.DataFrame, block_col: str, arm_col: str, value_col: str) -> pd.DataFrame:
    """Blocks x arms table with sorted rows and columns; non-numeric or infinite values -> NaN."""
    values = pd.to_numeric(df[value_col], errors="coerce").astype(float)
    wide = df.assign(**{value_col: values}).pivot(index=block_col, columns=arm_col, values=value_col)
    wide = wide.reindex(columns=sorted(wide.columns)).sort_index()
    return wide.where(np.isfinite(wide))


def complete_blocks(df: pd.DataFrame, block_col: str, arm_col: str, value_col: str) -> pd.DataFrame:
    """Blocks x arms table (rows = subjects, sorted columns = arms) of complete blocks only.

    A repeated-measures test needs every subject scored by every arm, so subjects missing an
    arm or having a non-finite value for one are dropped.
    """
    _check(df, [block_col, arm_col], value_col)
    return _wide(df, block_col, arm_col, value_col).dropna(how="any")


def _friedman_one(wide: pd.DataFrame) -> tuple[float, float, float, str]:
    """Friedman statistic, p-value, Kendall's W and note for one complete blocks table."""
    n, k = wide.shape
    if k < 3:
        return np.nan, np.nan, np.nan, f"not run: needs >= 3 arms, have {k}"
    if n < 2:
        return np.nan, np.nan, np.nan, f"not run: needs >= 2 complete subjects, have {n}"
    x = wide.to_numpy()
    if np.all(x == x[:, :1]):
        return np.nan, np.nan, np.nan, "not run: values identical across arms for every subject"
    res = stats.friedmanchisquare(*x.T)
    return float(res.statistic), float(res.pvalue), float(res.statistic) / (n * (k - 1)), ""


def friedman_by_group(df: pd.DataFrame, group_col: str = "dataset", block_col: str = "subject_id",
                      arm_col: str = "arm", value_col: str = "dice") -> pd.DataFrame:
    """Friedman test across arms (models) with subjects as blocks, one row per group.

    Only complete subjects enter (``complete_blocks``). Kendall's W = chi2 / (n (k - 1)) gives
    the effect size; ``p_bh`` is Benjamini-Hochberg across the groups. Groups where the test
    cannot run (< 3 arms, < 2 complete subjects, no variation) keep a NaN row with a ``note``.
    """
    _check(df, [group_col, block_col, arm_col], value_col)
    rows = []
    for group, sub in df.groupby(group_col, sort=True, dropna=False):
        wide = _wide(sub, block_col, arm_col, value_col).dropna(how="any")
        statistic, p, w, note = _friedman_one(wide)
        rows.append({group_col: group, "n_subjects": wide.shape[0], "n_arms": wide.shape[1],
                     "arms": ",".join(map(str, wide.columns)), "statistic": statistic,
                     "p_value": p, "kendall_w": w, "note": note})
    out = pd.DataFrame(rows, columns=[group_col, *FRIEDMAN_COLUMNS])
    out["p_bh"] = bh_correct(out["p_value"])
    return out


def _wilcoxon_pair(a: pd.Series, b: pd.Series) -> dict:
    """Wilcoxon signed-rank of arm a vs arm b on the subjects finite in both."""
    paired = pd.concat([a, b], axis=1, join="inner").dropna()
    x, y = paired.iloc[:, 0].to_numpy(), paired.iloc[:, 1].to_numpy()
    row = {"n_subjects": len(x), "median_a": np.median(x) if len(x) else np.nan,
           "median_b": np.median(y) if len(y) else np.nan,
           "median_difference": np.median(x - y) if len(x) else np.nan,
           "statistic": np.nan, "p_value": np.nan, "note": ""}
    if len(x) < 2:
        row["note"] = f"not run: needs >= 2 paired subjects, have {len(x)}"
    elif np.all(x == y):
        row["note"] = "not run: all paired differences are zero"
    else:
        res = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
        row["statistic"], row["p_value"] = float(res.statistic), float(res.pvalue)
    return row


def pairwise_wilcoxon(df: pd.DataFrame, group_col: str = "dataset", block_col: str = "subject_id",
                      arm_col: str = "arm", value_col: str = "dice",
                      correction: Literal["per_group", "all"] = "per_group") -> pd.DataFrame:
    """Two-sided Wilcoxon signed-rank test for every pair of arms within each group.

    Each pair uses the subjects with finite values in both arms (not only complete blocks),
    so a pair is not penalised by a third arm's missing scores. ``correction="per_group"``
    applies BH within each group's family of pairs; ``"all"`` over every pair in the table.
    """
    if correction not in ("per_group", "all"):
        raise ValueError(f"correction must be 'per_group' or 'all', got {correction!r}")
    _check(df, [group_col, block_col, arm_col], value_col)
    rows = []
    for group, sub in df.groupby(group_col, sort=True, dropna=False):
        wide = _wide(sub, block_col, arm_col, value_col)
        for arm_a, arm_b in combinations(wide.columns, 2):
            rows.append({group_col: group, "arm_a": arm_a, "arm_b": arm_b,
                         **_wilcoxon_pair(wide[arm_a], wide[arm_b])})
    out = pd.DataFrame(rows, columns=[group_col, *WILCOXON_COLUMNS])
    out["p_bh"] = bh_correct(out["p_value"])
    if correction == "per_group":
        for _, idx in out.groupby(group_col, sort=False, dropna=False).groups.items():
            out.loc[idx, "p_bh"] = bh_correct(out.loc[idx, "p_value"])
    return out
