"""Non-parametric comparisons of segmentation models on per-subject scores (e.g. Dice).

Each subject is scored by every model ("arm") on the same images, so the scores are paired:
the tests here use subjects as blocks (Friedman across all arms, Wilcoxon signed-rank for each
pair) instead of treating the arms as independent samples. Groups (datasets) are tested
separately and their p-values are corrected with Benjamini-Hochberg (false discovery rate).
Tests that cannot run keep their row with NaN results and a ``note`` saying why.

The study runs the post-hoc Wilcoxon tests only "for datasets where the Friedman test indicated
statistically significant differences" and calls a difference significant when "the corrected
p-value" is below 0.05, without saying which Friedman p gates the post-hoc tests or over which
family the Wilcoxon p-values are corrected. :func:`gated_wilcoxon` implements the reading used
as the default (gate: the BH-adjusted Friedman p across datasets; BH within each dataset's
pairs) and takes the other readings as arguments (``gate="p_value"``, ``correction="all"``).

``ranksum_by_group`` is the exception: it compares two prompt conditions (ground-truth boxes
vs detector boxes, notebook 06) as independent samples with the Wilcoxon rank-sum test, as
the study does, BH-corrected over all (dataset, model) tests.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any, Literal, Optional, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from statsmodels.stats.multitest import multipletests

__all__ = ["bh_correct", "complete_blocks", "friedman_by_group", "pairwise_wilcoxon",
           "gated_wilcoxon", "ranksum_by_group"]

FRIEDMAN_COLUMNS = ["n_subjects", "n_arms", "arms", "statistic", "p_value", "kendall_w", "p_bh", "note"]
WILCOXON_COLUMNS = ["arm_a", "arm_b", "n_subjects", "median_a", "median_b", "median_difference",
                    "statistic", "p_value", "p_bh", "note"]


def bh_correct(p_values: ArrayLike) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (FDR), in the input order.

    NaN entries (tests that did not run) stay NaN and are left out of the family, so the
    number of tests m counts only the finite p-values.

    Parameters
    ----------
    p_values : array-like (m,)
        Raw p-values (NaN allowed).

    Returns
    -------
    ndarray (m,)
        Adjusted p-values, NaN where the input was NaN.
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
    """Blocks x arms table of complete blocks only.

    A repeated-measures test needs every subject scored by every arm, so subjects missing an
    arm or having a non-finite value for one are dropped.

    Parameters
    ----------
    df : DataFrame
        Long table, one row per (block, arm).
    block_col, arm_col, value_col : str
        Column names (subject, arm, score); a duplicated (block, arm) raises ValueError.

    Returns
    -------
    DataFrame (n_blocks, n_arms)
        Rows = subjects (sorted), columns = arms (sorted), the scores as floats.
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
                      arm_col: str = "arm", value_col: str = "dice", arms: Optional[Sequence[str]] = None,
                      groups: Optional[Sequence[Any]] = None) -> pd.DataFrame:
    """Friedman test across arms (models) with subjects as blocks, one row per group.

    Only complete subjects enter (``complete_blocks``). Groups where the test cannot run (< 3
    arms, < 2 complete subjects, no variation) keep a NaN row with a ``note``. ``arms`` fixes the
    arms a test compares (other arms are ignored, in the given order): a group where one is
    missing is not run, and the note names the missing arms, so a comparison is never silently
    made over fewer arms than asked for.

    Parameters
    ----------
    df : DataFrame
        Long table, one row per (group, subject, arm) with a score (e.g. Dice, 0-1).
    group_col, block_col, arm_col, value_col : str
        Column names.
    arms : sequence of str, optional
        The arms compared (default: every arm of the group).
    groups : sequence, optional
        Groups that keep a row even without any data (reported first, in the given order).

    Returns
    -------
    DataFrame
        One row per group (``FRIEDMAN_COLUMNS``): ``n_subjects``, ``n_arms``, ``arms``, ``statistic``
        (chi2), ``p_value``, ``kendall_w`` = chi2 / (n (k - 1)) as effect size, ``p_bh``
        (Benjamini-Hochberg across the groups), ``note``.
    """
    _check(df, [group_col, block_col, arm_col], value_col)
    wanted = None if arms is None else [str(a) for a in arms]
    data = df if wanted is None else df[df[arm_col].astype(str).isin(wanted)]
    present = {g: sub for g, sub in data.groupby(group_col, sort=True, dropna=False)}
    order = list(dict.fromkeys([*(groups or []), *sorted(df[group_col].dropna().unique(), key=str)]))
    order += [g for g in present if g not in order]
    rows = []
    for group in order:
        sub = present.get(group, data.iloc[0:0])
        wide = _wide(sub, block_col, arm_col, value_col) if len(sub) else pd.DataFrame()
        missing = [] if wanted is None else [a for a in wanted if a not in set(map(str, wide.columns))]
        if wanted is not None:
            wide = wide.reindex(columns=[a for a in wanted if a not in missing])
        wide = wide.dropna(how="any")
        if missing:
            statistic = p = w = np.nan
            note = f"not run: no scores for {', '.join(missing)}"
        else:
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
    so a pair is not penalised by a third arm's missing scores.

    Parameters
    ----------
    df : DataFrame
        Long table, one row per (group, subject, arm) with a score.
    group_col, block_col, arm_col, value_col : str
        Column names.
    correction : "per_group" or "all"
        Benjamini-Hochberg within each group's family of pairs, or over every pair in the table.

    Returns
    -------
    DataFrame
        One row per (group, arm_a, arm_b) (``WILCOXON_COLUMNS``): ``n_subjects``, ``median_a``,
        ``median_b``, ``median_difference``, ``statistic``, ``p_value``, ``p_bh``, ``note`` (why a test
        did not run).
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


GATED_COLUMNS = ["friedman_p", "friedman_p_bh", "gate", "gate_passed"]


def gated_wilcoxon(df: pd.DataFrame, friedman: pd.DataFrame, group_col: str = "dataset",
                   block_col: str = "subject_id", arm_col: str = "arm", value_col: str = "dice",
                   arms: Optional[Sequence[str]] = None, alpha: float = 0.05,
                   gate: Literal["p_bh", "p_value"] = "p_bh",
                   correction: Literal["per_group", "all"] = "per_group") -> pd.DataFrame:
    """Post-hoc Wilcoxon signed-rank tests, run only where the Friedman test is significant.

    Parameters
    ----------
    df : one row per (group, block, arm) with ``value_col`` (e.g. subject Dice).
    friedman : :func:`friedman_by_group`'s table for the same data (one row per group).
    arms : the arms compared (all pairs among them; default: every arm in ``df``).
    alpha : significance level of the gate.
    gate : which Friedman p must be below ``alpha`` for a group's pairs to be tested:
        ``"p_bh"`` (default: BH-adjusted across groups) or ``"p_value"`` (raw).
    correction : BH family of the Wilcoxon p-values: ``"per_group"`` (default: the pairs of one
        group) or ``"all"`` (every pair tested in the table).

    Returns
    -------
    :func:`pairwise_wilcoxon`'s columns plus ``friedman_p``, ``friedman_p_bh``, ``gate`` (the
    column that gated), ``gate_passed``. Every pair of every group keeps a row; pairs of groups
    that did not pass the gate have NaN results and a note giving the Friedman p.
    """
    if gate not in ("p_bh", "p_value"):
        raise ValueError(f"gate must be 'p_bh' or 'p_value', got {gate!r}")
    if correction not in ("per_group", "all"):
        raise ValueError(f"correction must be 'per_group' or 'all', got {correction!r}")
    _check(df, [group_col, block_col, arm_col], value_col)
    _require_columns(friedman, [group_col, "p_value", "p_bh"])
    wanted = None if arms is None else [str(a) for a in arms]
    fr = friedman.set_index(group_col)
    groups = list(dict.fromkeys([*fr.index, *sorted(df[group_col].dropna().unique(), key=str)]))
    rows = []
    for group in groups:
        sub = df[df[group_col] == group]
        if wanted is not None:
            sub = sub[sub[arm_col].astype(str).isin(wanted)]
        wide = _wide(sub, block_col, arm_col, value_col) if len(sub) else pd.DataFrame()
        pair_arms = wanted if wanted is not None else [str(c) for c in wide.columns]
        p_raw = float(fr.at[group, "p_value"]) if group in fr.index else np.nan
        p_adj = float(fr.at[group, "p_bh"]) if group in fr.index else np.nan
        p_gate = p_adj if gate == "p_bh" else p_raw
        passed = bool(np.isfinite(p_gate) and p_gate < alpha)
        for arm_a, arm_b in combinations(pair_arms, 2):
            base = {group_col: group, "arm_a": arm_a, "arm_b": arm_b, "friedman_p": p_raw,
                    "friedman_p_bh": p_adj, "gate": gate, "gate_passed": passed}
            if passed and arm_a in wide and arm_b in wide:
                rows.append({**base, **_wilcoxon_pair(wide[arm_a], wide[arm_b])})
                continue
            reason = ("Friedman not run" if not np.isfinite(p_gate)
                      else f"Friedman {gate} = {p_gate:.3g} >= {alpha:g}")
            if passed:
                reason = "no scores for one of the arms"
            rows.append({**base, "n_subjects": 0, "median_a": np.nan, "median_b": np.nan,
                         "median_difference": np.nan, "statistic": np.nan, "p_value": np.nan,
                         "note": f"not run: {reason}"})
    out = pd.DataFrame(rows, columns=[group_col, *WILCOXON_COLUMNS, *GATED_COLUMNS])
    out["p_bh"] = bh_correct(out["p_value"])
    if correction == "per_group":
        for _, idx in out.groupby(group_col, sort=False, dropna=False).groups.items():
            out.loc[idx, "p_bh"] = bh_correct(out.loc[idx, "p_value"])
    return out


# ------------------------------------------------------------- independent samples: rank-sum
RANKSUM_COLUMNS = ["condition_a", "condition_b", "n_a", "n_b", "median_a", "median_b",
                   "median_difference", "statistic", "p_value", "p_bh", "note"]


def _require_columns(df: pd.DataFrame, cols: list[str]) -> None:
    """Raise ValueError naming the first column of ``cols`` missing from ``df``."""
    for col in cols:
        if col not in df.columns:
            raise ValueError(f"missing column {col!r}; available columns: {list(df.columns)}")


def _ranksum_pair(a: np.ndarray, b: np.ndarray) -> dict:
    """Wilcoxon rank-sum of sample a vs sample b (finite values only, already filtered)."""
    row = {"n_a": int(a.size), "n_b": int(b.size),
           "median_a": float(np.median(a)) if a.size else np.nan,
           "median_b": float(np.median(b)) if b.size else np.nan,
           "statistic": np.nan, "p_value": np.nan, "note": ""}
    row["median_difference"] = row["median_a"] - row["median_b"]
    if a.size < 2 or b.size < 2:
        row["note"] = (f"not run: needs >= 2 finite values per condition, "
                       f"have n_a={a.size}, n_b={b.size}")
    elif np.all(a == a[0]) and np.all(b == a[0]):
        row["note"] = f"not run: every value in both conditions equals {a[0]:g}"
    else:
        res = stats.ranksums(a, b, alternative="two-sided")
        row["statistic"], row["p_value"] = float(res.statistic), float(res.pvalue)
    return row


def ranksum_by_group(df: pd.DataFrame, group_cols: str | tuple[str, ...] | list[str] = ("dataset", "model"),
                     condition_col: str = "prompt", value_col: str = "dice",
                     conditions: tuple[str, str] = ("gt_box", "detector")) -> pd.DataFrame:
    """Two-sided Wilcoxon rank-sum test of condition a vs condition b within each group.

    Notebook 06's comparison of ground-truth box prompts with detector box prompts: per
    (dataset, model) the subject scores of the two prompt conditions are treated as two
    independent samples (``scipy.stats.ranksums``: the normal approximation of the rank-sum
    statistic, without a tie correction, as in the study). Non-numeric and non-finite values (a
    model that found nothing) are dropped per side, and rows whose condition is neither of
    ``conditions`` are ignored.

    Parameters
    ----------
    df : DataFrame
        Long table with the group columns, the condition and a score.
    group_cols : str or sequence of str
        The groups (default dataset and model).
    condition_col, value_col : str
        Column names.
    conditions : (str, str)
        Condition a and condition b.

    Returns
    -------
    DataFrame
        Every group present in ``df`` keeps a row: ``group_cols``, condition_a, condition_b, n_a,
        n_b, median_a, median_b, ``median_difference`` (median(a) - median(b), not a
        Hodges-Lehmann shift), ``statistic`` (the z of sample a: positive means a tends to score
        higher), ``p_value``, ``p_bh`` (Benjamini-Hochberg over the tests that ran) and ``note``
        ("not run: ..." where a side has fewer than 2 finite values or both sides are one constant).
    """
    groups = [group_cols] if isinstance(group_cols, str) else list(group_cols)
    if not groups:
        raise ValueError("group_cols must name at least one column")
    cond_a, cond_b = conditions
    if cond_a == cond_b:
        raise ValueError(f"conditions must be two different values, got {conditions!r}")
    _require_columns(df, [*groups, condition_col, value_col])
    values = pd.to_numeric(df[value_col], errors="coerce").astype(float)
    data = df[groups].assign(_cond=df[condition_col], _value=values.where(np.isfinite(values)))
    rows = []
    for key, sub in data.groupby(groups, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        a = sub.loc[sub["_cond"] == cond_a, "_value"].dropna().to_numpy(dtype=float)
        b = sub.loc[sub["_cond"] == cond_b, "_value"].dropna().to_numpy(dtype=float)
        rows.append({**dict(zip(groups, key)), "condition_a": cond_a, "condition_b": cond_b,
                     **_ranksum_pair(a, b)})
    out = pd.DataFrame(rows, columns=[*groups, *RANKSUM_COLUMNS])
    out["p_bh"] = bh_correct(out["p_value"])
    return out
