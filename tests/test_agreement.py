"""Agreement statistics checked against independent computations with known answers.

ICC(3,1) is checked on Shrout & Fleiss (1979), table 2 (6 targets x 4 judges), and on a
two-rater case against an ANOVA written here with numpy; the LMM ICC on simulated data of known
variance components; Bland-Altman, regression and Spearman against numpy/scipy directly.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats

from mskseg_lib.errors import UserError
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


# ----------------------------------------------------------------------------- ICC(3,1), ICC(A,1)
def test_shrout_fleiss_published_values():
    hand = hand_icc(SHROUT_FLEISS)  # the test's own ANOVA reproduces the paper's table 2 ...
    assert round(hand["icc1"], 2) == 0.17 and round(hand["icc2"], 2) == 0.29 and round(hand["icc3"], 2) == 0.71
    res = ag.icc3_1(SHROUT_FLEISS)  # ... and the module's ICC(3,1) matches both
    assert res.method == "ICC(3,1)" and round(res.icc, 2) == 0.71
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


def test_absolute_agreement_icc_a1_is_shrout_fleiss_icc21():
    """The study calls its ICC "absolute agreement": that coefficient is ICC(A,1) (McGraw & Wong),
    Shrout & Fleiss' ICC(2,1), published as 0.29 for their table 1 (ICC(3,1): 0.71)."""
    res = ag.icc_a1(SHROUT_FLEISS)
    assert res.method == "ICC(A,1)" and round(res.icc, 2) == 0.29
    assert res.icc == pytest.approx(hand_icc(SHROUT_FLEISS)["icc2"], abs=1e-12)
    assert res.ci_low < res.icc < res.ci_high


def test_constant_bias_lowers_icc_a1_but_not_icc3_1():
    """Adding 2 to every automated value: ICC(3,1) (consistency) is unchanged to rounding,
    ICC(A,1) drops to the value of the two-way formula with the larger rater mean square."""
    manual, predicted = simulate_pairs(25, 3.0, 1.0, seed=5, offset=0.0)
    before = np.column_stack([manual, predicted])
    after = np.column_stack([manual, predicted + 2.0])
    assert ag.icc3_1(after).icc == pytest.approx(ag.icc3_1(before).icc, abs=1e-12)
    a_before, a_after = ag.icc_a1(before).icc, ag.icc_a1(after).icc
    assert a_after == pytest.approx(hand_icc(after)["icc2"], abs=1e-12)
    assert a_after < a_before - 0.1


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


# ----------------------------------------------------------------------------- LMM ICC (no rater term)
# Balanced design with known mean squares: subject means -3, -1, 1, 3 and each pair 2 apart.
# MS_between = 2 * (9 + 1 + 1 + 9) / 3 = 40/3, MS_within = 2, so var_subject = (40/3 - 2) / 2 = 17/3,
# var_residual = 2 and ICC = (40/3 - 2) / (40/3 + 2) = 17/23.
SUBJECT_MEANS = np.array([-3.0, -1.0, 1.0, 3.0])


def test_closed_form_icc_equals_the_analytic_value_and_the_mixedlm_fit():
    x = np.column_stack([SUBJECT_MEANS - 1.0, SUBJECT_MEANS + 1.0])
    assert float(ag.icc_oneway_closed_form(x)) == pytest.approx(17 / 23, abs=1e-12)
    var_s, var_r = ag._fit_lmm(x)  # statsmodels MixedLM, value ~ 1, random intercept per subject
    assert var_s == pytest.approx(17 / 3, rel=1e-4) and var_r == pytest.approx(2.0, rel=1e-4)
    # a constant bias is disagreement without a rater term: (m, m + 2) has the same mean squares,
    # so the same 17/23, where a consistency ICC (or a model with a rater term) gives 1
    biased = np.column_stack([SUBJECT_MEANS, SUBJECT_MEANS + 2.0])
    assert float(ag.icc_oneway_closed_form(biased)) == pytest.approx(17 / 23, abs=1e-12)
    assert ag._lmm_icc(biased) == pytest.approx(17 / 23, abs=1e-4)
    assert ag.icc3_1(biased).icc == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_equals_mixedlm_on_fixed_data(seed):
    """Simulated pairs, and one set where MS_between < MS_within (REML at the boundary: 0)."""
    manual, predicted = simulate_pairs(15, 2.0, 1.0, seed=seed)
    x = np.column_stack([manual, predicted])
    assert float(ag.icc_oneway_closed_form(x)) == pytest.approx(ag._lmm_icc(x), abs=1e-4)
    rng = np.random.default_rng(seed)
    noise = np.column_stack([np.zeros(12), rng.normal(0, 3, 12)])  # no subject effect at all
    if ag._oneway_components(noise)[0] < ag._oneway_components(noise)[1]:
        assert float(ag.icc_oneway_closed_form(noise)) == 0.0
    assert float(ag.icc_oneway_closed_form(noise)) == pytest.approx(ag._lmm_icc(noise), abs=1e-4)


def test_lmm_icc_is_the_bootstrap_median_of_subject_resamples():
    """The reported ICC is the median of the resampled ICCs, the interval their 2.5/97.5
    percentiles; resamples draw subjects (both values together) with numpy's default_rng(seed)."""
    manual, predicted = simulate_pairs(20, 2.0, 1.0, seed=7)
    res = ag.icc_lmm(manual, predicted, n_boot=500, seed=3)
    x = np.column_stack([manual, predicted])
    idx = np.random.default_rng(3).integers(0, 20, size=(500, 20))
    boot = np.array([hand_icc(x[rows])["icc1"] for rows in idx])  # one-way ICC(1,1) per resample
    boot = np.clip(boot, 0.0, 1.0)
    assert res.method == "LMM" and res.n_boot == 500
    assert res.icc == pytest.approx(np.median(boot), abs=1e-12)
    assert (res.ci_low, res.ci_high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])), abs=1e-12)
    assert res.icc_point == pytest.approx(hand_icc(x)["icc1"], abs=1e-4)  # the full-data MixedLM fit


def test_lmm_icc_recovers_known_variance_components_without_a_rater_term():
    """var_subject 4, var_residual 1 and a rater offset of 1: without a rater term the offset is
    within-subject variance (E[MS_within] = 1 + 1/2), so the ICC is 4 / 5.5 = 0.727 (a model with
    a rater term would give 0.8). 300 subjects: sampling SD ~0.025, tolerance ~3 SD."""
    manual, predicted = simulate_pairs(300, 4.0, 1.0, seed=101, offset=1.0)
    res = ag.icc_lmm(manual, predicted, n_boot=400, seed=0)
    assert res.icc_point == pytest.approx(4 / 5.5, abs=0.075)
    assert res.icc == pytest.approx(res.icc_point, abs=0.02)
    assert res.var_subject == pytest.approx(4.0, rel=0.25)
    assert res.var_residual == pytest.approx(1.5, rel=0.2)
    assert res.ci_low <= 4 / 5.5 <= res.ci_high
    again = ag.icc_lmm(manual, predicted, n_boot=400, seed=0)
    other = ag.icc_lmm(manual, predicted, n_boot=400, seed=1)
    assert (again.ci_low, again.ci_high) == (res.ci_low, res.ci_high)
    assert (other.ci_low, other.ci_high) != (res.ci_low, res.ci_high)


def test_lmm_bootstrap_interval_coverage():
    """The 95% subject-bootstrap interval covers the true 0.8 in (nearly) all of 6 cohorts."""
    results = [ag.icc_lmm(*simulate_pairs(150, 4.0, 1.0, seed=200 + s, offset=0.0), n_boot=200, seed=s)
               for s in range(6)]
    assert sum(r.ci_low <= 0.8 <= r.ci_high for r in results) >= 5


def test_closed_form_checked_against_mixedlm_refits_on_resamples():
    manual, predicted = simulate_pairs(30, 2.0, 1.0, seed=3)
    res = ag.icc_lmm(manual, predicted, n_boot=200, seed=4, check_resamples=6)
    assert res.check_n == 6
    assert res.check_max_abs_diff < 1e-4
    assert ag.icc_lmm(manual, predicted, n_boot=200, seed=4).check_n == 0


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


def test_bland_altman_parametric_equals_pingouins_plot():
    """The study draws its parametric Bland-Altman with pingouin: the bias and limits pingouin
    plots for (predicted, manual) are the module's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    manual, predicted = simulate_pairs(40, 2.0, 0.5, seed=8)
    ax = pg.plot_blandaltman(predicted, manual)
    ys = sorted({float(line.get_ydata()[0]) for line in ax.lines} - {0.0})
    plt.close("all")
    res = ag.bland_altman(manual, predicted, parametric=True)
    assert ys == pytest.approx(sorted([res.loa_lower, res.bias, res.loa_upper]))


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
    res = ag.linear_regression(predicted, manual)  # x = automated, y = manual
    slope, intercept = np.polyfit(predicted, manual, 1)
    ref = stats.linregress(predicted, manual)
    assert (res.x, res.y) == ("automated", "manual")
    assert res.slope == pytest.approx(slope) and res.intercept == pytest.approx(intercept)
    assert res.r == pytest.approx(ref.rvalue) and res.r2 == pytest.approx(ref.rvalue**2)
    assert res.p_value == pytest.approx(ref.pvalue) and res.stderr == pytest.approx(ref.stderr)
    assert res.intercept_stderr == pytest.approx(ref.intercept_stderr)
    assert res.fit_y == pytest.approx(intercept + slope * res.grid_x)
    assert res.grid_x.min() == pytest.approx(predicted.min()) and res.grid_x.max() == pytest.approx(predicted.max())
    assert res.band_low is None


def test_agreement_regresses_manual_on_automated():
    """manual = 2 + 0.5 x automated, exactly: the study's regression (x automated, y manual)
    has slope 0.5 and intercept 2 (the reverse regression would give slope 2, intercept -4)."""
    automated = np.random.default_rng(21).normal(20.0, 4.0, 30)
    manual = 2.0 + 0.5 * automated
    res = ag.agreement(manual, automated, n_boot=50, parametric=True)
    assert res.regression.slope == pytest.approx(0.5, abs=1e-12)
    assert res.regression.intercept == pytest.approx(2.0, abs=1e-9)
    assert res.regression.r2 == pytest.approx(1.0)
    gp = ag.agreement(manual, automated, n_boot=50, parametric=False).regression
    assert gp.grid_x.min() == pytest.approx(automated.min()) and gp.grid_x.max() == pytest.approx(automated.max())
    np.testing.assert_allclose(gp.fit_y, 2.0 + 0.5 * gp.grid_x, atol=0.05)  # GP mean follows the line


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
def test_choice_tests_the_arms_and_reports_the_differences():
    """The study tests the normality of each arm's values (and Levene between them). Normal arms
    whose paired differences are skewed stay parametric; with ``test_differences`` (the labelled
    variant) the skewed differences make it non-parametric. A skewed arm is non-parametric."""
    rng = np.random.default_rng(13)
    manual = rng.normal(30, 3, 60)
    normal = ag.choose_test(manual, manual + rng.normal(0.5, 0.5, 60))
    assert normal.parametric and normal.decision == "parametric" and not normal.differences_tested
    rng = np.random.default_rng(0)
    manual = rng.normal(30, 3, 60)
    skewed_diff = manual + rng.exponential(0.5, 60) ** 2
    arms = ag.choose_test(manual, skewed_diff)
    strict = ag.choose_test(manual, skewed_diff, test_differences=True)
    assert arms.shapiro_diff_p < 0.001 and min(arms.shapiro_manual_p, arms.shapiro_predicted_p) > 0.05
    assert arms.parametric and not strict.parametric and strict.differences_tested
    skewed_arm = ag.choose_test(np.exp(rng.normal(0, 1, 60)), np.exp(rng.normal(0, 1, 60)))
    assert not skewed_arm.parametric and not skewed_arm.normal


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
    # every ICC is computed whatever the decision; the decision picks which one is ``icc``
    assert par.icc is par.icc3_1 and forced.icc is forced.icc_lmm
    assert par.icc_a1.method == "ICC(A,1)" and par.icc_lmm.icc == pytest.approx(forced.icc.icc)
    # NaN pairs are dropped and counted
    m2, p2 = manual.copy(), predicted.copy()
    m2[0], p2[5] = np.nan, np.inf
    res = ag.agreement(m2, p2, [f"id{i}" for i in range(40)], n_boot=50)
    assert (res.n_pairs, res.n_dropped) == (38, 2) and "id0" not in set(res.data["subject"])
    # every automated value equal: no regression line (noted), every other statistic still computed
    flat = ag.agreement(manual, np.full(40, 3.0), n_boot=50, parametric=True)
    assert flat.regression.note.startswith("not run") and np.isnan(flat.regression.slope)
    assert np.isfinite(flat.bland_altman.bias) and np.isfinite(flat.icc_a1.icc)
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
    tables = ag.agreement_table(pd.DataFrame(rows), "man", "pred", settings=ag.AgreementSettings(n_boot=50))
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
    assert icc.loc["volume_cm3", "icc3_1"] == pytest.approx(result.icc3_1.icc)
    assert icc.loc["volume_cm3", "icc_a1"] == pytest.approx(result.icc_a1.icc)
    assert icc.loc["volume_cm3", "icc_lmm_median"] == pytest.approx(result.icc_lmm.icc)
    assert set(tables.results) == {("volume_cm3", "femoral")}


def test_agreement_or_reason_is_agreement_or_the_reason_there_is_none():
    manual, predicted = simulate_pairs(20, 4.0, 1.0, seed=17)
    pairs = pd.DataFrame({"manual": manual, "predicted": predicted, "subject": [f"s{i}" for i in range(20)]})
    settings = ag.AgreementSettings(n_boot=60, seed=2)
    res = ag.agreement_or_reason(pairs, settings=settings)
    direct = ag.agreement(manual, predicted, pairs["subject"], n_boot=60, seed=2)
    assert res.icc.icc == direct.icc.icc and res.bland_altman == direct.bland_altman
    assert ag.agreement_or_reason(None) == "no paired values"
    assert ag.agreement_or_reason(pairs.iloc[:0]) == "no paired values"
    too_few = ag.agreement_or_reason(pd.DataFrame({"manual": [1.0, 2.0], "predicted": [1.0, np.nan]}))
    assert too_few.startswith("not analysed") and "3" in too_few
    with pytest.raises(ValueError, match="missing"):
        ag.agreement_or_reason(pairs.drop(columns="predicted"))
    with pytest.raises(UserError, match="n_boot"):
        ag.AgreementSettings(n_boot=0)
