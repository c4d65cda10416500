"""Agreement of a biomarker measured from manual masks and from predicted masks (figure 5b,
tables S65-S68), computed the way the study describes it.

Each subject has one value from its manual mask and one from the model's mask, so the data are
*paired*. The study's recipe, for each biomarker and structure:

1. ``choose_test`` (S65): Shapiro-Wilk on each arm (the manual and the automated values: "the
   normality of biomarker metric distributions") and Levene (scipy's default, median-centred)
   between the arms. The analysis is parametric when neither Shapiro-Wilk test nor Levene's test
   rejects at ``alpha``. Shapiro-Wilk on the paired differences is always reported; with
   ``test_differences=True`` it also enters the decision (a stricter, labelled variant: the
   parametric Bland-Altman limits assume normal *differences*).
2. ICC (S66). Parametric: ``icc3_1``, pingouin's ICC(3,1) (two-way mixed, consistency, single
   rater, row ``ICC(C,1)``) with its F-based 95% CI, the coefficient the study names. The study
   calls it "absolute agreement", which is ICC(A,1) (pingouin ``ICC(A,1)``, Shrout & Fleiss'
   ICC(2,1)); ``icc_a1`` reports that beside it, labelled. ICC(3,1) ignores a constant bias
   between the arms, ICC(A,1) is lowered by it.
   Non-parametric: ``icc_lmm``, a statsmodels ``MixedLM`` with a random intercept per subject and
   *no rater term* (``value ~ 1``, groups = subject, REML): ICC = var_subject / (var_subject +
   var_residual). Without a rater term, a systematic difference between the arms is residual
   variance, so this ICC also measures absolute agreement (it is the one-way ICC(1,1)). Bootstrap:
   ``n_boot`` resamples of subjects with replacement (both values of a subject kept together; a
   subject drawn twice counts as two subjects), one ICC per resample; the study reports the
   **median** of the resampled ICCs with their 2.5th / 97.5th percentiles, and so does ``icc``
   here (the full-data fit is ``icc_point``).
   Refitting MixedLM 10,000 times takes minutes per biomarker, so each resample is scored with
   the closed form of that model: with complete pairs the design is a balanced one-way layout,
   whose REML estimates are the ANOVA ones, var_residual = MS_within and var_subject =
   (MS_between - MS_within) / k (REML puts var_subject at 0 when that is negative), so
   ICC = (MS_b - MS_w) / (MS_b + (k - 1) MS_w), floored at 0. ``check_resamples`` refits MixedLM
   on that many of the resamples and reports the largest difference (``mixedlm_check_max_abs_diff``).
3. ``bland_altman``: differences are **predicted - manual** (the study's "model predictions and
   manual annotations"; positive bias = the model measures more). Parametric: mean bias and
   bias +- 1.96 SD (SD with ddof=1), CIs as pingouin's ``plot_blandaltman`` draws them
   (SE(bias) = s / sqrt(n), SE(limit) = sqrt(3 s^2 / n), t(n-1) quantiles). Non-parametric:
   median difference and the 2.5th / 97.5th percentiles of the differences (numpy's linear
   interpolation), with subject-bootstrap percentile CIs.
4. Regression (S67), with the **automated** value as x and the **manual** value as y, as the
   study fits and plots it (figure 5b: manual on the y axis). Parametric: ``linear_regression``
   (``scipy.stats.linregress``). Non-parametric: ``gp_regression``, ``GaussianProcessRegressor``
   with kernel RBF + WhiteKernel, ``alpha=0``, ``normalize_y=True``; mean and a 95% band
   (mean +- 1.96 sd of the prediction, the fitted white noise included) over the observed
   automated range; R2 on the fitted points. (The automated values are z-scored before the fit,
   which only conditions the length-scale search: the model is the same.)
5. ``spearman`` (S68): Spearman's rho with its p value (always reported; the study reports it for
   the non-parametric biomarkers).

``agreement`` runs all of it on one biomarker (every ICC is computed; ``icc`` is the one the
decision picks); ``agreement_table`` on every group of a long table, returning the long tables
of the notebook, with the bootstrap and test settings in one :class:`AgreementSettings` (the
study's by default). ``agreement_or_reason`` is ``agreement`` for a table of pairs that may be
too small, returning the reason instead of raising (what a figure panel shows instead).

Bad input: pairs where either value is NaN or infinite are dropped and counted
(``n_pairs``, ``n_dropped``); mismatched lengths, duplicate subjects, or fewer than 3 remaining
pairs raise ``ValueError``. Intervals (ICC, Bland-Altman, GP band) are 95%; ``alpha`` only sets
the level of the assumption tests.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import pingouin as pg
import statsmodels.formula.api as smf
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, WhiteKernel
from sklearn.metrics import r2_score

from mskseg_lib.data.errors import SettingsError

__all__ = ["TestChoice", "ICCResult", "BlandAltmanResult", "RegressionResult", "SpearmanResult",
           "AgreementResult", "AgreementTables", "paired_values", "choose_test", "icc3_1", "icc_a1",
           "icc_oneway_closed_form", "icc_lmm", "bland_altman", "linear_regression", "gp_regression", "spearman",
           "agreement", "agreement_table", "agreement_or_reason", "AgreementSettings"]

LOA_Z = 1.96  # Bland-Altman limits: bias +- 1.96 SD
PERCENTILES = (2.5, 97.5)  # non-parametric limits and bootstrap intervals
MIN_PAIRS = 3  # Shapiro-Wilk needs 3 values
ICC_C1, ICC_A1, ICC_LMM = "ICC(3,1)", "ICC(A,1)", "LMM"

TEST_COLUMNS = ["shapiro_diff_w", "shapiro_diff_p", "shapiro_manual_w", "shapiro_manual_p",
                "shapiro_predicted_w", "shapiro_predicted_p", "levene_stat", "levene_p", "alpha",
                "differences_tested", "normal", "equal_variance", "parametric", "decision"]
ICC_COLUMNS = ["method", "icc", "ci_low", "ci_high", "ci_method",
               "icc3_1", "icc3_1_ci_low", "icc3_1_ci_high", "f_stat", "df1", "df2", "p_value",
               "icc_a1", "icc_a1_ci_low", "icc_a1_ci_high",
               "icc_lmm_median", "icc_lmm_ci_low", "icc_lmm_ci_high", "icc_lmm_point", "n_boot",
               "mixedlm_check_n", "mixedlm_check_max_abs_diff", "var_subject", "var_residual"]
BA_COLUMNS = ["method", "bias", "sd", "loa_lower", "loa_upper", "bias_ci_low", "bias_ci_high",
              "loa_lower_ci_low", "loa_lower_ci_high", "loa_upper_ci_low", "loa_upper_ci_high", "ci_method"]
REGRESSION_COLUMNS = ["method", "x", "y", "slope", "intercept", "r", "r2", "p_value", "stderr", "intercept_stderr",
                      "kernel"]
SPEARMAN_COLUMNS = ["rho", "p_value"]
X_AUTOMATED, Y_MANUAL = "automated", "manual"


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class TestChoice:
    """Assumption tests and the parametric / non-parametric decision (table S65)."""

    __test__ = False  # not a pytest test class despite its name

    shapiro_diff_w: float
    shapiro_diff_p: float
    shapiro_manual_w: float
    shapiro_manual_p: float
    shapiro_predicted_w: float
    shapiro_predicted_p: float
    levene_stat: float
    levene_p: float
    alpha: float
    differences_tested: bool  # did Shapiro-Wilk on the differences enter the decision?
    normal: bool  # no Shapiro-Wilk test that enters the decision rejected normality
    equal_variance: bool  # Levene did not reject equal variances
    parametric: bool

    @property
    def decision(self) -> str:
        return "parametric" if self.parametric else "non-parametric"


@dataclass(frozen=True)
class ICCResult:
    """An ICC with its 95% interval (table S66).

    ``method``: ``"ICC(3,1)"``, ``"ICC(A,1)"`` (both pingouin, F-based CI) or ``"LMM"`` (the
    mixed-model ICC: ``icc`` is the bootstrap median, ``icc_point`` the full-data fit).
    """

    method: str
    icc: float
    ci_low: float
    ci_high: float
    ci_method: str
    n_subjects: int
    n_raters: int
    var_subject: float
    var_residual: float
    f_stat: float = np.nan  # pingouin ICCs only
    df1: float = np.nan
    df2: float = np.nan
    p_value: float = np.nan
    icc_point: float = np.nan  # LMM only: the full-data MixedLM fit
    n_boot: int = 0
    check_n: int = 0  # LMM only: resamples refitted with MixedLM to check the closed form
    check_max_abs_diff: float = np.nan
    note: str = ""


@dataclass(frozen=True)
class BlandAltmanResult:
    """Bias and 95% limits of agreement of predicted - manual, each with a 95% CI."""

    method: str  # "parametric" (mean, +-1.96 SD) or "non-parametric" (median, percentiles)
    bias: float
    sd: float  # SD of the differences (ddof=1); reported for both methods
    loa_lower: float
    loa_upper: float
    bias_ci_low: float
    bias_ci_high: float
    loa_lower_ci_low: float
    loa_lower_ci_high: float
    loa_upper_ci_low: float
    loa_upper_ci_high: float
    ci_method: str
    n_boot: int = 0


@dataclass(frozen=True)
class RegressionResult:
    """Manual (y) on automated (x): a line (``"linear"``) or a Gaussian process (``"gaussian_process"``).

    ``grid_x``/``fit_y`` draw the fit over the automated range; ``band_low``/``band_high`` the
    GP's 95% band (``None`` for the line). Slope, intercept, p and standard errors are NaN for
    the GP, whose ``r`` is the correlation of fitted and observed values.
    """

    method: str
    slope: float
    intercept: float
    r: float
    r2: float
    p_value: float
    stderr: float
    intercept_stderr: float
    grid_x: np.ndarray
    fit_y: np.ndarray
    band_low: np.ndarray | None = None
    band_high: np.ndarray | None = None
    kernel: str = ""
    x: str = X_AUTOMATED
    y: str = Y_MANUAL
    note: str = ""


@dataclass(frozen=True)
class SpearmanResult:
    rho: float
    p_value: float


@dataclass(frozen=True)
class AgreementResult:
    """Everything ``agreement`` computed for one biomarker. ``data``: subject, manual,
    predicted, mean, difference (predicted - manual) of the pairs that entered.

    ``icc`` is the ICC the decision picks (ICC(3,1) when parametric, the LMM ICC when not);
    ``icc3_1``, ``icc_a1`` and ``icc_lmm`` are all three, always computed.
    """

    n_pairs: int
    n_dropped: int
    test_choice: TestChoice
    icc: ICCResult
    bland_altman: BlandAltmanResult
    regression: RegressionResult
    spearman: SpearmanResult
    data: pd.DataFrame = field(repr=False)
    icc3_1: ICCResult | None = None
    icc_a1: ICCResult | None = None
    icc_lmm: ICCResult | None = None

    @property
    def parametric(self) -> bool:
        return self.test_choice.parametric


@dataclass
class AgreementTables:
    """Long tables, one row per group: ``test_choice`` (S65), ``icc`` (S66), ``regression`` (S67),
    ``spearman`` (S68), ``bland_altman``; ``results`` keeps each group's ``AgreementResult``."""

    test_choice: pd.DataFrame
    icc: pd.DataFrame
    bland_altman: pd.DataFrame
    regression: pd.DataFrame
    spearman: pd.DataFrame
    results: dict[tuple, AgreementResult]


# ----------------------------------------------------------------------------- input
def paired_values(manual: ArrayLike, predicted: ArrayLike,
                  subjects: Sequence[Any] | None = None) -> tuple[pd.DataFrame, int]:
    """Clean pairs as a table and the number of pairs dropped because either value was NaN or infinite.

    Parameters
    ----------
    manual, predicted : array-like (n,)
        The biomarker from manual and from predicted masks, same unit, one value per subject.
    subjects : sequence, optional
        Subject identifiers (unique); default ``s0 .. s<n-1>``.

    Returns
    -------
    pairs : DataFrame
        ``subject``, ``manual``, ``predicted``, ``mean`` and ``difference`` (predicted - manual) of
        the finite pairs.
    n_dropped : int

    Raises ValueError for mismatched lengths, duplicate subjects or < 3 remaining pairs.
    """
    m = np.asarray(pd.to_numeric(pd.Series(np.asarray(manual, dtype=object).ravel()), errors="coerce"), float)
    p = np.asarray(pd.to_numeric(pd.Series(np.asarray(predicted, dtype=object).ravel()), errors="coerce"), float)
    if len(m) != len(p):
        raise ValueError(f"manual ({len(m)} values) and predicted ({len(p)} values) differ in length")
    subj = np.array([f"s{i}" for i in range(len(m))], dtype=object) if subjects is None \
        else np.asarray(list(subjects), dtype=object)
    if len(subj) != len(m):
        raise ValueError(f"subjects ({len(subj)}) and values ({len(m)}) differ in length")
    if pd.Series(subj).duplicated().any():
        dup = pd.Series(subj)[pd.Series(subj).duplicated()].iloc[0]
        raise ValueError(f"subject {dup!r} appears more than once: pass one (manual, predicted) pair per subject")
    ok = np.isfinite(m) & np.isfinite(p)
    n_dropped = int((~ok).sum())
    if ok.sum() < MIN_PAIRS:
        raise ValueError(f"need >= {MIN_PAIRS} finite (manual, predicted) pairs, have {int(ok.sum())} "
                         f"({n_dropped} dropped for NaN/inf)")
    data = pd.DataFrame({"subject": subj[ok], "manual": m[ok], "predicted": p[ok]})
    data["mean"] = (data["manual"] + data["predicted"]) / 2
    data["difference"] = data["predicted"] - data["manual"]
    return data.reset_index(drop=True), n_dropped


def _boot_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) subject indices drawn with replacement (row b = resample b)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


# ----------------------------------------------------------------------------- 1. the choice
def _shapiro(x: np.ndarray) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "range zero": constant values, W = p = 1 (nothing to reject)
        res = stats.shapiro(x)
    return float(res.statistic), float(res.pvalue)


def choose_test(manual: ArrayLike, predicted: ArrayLike, alpha: float = 0.05,
                test_differences: bool = False) -> TestChoice:
    """Shapiro-Wilk on each arm and Levene (median-centred) between them, at ``alpha``.

    Parametric when none of them rejects (the study's rule). Shapiro-Wilk on the differences is
    reported, and enters the decision only with ``test_differences=True`` (labelled variant).

    Parameters
    ----------
    manual, predicted : array-like (n,)
        Clean pairs (n >= 3).
    alpha : float
        Level of the tests.
    test_differences : bool
        Let Shapiro-Wilk on the differences decide too.

    Returns
    -------
    TestChoice
        Each test's statistic and p value, ``normal``, ``equal_variance``, ``parametric`` and the
        ``decision`` in words (table S65).
    """
    m, p = np.asarray(manual, float), np.asarray(predicted, float)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    d = p - m
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.max(np.abs(np.r_[m, p])))):
        d = np.full_like(d, np.mean(d))  # constant up to rounding (e.g. predicted = manual + 2)
    wd, pd_ = _shapiro(d)
    wm, pm = _shapiro(m)
    wp, pp = _shapiro(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lev = stats.levene(m, p, center="median")
    lev_stat, lev_p = float(lev.statistic), float(lev.pvalue)
    if not np.isfinite(lev_p):  # both arms constant: no evidence of unequal variances
        lev_p = 1.0
    tested = [pm, pp, pd_] if test_differences else [pm, pp]
    normal = bool(min(tested) >= alpha)
    equal_var = bool(lev_p >= alpha)
    return TestChoice(wd, pd_, wm, pm, wp, pp, lev_stat, lev_p, float(alpha), bool(test_differences), normal,
                      equal_var, normal and equal_var)


# ----------------------------------------------------------------------------- 2. ICC
@contextmanager
def _pingouin_full_precision() -> Iterator[None]:
    """pingouin rounds the CI95 column to 2 decimals by default; switch its rounding options off."""
    saved = dict(pg.options)
    for key in [k for k in pg.options if str(k).startswith("round.")]:
        del pg.options[key]
    pg.options["round"] = None
    try:
        yield
    finally:
        pg.options.clear()
        pg.options.update(saved)


def _as_matrix(values: pd.DataFrame | ArrayLike) -> np.ndarray:
    x = np.asarray(values.to_numpy() if isinstance(values, pd.DataFrame) else values, float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"need a targets x raters matrix with >= 2 of each, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("the targets x raters matrix must be complete (no NaN/inf)")
    return x


def _anova_components(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MS_subjects and MS_error of two-way ANOVA without interaction, for (..., n, k) arrays."""
    n, k = x.shape[-2:]
    grand = x.mean(axis=(-2, -1), keepdims=True)
    rows = x.mean(axis=-1, keepdims=True)
    cols = x.mean(axis=-2, keepdims=True)
    ss_rows = k * ((rows - grand) ** 2).sum(axis=(-2, -1))
    ss_err = ((x - rows - cols + grand) ** 2).sum(axis=(-2, -1))
    return ss_rows / (n - 1), ss_err / ((n - 1) * (k - 1))


def _oneway_components(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MS_between and MS_within of the one-way layout (subjects only), for (..., n, k) arrays."""
    n, k = x.shape[-2:]
    grand = x.mean(axis=(-2, -1), keepdims=True)
    rows = x.mean(axis=-1, keepdims=True)
    ms_between = k * ((rows - grand) ** 2).sum(axis=(-2, -1)) / (n - 1)
    ms_within = ((x - rows) ** 2).sum(axis=(-2, -1)) / (n * (k - 1))
    return ms_between, ms_within


def _pingouin_icc(values: pd.DataFrame | ArrayLike, rows: Sequence[str], method: str) -> ICCResult:
    x = _as_matrix(values)
    n, k = x.shape
    long = pd.DataFrame({"target": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n),
                         "value": x.ravel()})
    with _pingouin_full_precision(), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # zero error variance: F = inf, a CI of (1, 1)
        table = pg.intraclass_corr(long, targets="target", raters="rater", ratings="value").set_index("Type")
    row = table.loc[next(r for r in rows if r in table.index)]
    ci = np.asarray(row["CI95" if "CI95" in table.columns else "CI95%"], float)
    if np.isinf(row["F"]) and not np.isfinite(ci).all():
        ci = np.array([1.0, 1.0])  # no error variance: perfect agreement, a degenerate interval
    ms_rows, ms_err = _anova_components(x)
    return ICCResult(method, float(row["ICC"]), float(ci[0]), float(ci[1]), "F distribution (McGraw & Wong)",
                     n, k, float((ms_rows - ms_err) / k), float(ms_err), float(row["F"]), float(row["df1"]),
                     float(row["df2"]), float(row["pval"]))


def icc3_1(values: pd.DataFrame | ArrayLike) -> ICCResult:
    """ICC(3,1) (two-way mixed, consistency, single rater) via pingouin: the study's parametric ICC.

    Parameters
    ----------
    values : (n_targets, k_raters) array or DataFrame
        Complete matrix, n >= 2, k >= 2 (here: subjects x [manual, predicted]).

    Returns
    -------
    ICCResult
        ``icc`` with its F-based 95% CI at full precision, F statistic, df and p, and the two-way
        ANOVA variance components.
    """
    return _pingouin_icc(values, ("ICC(C,1)", "ICC3"), ICC_C1)


def icc_a1(values: pd.DataFrame | ArrayLike) -> ICCResult:
    """ICC(A,1) (two-way, absolute agreement, single rater; Shrout & Fleiss' ICC(2,1)) via pingouin.

    The coefficient the study's words ("absolute agreement") describe: a constant bias between
    raters lowers it; it leaves ICC(3,1) unchanged.

    Parameters
    ----------
    values : (n_targets, k_raters) array or DataFrame
        Complete matrix, n >= 2, k >= 2.

    Returns
    -------
    ICCResult
        ``icc`` with its 95% CI, F statistic, df and p.
    """
    return _pingouin_icc(values, ("ICC(A,1)", "ICC2"), ICC_A1)


def icc_oneway_closed_form(x: np.ndarray) -> np.ndarray:
    """ICC of ``value ~ 1 + (1 | subject)`` fitted by REML to balanced subjects x measurements arrays.

    With every subject measured k times the REML estimates are the one-way ANOVA ones
    (var_residual = MS_w, var_subject = (MS_b - MS_w) / k), so
    ICC = (MS_b - MS_w) / (MS_b + (k - 1) MS_w); REML puts var_subject at 0 when MS_b < MS_w,
    hence the floor at 0.

    Parameters
    ----------
    x : (..., n, k) ndarray
        One or many (e.g. bootstrap resamples) subjects x measurements matrices.

    Returns
    -------
    (...) ndarray
        The ICC of each matrix in [0, 1]; NaN when every value is equal (0 / 0).
    """
    x = np.asarray(x, float)
    k = x.shape[-1]
    ms_b, ms_w = _oneway_components(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        icc = (ms_b - ms_w) / (ms_b + (k - 1) * ms_w)
    return np.where(np.isfinite(icc), np.clip(icc, 0.0, 1.0), np.nan)


def _fit_lmm(x: np.ndarray) -> tuple[float, float]:
    """(var_subject, var_residual) of ``value ~ 1`` with a random intercept per row of ``x``
    (each row its own subject; no rater term), REML, statsmodels MixedLM."""
    n, k = x.shape
    long = pd.DataFrame({"subject": np.repeat(np.arange(n), k), "value": x.ravel()})
    model = smf.mixedlm("value ~ 1", long, groups=long["subject"])
    errors = []
    for method in ("lbfgs", "powell"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # boundary / convergence warnings
                res = model.fit(reml=True, method=method)
        except (np.linalg.LinAlgError, ValueError) as exc:
            errors.append(f"{method}: {exc}")
            continue
        if res.converged:
            return float(res.cov_re.iloc[0, 0]), float(res.scale)
        errors.append(f"{method}: not converged")
    raise RuntimeError("; ".join(errors))


def _lmm_icc(x: np.ndarray) -> float:
    var_s, var_r = _fit_lmm(x)
    return var_s / (var_s + var_r) if var_s + var_r > 0 else np.nan


def icc_lmm(manual: ArrayLike, predicted: ArrayLike, *, n_boot: int = 10_000, seed: int = 0,
            check_resamples: int = 0) -> ICCResult:
    """The study's non-parametric ICC: MixedLM ``value ~ 1`` with a random intercept per subject (no
    rater term), subject bootstrap, median and 2.5/97.5 percentiles reported.

    Resamples are scored with :func:`icc_oneway_closed_form`; the first ``check_resamples`` of
    them are also refitted with MixedLM and the largest absolute difference is reported
    (``check_max_abs_diff``; resamples on which MixedLM fails are left out of the check).

    Parameters
    ----------
    manual, predicted : array-like (n,)
        Clean pairs, one subject each.
    n_boot : int
        Resamples (subjects drawn with replacement, pairs kept; a subject drawn twice counts as
        two subjects).
    seed : int
        Seed of the resampling.
    check_resamples : int
        Resamples refitted with statsmodels MixedLM to check the closed form.

    Returns
    -------
    ICCResult
        ``icc``: median of the resampled ICCs, ``ci_low``/``ci_high`` their 2.5/97.5 percentiles,
        ``icc_point``: the full-data MixedLM fit (the closed form, with a ``note``, if MixedLM
        fails), variance components, ``check_n``, ``check_max_abs_diff``.
    """
    x = np.column_stack([np.asarray(manual, float), np.asarray(predicted, float)])
    n, k = x.shape
    notes = []
    ms_b, ms_w = _oneway_components(x)
    try:
        var_s, var_r = _fit_lmm(x)
        point = var_s / (var_s + var_r) if var_s + var_r > 0 else np.nan
    except RuntimeError as exc:
        var_s, var_r = max(float((ms_b - ms_w) / k), 0.0), float(ms_w)
        point = float(icc_oneway_closed_form(x))
        notes.append(f"MixedLM failed ({exc}); balanced-design REML closed form used")
    idx = _boot_indices(n, n_boot, seed)
    boot = np.concatenate([icc_oneway_closed_form(x[chunk]) for chunk in np.array_split(idx, max(1, n_boot // 1000))])
    diffs = []
    for rows, closed in zip(idx[:max(0, int(check_resamples))], boot):
        try:
            refit = _lmm_icc(x[rows])
        except RuntimeError:
            continue
        if np.isfinite(refit) and np.isfinite(closed):
            diffs.append(abs(refit - closed))
    finite = boot[np.isfinite(boot)]
    lo, hi = np.percentile(finite, PERCENTILES) if finite.size else (np.nan, np.nan)
    med = float(np.median(finite)) if finite.size else np.nan
    if finite.size < n_boot:
        notes.append(f"{n_boot - finite.size} degenerate resamples (all values equal) left out")
    return ICCResult(ICC_LMM, med, float(lo), float(hi), "subject bootstrap: median, 2.5/97.5 percentiles", n, k,
                     float(var_s), float(var_r), icc_point=float(point), n_boot=int(n_boot), check_n=len(diffs),
                     check_max_abs_diff=float(max(diffs)) if diffs else np.nan, note="; ".join(notes))


# ----------------------------------------------------------------------------- 3. Bland-Altman
def bland_altman(manual: ArrayLike, predicted: ArrayLike, *, parametric: bool = True, n_boot: int = 10_000,
                 seed: int = 0) -> BlandAltmanResult:
    """Bias and 95% limits of agreement of ``predicted - manual``.

    Parametric: mean +- 1.96 SD, CIs from Bland & Altman's (1999) approximate SEs with t(n-1).
    Non-parametric: median and 2.5/97.5 percentiles, subject-bootstrap percentile CIs.

    Parameters
    ----------
    manual, predicted : array-like (n,)
        Clean pairs, same unit.
    parametric : bool
        Which of the two.
    n_boot, seed : int
        Bootstrap resamples and seed (non-parametric CIs only).

    Returns
    -------
    BlandAltmanResult
        ``bias``, ``sd``, ``loa_lower``, ``loa_upper`` (the biomarker's unit) with the 95% CI of
        each, ``method`` and ``ci_method``.
    """
    d = np.asarray(predicted, float) - np.asarray(manual, float)
    n = len(d)
    sd = float(np.std(d, ddof=1))
    if parametric:
        bias = float(np.mean(d))
        lower, upper = bias - LOA_Z * sd, bias + LOA_Z * sd
        t = float(stats.t.ppf(0.975, n - 1))
        se_bias, se_loa = sd / np.sqrt(n), np.sqrt(3 * sd**2 / n)
        return BlandAltmanResult("parametric", bias, sd, lower, upper, float(bias - t * se_bias),
                                 float(bias + t * se_bias), float(lower - t * se_loa), float(lower + t * se_loa),
                                 float(upper - t * se_loa), float(upper + t * se_loa),
                                 "Bland & Altman 1999 approximate SE, t(n-1)")
    bias = float(np.median(d))
    lower, upper = (float(v) for v in np.percentile(d, PERCENTILES))
    boot = d[_boot_indices(n, n_boot, seed)]
    ci = {name: np.percentile(values, PERCENTILES) for name, values in
          (("bias", np.median(boot, axis=1)), ("lower", np.percentile(boot, PERCENTILES[0], axis=1)),
           ("upper", np.percentile(boot, PERCENTILES[1], axis=1)))}
    return BlandAltmanResult("non-parametric", bias, sd, lower, upper, *map(float, ci["bias"]),
                             *map(float, ci["lower"]), *map(float, ci["upper"]), "subject bootstrap percentile",
                             n_boot=int(n_boot))


# ----------------------------------------------------------------------------- 4. regression
def _grid(x: np.ndarray, n_grid: int) -> np.ndarray:
    return np.linspace(float(np.min(x)), float(np.max(x)), n_grid)


def linear_regression(automated: ArrayLike, manual: ArrayLike, n_grid: int = 100) -> RegressionResult:
    """Least-squares line manual = intercept + slope * automated (``scipy.stats.linregress``).

    The automated (predicted-mask) value is x, the manual value y, as in the study.

    Parameters
    ----------
    automated, manual : array-like (n,)
        Clean pairs; the automated values must not all be equal.
    n_grid : int
        Points of the drawn line over the automated range.

    Returns
    -------
    RegressionResult
        ``slope``, ``intercept``, ``r``, ``r2``, ``p_value``, ``stderr``, ``intercept_stderr``,
        and ``grid_x``/``fit_y`` (n_grid,) for drawing; no band.
    """
    x, y = np.asarray(automated, float), np.asarray(manual, float)
    if np.ptp(x) == 0:
        raise ValueError("linear regression needs automated values that vary")
    res = stats.linregress(x, y)
    grid = _grid(x, n_grid)
    return RegressionResult("linear", float(res.slope), float(res.intercept), float(res.rvalue),
                            float(res.rvalue**2), float(res.pvalue), float(res.stderr),
                            float(res.intercept_stderr), grid, res.intercept + res.slope * grid)


def gp_regression(automated: ArrayLike, manual: ArrayLike, *, n_grid: int = 100, seed: int = 0) -> RegressionResult:
    """Gaussian-process regression of the manual value (y) on the automated value (x).

    Kernel RBF + WhiteKernel, ``alpha=0``, ``normalize_y=True`` (the study's settings). The band is
    mean +- 1.96 sd of the prediction (fitted white noise included) on a grid over the observed
    automated range; R2 is on the fitted points. The automated values are z-scored before fitting
    so the RBF length-scale search starts at the data's scale whatever the unit.

    Parameters
    ----------
    automated, manual : array-like (n,)
        Clean pairs.
    n_grid : int
        Grid points over the automated range.
    seed : int
        Seed of the optimiser's restarts.

    Returns
    -------
    RegressionResult
        ``r2``, ``kernel`` (fitted), ``grid_x``/``fit_y``/``band_low``/``band_high`` (n_grid,);
        slope, intercept and p are NaN.
    """
    x, y = np.asarray(automated, float), np.asarray(manual, float)
    centre, scale = float(np.mean(x)), float(np.std(x))
    if scale == 0:
        raise ValueError("GP regression needs automated values that vary")
    z = ((x - centre) / scale)[:, None]
    kernel = RBF(length_scale=1.0, length_scale_bounds=(1e-2, 1e3)) + WhiteKernel(0.1, (1e-5, 1e1))
    gp = GaussianProcessRegressor(kernel=kernel, alpha=0.0, normalize_y=True, n_restarts_optimizer=3,
                                  random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a bound reached: the fit is still usable
        gp.fit(z, y)
    grid = _grid(x, n_grid)
    mean, sd = gp.predict(((grid - centre) / scale)[:, None], return_std=True)
    fitted = gp.predict(z)
    r2 = float(r2_score(y, fitted)) if np.ptp(y) > 0 else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        r = float(np.corrcoef(y, fitted)[0, 1]) if np.ptp(y) > 0 and np.ptp(fitted) > 0 else np.nan
    return RegressionResult("gaussian_process", np.nan, np.nan, r, r2, np.nan, np.nan, np.nan, grid, mean,
                            mean - LOA_Z * sd, mean + LOA_Z * sd, str(gp.kernel_))


# ----------------------------------------------------------------------------- 5. Spearman
def spearman(manual: ArrayLike, predicted: ArrayLike) -> SpearmanResult:
    """Spearman's rank correlation (scipy).

    Parameters
    ----------
    manual, predicted : array-like (n,)
        Clean pairs.

    Returns
    -------
    SpearmanResult
        ``rho`` and its two-sided ``p_value``; NaN when either arm is constant.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input
        res = stats.spearmanr(np.asarray(manual, float), np.asarray(predicted, float))
    return SpearmanResult(float(res.statistic), float(res.pvalue))


# ----------------------------------------------------------------------------- entry points
@dataclass(frozen=True)
class AgreementSettings:
    """How agreement is computed; the defaults are the study's.

    ``n_boot``: subject-bootstrap resamples (LMM ICC, non-parametric Bland-Altman CIs; the study:
    10,000); ``seed``: their seed (every group uses the same one); ``alpha``: level of the
    Shapiro-Wilk and Levene tests that choose the parametric path; ``test_differences``: the
    labelled variant in which Shapiro-Wilk on the differences also decides; ``check_resamples``:
    resamples refitted with statsmodels MixedLM to check the closed-form ICC (0: none).
    """

    n_boot: int = 10_000
    seed: int = 0
    alpha: float = 0.05
    test_differences: bool = False
    check_resamples: int = 0

    def __post_init__(self) -> None:
        if self.n_boot < 1 or self.check_resamples < 0 or not 0 < self.alpha < 1:
            raise SettingsError(f"agreement settings out of range: n_boot >= 1, check_resamples >= 0 and "
                             f"0 < alpha < 1 needed, got {self}")


def agreement(manual: Sequence[float], predicted: Sequence[float], subjects: Sequence[str] | None = None, *,
              n_boot: int = 10_000, seed: int = 0, alpha: float = 0.05, parametric: bool | None = None,
              test_differences: bool = False, check_resamples: int = 0) -> AgreementResult:
    """Agreement of one biomarker between manual and predicted masks (paired per subject).

    Parameters
    ----------
    manual, predicted : sequence of float (n,)
        One value per subject from each mask, same unit; NaN/inf pairs are dropped and counted.
    subjects : sequence of str, optional
        Subject identifiers (unique).
    n_boot, seed : int
        Subject-bootstrap resamples (LMM ICC, non-parametric Bland-Altman) and their seed; both
        bootstraps use it, so results are reproducible.
    alpha : float
        Level of the assumption tests.
    parametric : bool, optional
        None lets ``choose_test`` decide; True/False forces a path (the tests are still reported).
    test_differences : bool
        Shapiro-Wilk on the differences also decides (labelled variant).
    check_resamples : int
        See :func:`icc_lmm`.

    Returns
    -------
    AgreementResult
        ``n_pairs``, ``n_dropped``, ``test_choice``, ``icc`` (the decision's: ICC(3,1) or the LMM
        ICC), ``bland_altman``, ``regression``, ``spearman``, ``data`` (the clean pairs), and
        every ICC (``icc3_1``, ``icc_a1``, ``icc_lmm``).
    """
    data, n_dropped = paired_values(manual, predicted, subjects)
    m, p = data["manual"].to_numpy(), data["predicted"].to_numpy()
    choice = choose_test(m, p, alpha, test_differences=test_differences)
    if parametric is not None:
        choice = replace(choice, parametric=bool(parametric))
    pair_matrix = np.column_stack([m, p])
    c1, a1 = icc3_1(pair_matrix), icc_a1(pair_matrix)
    lmm = icc_lmm(m, p, n_boot=n_boot, seed=seed, check_resamples=check_resamples)
    icc = c1 if choice.parametric else lmm
    try:
        regression = linear_regression(p, m) if choice.parametric else gp_regression(p, m, seed=seed)
    except ValueError as exc:  # e.g. every automated value equal: no regression, the rest still stands
        regression = RegressionResult("linear" if choice.parametric else "gaussian_process", *[np.nan] * 7,
                                      np.zeros(0), np.zeros(0), note=f"not run: {exc}")
    ba = bland_altman(m, p, parametric=choice.parametric, n_boot=n_boot, seed=seed)
    return AgreementResult(len(data), n_dropped, choice, icc, ba, regression, spearman(m, p), data,
                           icc3_1=c1, icc_a1=a1, icc_lmm=lmm)


def _icc_row(result: AgreementResult) -> dict[str, Any]:
    icc, c1, a1, lmm = result.icc, result.icc3_1, result.icc_a1, result.icc_lmm
    return {"method": icc.method, "icc": icc.icc, "ci_low": icc.ci_low, "ci_high": icc.ci_high,
            "ci_method": icc.ci_method,
            "icc3_1": c1.icc, "icc3_1_ci_low": c1.ci_low, "icc3_1_ci_high": c1.ci_high, "f_stat": c1.f_stat,
            "df1": c1.df1, "df2": c1.df2, "p_value": c1.p_value,
            "icc_a1": a1.icc, "icc_a1_ci_low": a1.ci_low, "icc_a1_ci_high": a1.ci_high,
            "icc_lmm_median": lmm.icc, "icc_lmm_ci_low": lmm.ci_low, "icc_lmm_ci_high": lmm.ci_high,
            "icc_lmm_point": lmm.icc_point, "n_boot": lmm.n_boot, "mixedlm_check_n": lmm.check_n,
            "mixedlm_check_max_abs_diff": lmm.check_max_abs_diff,
            "var_subject": icc.var_subject, "var_residual": icc.var_residual}


def _rows_of(result: AgreementResult) -> dict[str, dict]:
    """One flat row per table for a result."""
    reg = {k: v for k, v in asdict(result.regression).items() if k in REGRESSION_COLUMNS}
    return {"test_choice": {**asdict(result.test_choice), "decision": result.test_choice.decision},
            "icc": _icc_row(result),
            "bland_altman": {k: v for k, v in asdict(result.bland_altman).items() if k in BA_COLUMNS},
            "regression": reg, "spearman": asdict(result.spearman)}


def agreement_or_reason(pairs: pd.DataFrame | None, value_manual: str = "manual", value_predicted: str = "predicted",
                        subject_col: str = "subject",
                        settings: AgreementSettings = AgreementSettings()) -> AgreementResult | str:
    """``agreement`` of a table of pairs, or the reason there is none (for a placeholder panel).

    Parameters
    ----------
    pairs : DataFrame or None
        One row per subject with the manual and predicted values (and, optionally, ``subject_col``).
    value_manual, value_predicted, subject_col : str
        Column names.
    settings : AgreementSettings
        Bootstrap and test settings.

    Returns
    -------
    AgreementResult, or str
        The result, or one line saying why there is none (no pairs, fewer than three clean pairs...).
    """
    if pairs is None or pairs.empty:
        return "no paired values"
    missing = {value_manual, value_predicted} - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs need columns {value_manual!r} and {value_predicted!r}, missing {sorted(missing)}")
    subjects = pairs[subject_col].to_numpy() if subject_col in pairs.columns else None
    try:
        return agreement(pairs[value_manual].to_numpy(), pairs[value_predicted].to_numpy(), subjects,
                         **asdict(settings))
    except ValueError as exc:
        return f"not analysed:\n{exc}"


def agreement_table(df: pd.DataFrame, value_manual: str, value_predicted: str,
                    by: Sequence[str] = ("biomarker", "structure"), subject_col: str = "subject_id",
                    settings: AgreementSettings = AgreementSettings()) -> AgreementTables:
    """``agreement`` for every group of ``by`` in a long table (one row per subject and group).

    Parameters
    ----------
    df : DataFrame
        Long table: one row per subject and group, with the ``by`` columns, ``subject_col`` and
        the two value columns (same unit).
    value_manual, value_predicted : str
        Columns of the manual-mask and predicted-mask values.
    by : sequence of str
        Group columns (e.g. dataset, biomarker, structure); empty: one group.
    subject_col : str
        Subject identifier (unique within a group).
    settings : AgreementSettings
        Bootstrap and test settings (the study's by default); every group uses the same seed.

    Returns
    -------
    AgreementTables
        Long tables ``test_choice`` (S65), ``icc`` (S66), ``regression`` (S67), ``spearman``
        (S68) and ``bland_altman``, each starting with the ``by`` columns, ``n_pairs``,
        ``n_dropped`` and ending with ``note``; a group that cannot be analysed (e.g. < 3 pairs)
        keeps a row of NaN with the reason in ``note``. ``results`` maps each analysed group's key
        tuple to its ``AgreementResult``.
    """
    by = list(by)
    for col in [*by, value_manual, value_predicted, subject_col]:
        if col not in df.columns:
            raise ValueError(f"missing column {col!r}; available columns: {list(df.columns)}")
    columns = {"test_choice": TEST_COLUMNS, "icc": ICC_COLUMNS, "bland_altman": BA_COLUMNS,
               "regression": REGRESSION_COLUMNS, "spearman": SPEARMAN_COLUMNS}
    rows: dict[str, list[dict]] = {name: [] for name in columns}
    results: dict[tuple, AgreementResult] = {}
    for key, sub in df.groupby(by, sort=True, dropna=False) if by else [((), df)]:
        key = key if isinstance(key, tuple) else (key,)
        head = dict(zip(by, key))
        try:
            res = agreement(sub[value_manual].to_numpy(), sub[value_predicted].to_numpy(),
                            sub[subject_col].to_numpy(), **asdict(settings))
        except ValueError as exc:
            n_ok = int((pd.to_numeric(sub[value_manual], errors="coerce").notna()
                        & pd.to_numeric(sub[value_predicted], errors="coerce").notna()).sum())
            for name in columns:
                rows[name].append({**head, "n_pairs": n_ok, "n_dropped": len(sub) - n_ok, "note": f"not run: {exc}"})
            continue
        results[key] = res
        for name, row in _rows_of(res).items():
            note = {"icc": res.icc_lmm.note, "regression": res.regression.note}.get(name, "")
            rows[name].append({**head, "n_pairs": res.n_pairs, "n_dropped": res.n_dropped, **row, "note": note})
    tables = {name: pd.DataFrame(rows[name], columns=[*by, "n_pairs", "n_dropped", *cols, "note"])
              for name, cols in columns.items()}
    return AgreementTables(**tables, results=results)
