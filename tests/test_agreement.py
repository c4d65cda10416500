"""Agreement statistics checked against independent computations with known answers.

ICC(3,1) is checked on Shrout & Fleiss (1979), table 2 (6 targets x 4 judges), and on a
two-rater case against an ANOVA written here with numpy; the LMM ICC on simulated data of known
variance components; Bland-Altman, regression and Spearman against numpy/scipy directly.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mskseg_lib.stats import agreement as ag

# Shrout & Fleiss (1979), table 1: rows = targets, columns = judges 1-4
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
                         float)


def anova_ms(x: np.ndarray) -> dict[str, float]:
    """Mean squares of a targets x raters table from numpy sums of squares (no library)."""
    n, k = x.shape
    grand = x.mean()
    ss_total = ((x - grand) ** 2).sum()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ss_total - ss_rows - ss_cols
    return {"rows": ss_rows / (n - 1), "cols": ss_cols / (k - 1), "err": ss_err / ((n - 1) * (k - 1)),
            "within": (ss_cols + ss_err) / (n * (k - 1)), "n": n, "k": k}


def hand_icc(x: np.ndarray) -> dict[str, float]:
    ms = anova_ms(x)
    n, k = ms["n"], ms["k"]
    return {"icc1": (ms["rows"] - ms["within"]) / (ms["rows"] + (k - 1) * ms["within"]),
            "icc2": (ms["rows"] - ms["err"]) / (ms["rows"] + (k - 1) * ms["err"] + k * (ms["cols"] - ms["err"]) / n),
            "icc3": (ms["rows"] - ms["err"]) / (ms["rows"] + (k - 1) * ms["err"])}


def simulate_pairs(n: int, var_subject: float, var_resid: float, seed: int, offset: float = 1.0):
    """Two raters measuring the same subjects: value = 10 + rater offset + subject + noise."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0, np.sqrt(var_subject), n)
    return (10 + u + rng.normal(0, np.sqrt(var_resid), n),
            10 + offset + u + rng.normal(0, np.sqrt(var_resid), n))


# ----------------------------------------------------------------------------- ICC(3,1)
def test_shrout_fleiss_published_values():
    hand = hand_icc(SHROUT_FLEISS)  # the test's own ANOVA reproduces the paper's table 2 ...
    assert round(hand["icc1"], 2) == 0.17 and round(hand["icc2"], 2) == 0.29 and round(hand["icc3"], 2) == 0.71
    res = ag.icc3_1(SHROUT_FLEISS)  # ... and the module's ICC(3,1) matches both
    assert round(res.icc, 2) == 0.71
    assert res.icc == pytest.approx(hand["icc3"], abs=1e-12)
    assert res.icc == pytest.approx(0.714840714840715, abs=1e-9)
    assert (res.n_subjects, res.n_raters, res.df1, res.df2) == (6, 4, 5, 15)
    # F-based CI (McGraw & Wong 1996, case 3), written out here
    ms = anova_ms(SHROUT_FLEISS)
    f0 = ms["rows"] / ms["err"]
    fl = f0 / stats.f.ppf(0.975, 5, 15)
    fu = f0 * stats.f.ppf(0.975, 15, 5)
    assert res.f_stat == pytest.approx(f0)
    assert res.ci_low == pytest.approx((fl - 1) / (fl + 3), abs=1e-9)
    assert res.ci_high == pytest.approx((fu - 1) / (fu + 3), abs=1e-9)
    assert res.p_value == pytest.approx(stats.f.sf(f0, 5, 15))
    # a DataFrame works the same
    assert ag.icc3_1(pd.DataFrame(SHROUT_FLEISS)).icc == pytest.approx(res.icc)


def test_icc3_two_raters_matches_hand_anova():
    manual, predicted = simulate_pairs(25, 3.0, 1.0, seed=5)
    x = np.column_stack([manual, predicted])
    ms = anova_ms(x)
    expected = (ms["rows"] - ms["err"]) / (ms["rows"] + (2 - 1) * ms["err"])
    res = ag.icc3_1(x)
    assert res.icc == pytest.approx(expected, abs=1e-12)
    assert res.var_residual == pytest.approx(ms["err"])
    assert res.var_subject == pytest.approx((ms["rows"] - ms["err"]) / 2)
    assert res.ci_low < res.icc < res.ci_high


def test_icc3_rejects_bad_matrices():
    with pytest.raises(ValueError, match="complete"):
        ag.icc3_1(np.array([[1.0, np.nan], [2.0, 3.0], [4.0, 5.0]]))
    with pytest.raises(ValueError, match="matrix"):
        ag.icc3_1(np.arange(5.0))


# ----------------------------------------------------------------------------- LMM ICC
def test_lmm_icc_recovers_known_variance_components():
    # var_subject 4, var_resid 1 -> ICC 0.8. With 300 subjects the sampling SD of the estimate is
    # ~0.021 (Fisher's large-sample variance 2(1-r)^2(1+r)^2 / (2 (n-1)) with r = 0.8; an SD of
    # 0.020 over 20 simulated cohorts agreed), so 0.065 is ~3 SD.
    manual, predicted = simulate_pairs(300, 4.0, 1.0, seed=101)
    res = ag.icc_lmm(manual, predicted, n_boot=200, seed=0)
    assert res.method == "LMM" and res.n_boot == 200
    assert res.icc == pytest.approx(0.8, abs=0.065)
    assert res.var_subject == pytest.approx(4.0, rel=0.25)
    assert res.var_residual == pytest.approx(1.0, rel=0.2)
    assert res.ci_low <= 0.8 <= res.ci_high
    assert res.ci_low < res.boot_median < res.ci_high
    # balanced pairs: the REML ICC equals ICC(3,1) (the documented identity)
    assert res.icc == pytest.approx(ag.icc3_1(np.column_stack([manual, predicted])).icc, abs=1e-4)
    # seeded: same seed, same interval; another seed, another one
    again = ag.icc_lmm(manual, predicted, n_boot=200, seed=0)
    other = ag.icc_lmm(manual, predicted, n_boot=200, seed=1)
    assert (again.ci_low, again.ci_high) == (res.ci_low, res.ci_high)
    assert (other.ci_low, other.ci_high) != (res.ci_low, res.ci_high)


def test_lmm_bootstrap_interval_coverage():
    """The 95% subject-bootstrap interval covers the true 0.8 in (nearly) all of 6 cohorts."""
    results = [ag.icc_lmm(*simulate_pairs(150, 4.0, 1.0, seed=200 + s), n_boot=200, seed=s) for s in range(6)]
    assert sum(r.ci_low <= 0.8 <= r.ci_high for r in results) >= 5


def test_lmm_closed_form_bootstrap_equals_mixedlm_refits():
    manual, predicted = simulate_pairs(30, 2.0, 1.0, seed=3)
    fast = ag.icc_lmm(manual, predicted, n_boot=6, seed=4)
    slow = ag.icc_lmm(manual, predicted, n_boot=6, seed=4, refit="mixedlm")
    assert fast.ci_low == pytest.approx(slow.ci_low, abs=1e-4)
    assert fast.ci_high == pytest.approx(slow.ci_high, abs=1e-4)
    assert fast.boot_median == pytest.approx(slow.boot_median, abs=1e-4)


# ----------------------------------------------------------------------------- Bland-Altman
def test_bland_altman_parametric_equals_numpy():
    manual, predicted = simulate_pairs(40, 2.0, 0.5, seed=8)
    d = predicted - manual  # predicted - manual
    res = ag.bland_altman(manual, predicted, parametric=True)
    assert res.bias == pytest.approx(np.mean(d))
    assert res.sd == pytest.approx(np.std(d, ddof=1))
    assert res.loa_lower == pytest.approx(np.mean(d) - 1.96 * np.std(d, ddof=1))
    assert res.loa_upper == pytest.approx(np.mean(d) + 1.96 * np.std(d, ddof=1))
    t, s, n = stats.t.ppf(0.975, 39), np.std(d, ddof=1), 40
    assert res.bias_ci_high - res.bias_ci_low == pytest.approx(2 * t * s / np.sqrt(n))
    assert res.loa_upper_ci_high - res.loa_upper_ci_low == pytest.approx(2 * t * np.sqrt(3 * s**2 / n))
    assert res.loa_lower_ci_low < res.loa_lower < res.loa_lower_ci_high


def test_bland_altman_nonparametric_equals_percentiles():
    manual, predicted = simulate_pairs(60, 2.0, 0.5, seed=9)
    d = predicted - manual
    res = ag.bland_altman(manual, predicted, parametric=False, n_boot=300, seed=0)
    assert res.method == "non-parametric" and res.n_boot == 300
    assert res.bias == pytest.approx(np.median(d))
    assert res.loa_lower == pytest.approx(np.percentile(d, 2.5))
    assert res.loa_upper == pytest.approx(np.percentile(d, 97.5))
    assert res.bias_ci_low <= res.bias <= res.bias_ci_high
    assert res.loa_upper_ci_low <= res.loa_upper_ci_high


@pytest.mark.parametrize("parametric", [True, False])
def test_bland_altman_constant_offset(parametric):
    manual = np.random.default_rng(0).normal(5, 1, 20)
    res = ag.bland_altman(manual, manual + 2, parametric=parametric, n_boot=100)
    assert res.bias == pytest.approx(2.0)
    assert res.loa_lower == pytest.approx(2.0) and res.loa_upper == pytest.approx(2.0)
    assert res.loa_upper - res.loa_lower == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- regression
def test_linear_regression_equals_polyfit_and_scipy():
    manual, predicted = simulate_pairs(30, 2.0, 0.5, seed=10)
    res = ag.linear_regression(manual, predicted)
    slope, intercept = np.polyfit(manual, predicted, 1)
    ref = stats.linregress(manual, predicted)
    assert res.slope == pytest.approx(slope) and res.intercept == pytest.approx(intercept)
    assert res.r == pytest.approx(ref.rvalue) and res.r2 == pytest.approx(ref.rvalue**2)
    assert res.p_value == pytest.approx(ref.pvalue) and res.stderr == pytest.approx(ref.stderr)
    assert res.intercept_stderr == pytest.approx(ref.intercept_stderr)
    assert res.fit_y == pytest.approx(intercept + slope * res.grid_x)
    assert res.band_low is None


def test_gp_regression_covers_identity():
    rng = np.random.default_rng(11)
    x = np.sort(rng.uniform(0, 10, 50))
    y = x + rng.normal(0, 0.2, 50)
    res = ag.gp_regression(x, y, n_grid=80, seed=0)
    assert res.method == "gaussian_process" and len(res.grid_x) == 80
    covered = (res.band_low <= res.grid_x) & (res.grid_x <= res.band_high)
    assert covered.mean() >= 0.9
    assert res.r2 > 0.95
    assert np.all(res.band_low < res.fit_y) and np.all(res.fit_y < res.band_high)
    assert "RBF" in res.kernel and "WhiteKernel" in res.kernel


def test_spearman_equals_scipy():
    manual, predicted = simulate_pairs(25, 2.0, 1.0, seed=12)
    ref = stats.spearmanr(manual, predicted)
    res = ag.spearman(manual, predicted)
    assert res.rho == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)


# ----------------------------------------------------------------------------- the choice
def test_choice_flips_on_non_normal_differences():
    rng = np.random.default_rng(13)
    manual = rng.normal(30, 3, 60)
    normal = ag.choose_test(manual, manual + rng.normal(0.5, 0.5, 60))
    skewed = ag.choose_test(manual, manual + rng.exponential(1.0, 60) ** 2)
    outlier = manual + rng.normal(0.5, 0.5, 60)
    outlier[0] += 30
    heavy = ag.choose_test(manual, outlier)
    assert normal.parametric and normal.decision == "parametric"
    assert normal.shapiro_diff_p >= 0.05 and normal.levene_p >= 0.05
    assert not skewed.parametric and skewed.shapiro_diff_p < 0.05 and skewed.decision == "non-parametric"
    assert not heavy.parametric and not heavy.normal


def test_choice_statistics_equal_scipy():
    rng = np.random.default_rng(14)
    manual = rng.normal(30, 3, 40)
    predicted = manual + rng.normal(0, 1, 40)
    res = ag.choose_test(manual, predicted, alpha=0.1)
    assert res.shapiro_diff_p == pytest.approx(stats.shapiro(predicted - manual).pvalue)
    assert res.shapiro_manual_w == pytest.approx(stats.shapiro(manual).statistic)
    assert res.levene_p == pytest.approx(stats.levene(manual, predicted, center="median").pvalue)
    assert res.alpha == 0.1


# ----------------------------------------------------------------------------- entry points
def test_agreement_paths_and_bad_input():
    manual, predicted = simulate_pairs(40, 4.0, 1.0, seed=15)
    par = ag.agreement(manual, predicted, n_boot=100)
    assert par.parametric and par.icc.method == "ICC(3,1)" and par.regression.method == "linear"
    assert par.bland_altman.method == "parametric" and par.n_pairs == 40 and par.n_dropped == 0
    assert list(par.data.columns) == ["subject", "manual", "predicted", "mean", "difference"]
    forced = ag.agreement(manual, predicted, n_boot=100, parametric=False)
    assert forced.icc.method == "LMM" and forced.regression.method == "gaussian_process"
    assert forced.bland_altman.method == "non-parametric" and forced.icc.n_boot == 100
    # NaN pairs are dropped and counted
    m2, p2 = manual.copy(), predicted.copy()
    m2[0], p2[5] = np.nan, np.inf
    res = ag.agreement(m2, p2, [f"id{i}" for i in range(40)], n_boot=50)
    assert (res.n_pairs, res.n_dropped) == (38, 2) and "id0" not in set(res.data["subject"])
    with pytest.raises(ValueError, match="differ in length"):
        ag.agreement(manual, predicted[:-1])
    with pytest.raises(ValueError, match=">= 3"):
        ag.agreement([1.0, 2.0, np.nan], [1.0, 2.5, 3.0])
    with pytest.raises(ValueError, match="more than once"):
        ag.agreement([1.0, 2.0, 3.0], [1.0, 2.5, 3.0], ["a", "a", "b"])


def test_agreement_table_groups_and_columns():
    rows = []
    for biomarker, n in (("volume_cm3", 30), ("thickness_mm", 2)):
        manual, predicted = simulate_pairs(n, 4.0, 1.0, seed=16)
        rows += [{"biomarker": biomarker, "structure": "femoral", "subject_id": f"s{i}", "man": m, "pred": p}
                 for i, (m, p) in enumerate(zip(manual, predicted))]
    tables = ag.agreement_table(pd.DataFrame(rows), "man", "pred", n_boot=50)
    head = ["biomarker", "structure", "n_pairs", "n_dropped"]
    assert list(tables.test_choice.columns) == [*head, *ag.TEST_COLUMNS, "note"]
    assert list(tables.icc.columns) == [*head, *ag.ICC_COLUMNS, "note"]
    assert list(tables.regression.columns) == [*head, *ag.REGRESSION_COLUMNS, "note"]
    assert list(tables.spearman.columns) == [*head, *ag.SPEARMAN_COLUMNS, "note"]
    assert list(tables.bland_altman.columns) == [*head, *ag.BA_COLUMNS, "note"]
    icc = tables.icc.set_index("biomarker")
    assert icc.loc["thickness_mm", "note"].startswith("not run") and np.isnan(icc.loc["thickness_mm", "icc"])
    assert icc.loc["volume_cm3", "n_pairs"] == 30
    result = tables.results[("volume_cm3", "femoral")]
    assert icc.loc["volume_cm3", "icc"] == pytest.approx(result.icc.icc)
    assert set(tables.results) == {("volume_cm3", "femoral")}
