"""Agreement of a biomarker measured from manual masks and from predicted masks (figure 5b,
tables S65-S68).

Each subject has one value from its manual mask and one from the model's mask, so the data are
*paired*. The study's recipe, for each biomarker and structure:

1. ``choose_test``: Shapiro-Wilk on the paired differences *and* on each arm, plus Levene
   (Brown-Forsythe, median-centred) between the arms. The analysis is parametric only when all
   three Shapiro-Wilk tests and Levene's test are non-significant at ``alpha``: the ICC and the
   regression assume normal values in each arm, the Bland-Altman limits assume normal
   differences, and one decision governs all of them. (Levene treats the arms as independent
   samples although they are paired; it is used as in the study, as a screen only.)
2. ``icc3_1`` (parametric): ICC(3,1), two-way mixed, consistency, single rater (pingouin
   ``intraclass_corr``, row ``ICC(C,1)``, called ``ICC3`` in older pingouin) with its exact
   F-based 95% CI. ``icc_lmm`` (non-parametric): a linear mixed model ``value ~ rater`` with a
   random intercept per subject (statsmodels ``MixedLM``, REML), ICC = var_subject /
   (var_subject + var_residual), with a subject bootstrap (subjects resampled with replacement,
   both of their values kept; median and 2.5/97.5 percentiles reported).
   With complete pairs the design is balanced, so the REML variance components equal the ANOVA
   ones (var_residual = MS_error, var_subject = (MS_subjects - MS_error) / k, truncated at 0)
   and the LMM ICC *equals* ICC(3,1) (or 0 when that is negative). The two paths differ in the
   interval: F distribution vs subject bootstrap, which assumes no normality. The bootstrap
   therefore uses that exact closed form per resample (10,000 MixedLM fits would take ~20 min
   per biomarker); ``refit="mixedlm"`` refits statsmodels on every resample instead.
3. ``bland_altman``: differences are **predicted - manual** (positive bias = the model
   measures more). Parametric: mean bias and bias +- 1.96 SD (SD with ddof=1), CIs from the
   approximate standard errors of Bland & Altman (1999): SE(bias) = s / sqrt(n) and
   SE(limit) = sqrt(3 s^2 / n), with t(n-1) quantiles. Non-parametric: median difference and
   the 2.5th / 97.5th percentiles of the differences (numpy's linear interpolation), with
   subject-bootstrap percentile CIs.
4. ``linear_regression`` (parametric): predicted on manual by ``scipy.stats.linregress``.
   ``gp_regression`` (non-parametric): ``GaussianProcessRegressor`` (RBF + WhiteKernel,
   ``normalize_y=True``, manual values z-scored internally), mean and a 95% band
   (mean +- 1.96 sd of the predictive distribution, fitted noise included) on a grid;
   R2 on the fitted points.
5. ``spearman``: Spearman's rho with its p value (always reported).

``agreement`` runs all of it on one biomarker; ``agreement_table`` on every (biomarker,
structure) group of a long table, returning the long tables of the notebook.

Bad input: pairs where either value is NaN or infinite are dropped and counted
(``n_pairs``, ``n_dropped``); mismatched lengths, duplicate subjects, or fewer than 3 remaining
pairs raise ``ValueError``. Intervals (ICC, Bland-Altman, GP band) are 95%; ``alpha`` only sets
the level of the assumption tests.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator, Literal, Sequence

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

__all__ = ["TestChoice", "ICCResult", "BlandAltmanResult", "RegressionResult", "SpearmanResult",
           "AgreementResult", "AgreementTables", "paired_values", "choose_test", "icc3_1", "icc_lmm",
           "bland_altman", "linear_regression", "gp_regression", "spearman", "agreement",
           "agreement_table"]

LOA_Z = 1.96  # Bland-Altman limits: bias +- 1.96 SD
PERCENTILES = (2.5, 97.5)  # non-parametric limits and bootstrap intervals
MIN_PAIRS = 3  # Shapiro-Wilk needs 3 values

TEST_COLUMNS = ["shapiro_diff_w", "shapiro_diff_p", "shapiro_manual_w", "shapiro_manual_p",
                "shapiro_predicted_w", "shapiro_predicted_p", "levene_stat", "levene_p", "alpha",
                "normal", "equal_variance", "parametric", "decision"]
ICC_COLUMNS = ["method", "icc", "ci_low", "ci_high", "ci_method", "boot_median", "n_boot", "f_stat", "df1",
               "df2", "p_value", "var_subject", "var_residual"]
BA_COLUMNS = ["method", "bias", "sd", "loa_lower", "loa_upper", "bias_ci_low", "bias_ci_high",
              "loa_lower_ci_low", "loa_lower_ci_high", "loa_upper_ci_low", "loa_upper_ci_high", "ci_method"]
REGRESSION_COLUMNS = ["method", "slope", "intercept", "r", "r2", "p_value", "stderr", "intercept_stderr",
                      "kernel"]
SPEARMAN_COLUMNS = ["rho", "p_value"]


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
    normal: bool  # no Shapiro-Wilk test rejected normality
    equal_variance: bool  # Levene did not reject equal variances
    parametric: bool

    @property
    def decision(self) -> str:
        return "parametric" if self.parametric else "non-parametric"


@dataclass(frozen=True)
class ICCResult:
    """An ICC with its 95% interval (table S66). ``method``: ``"ICC(3,1)"`` or ``"LMM"``."""

    method: str
    icc: float
    ci_low: float
    ci_high: float
    ci_method: str
    n_subjects: int
    n_raters: int
    var_subject: float
    var_residual: float
    f_stat: float = np.nan  # ICC(3,1) only
    df1: float = np.nan
    df2: float = np.nan
    p_value: float = np.nan
    boot_median: float = np.nan  # LMM only
    n_boot: int = 0
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
    """Predicted on manual: a line (``"linear"``) or a Gaussian process (``"gaussian_process"``).

    ``grid_x``/``fit_y`` draw the fit; ``band_low``/``band_high`` the GP's 95% predictive band
    (``None`` for the line). Slope, intercept, p and standard errors are NaN for the GP, whose
    ``r`` is the correlation of fitted and observed values (so ``r2`` may differ from ``r**2``).
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


@dataclass(frozen=True)
class SpearmanResult:
    rho: float
    p_value: float


@dataclass(frozen=True)
class AgreementResult:
    """Everything ``agreement`` computed for one biomarker. ``data``: subject, manual,
    predicted, mean, difference (predicted - manual) of the pairs that entered."""

    n_pairs: int
    n_dropped: int
    test_choice: TestChoice
    icc: ICCResult
    bland_altman: BlandAltmanResult
    regression: RegressionResult
    spearman: SpearmanResult
    data: pd.DataFrame = field(repr=False)

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
    """Clean pairs as a table (subject, manual, predicted, mean, difference) and the number of
    pairs dropped because either value was NaN or infinite.

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
    """(n_boot, n) subject indices drawn with replacement."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


# ----------------------------------------------------------------------------- 1. the choice
def _shapiro(x: np.ndarray) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "range zero": constant values, W = p = 1 (nothing to reject)
        res = stats.shapiro(x)
    return float(res.statistic), float(res.pvalue)


def choose_test(manual: ArrayLike, predicted: ArrayLike, alpha: float = 0.05) -> TestChoice:
    """Shapiro-Wilk (differences, manual, predicted) and Levene (median-centred) at ``alpha``;
    parametric when none of the four rejects. Inputs must already be clean pairs."""
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
    normal = bool(min(pd_, pm, pp) >= alpha)
    equal_var = bool(lev_p >= alpha)
    return TestChoice(wd, pd_, wm, pm, wp, pp, lev_stat, lev_p, float(alpha), normal, equal_var,
                      normal and equal_var)


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


def icc3_1(values: pd.DataFrame | ArrayLike) -> ICCResult:
    """ICC(3,1) of a complete targets x raters matrix (k >= 2 raters) via pingouin, with the
    F-based 95% CI at full precision and the ANOVA variance components."""
    x = _as_matrix(values)
    n, k = x.shape
    long = pd.DataFrame({"target": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n),
                         "value": x.ravel()})
    with _pingouin_full_precision(), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # zero error variance: F = inf, a CI of (1, 1)
        table = pg.intraclass_corr(long, targets="target", raters="rater", ratings="value").set_index("Type")
    row = table.loc["ICC(C,1)" if "ICC(C,1)" in table.index else "ICC3"]
    ci = np.asarray(row["CI95" if "CI95" in table.columns else "CI95%"], float)
    if np.isinf(row["F"]) and not np.isfinite(ci).all():
        ci = np.array([1.0, 1.0])  # no error variance: perfect consistency, a degenerate interval
    ms_rows, ms_err = _anova_components(x)
    return ICCResult("ICC(3,1)", float(row["ICC"]), float(ci[0]), float(ci[1]), "F distribution (Shrout & Fleiss)",
                     n, k, float((ms_rows - ms_err) / k), float(ms_err), float(row["F"]), float(row["df1"]),
                     float(row["df2"]), float(row["pval"]))


def _icc_closed_form(x: np.ndarray) -> np.ndarray:
    """REML ICC of a balanced subjects x raters array, (..., n, k) -> (...): the ANOVA estimate
    (MS_s - MS_e) / (MS_s + (k-1) MS_e), 0 where negative (REML puts var_subject at 0)."""
    k = x.shape[-1]
    ms_rows, ms_err = _anova_components(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        icc = (ms_rows - ms_err) / (ms_rows + (k - 1) * ms_err)
    return np.where(np.isfinite(icc), np.clip(icc, 0.0, 1.0), np.nan)


def _fit_lmm(x: np.ndarray) -> tuple[float, float]:
    """(var_subject, var_residual) of ``value ~ rater + (1 | subject)`` by REML (MixedLM)."""
    n, k = x.shape
    long = pd.DataFrame({"subject": np.repeat(np.arange(n), k), "rater": np.tile([f"r{j}" for j in range(k)], n),
                         "value": x.ravel()})
    model = smf.mixedlm("value ~ rater", long, groups=long["subject"])
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


def icc_lmm(manual: ArrayLike, predicted: ArrayLike, *, n_boot: int = 10_000, seed: int = 0,
            refit: Literal["closed_form", "mixedlm"] = "closed_form") -> ICCResult:
    """ICC from ``MixedLM`` (value ~ rater, random intercept per subject) with a subject bootstrap.

    ``manual`` and ``predicted`` are clean pairs (one subject each). The point estimate is the
    full-data fit; the interval is the 2.5/97.5 percentiles of ``n_boot`` resamples (subjects
    drawn with replacement, a subject drawn twice counts as two subjects), ``boot_median`` their
    median. Resamples are scored with the exact balanced-design REML solution unless
    ``refit="mixedlm"`` (slow). If MixedLM fails (e.g. zero residual variance) the point
    estimate falls back to that closed form, with a ``note``.
    """
    x = np.column_stack([np.asarray(manual, float), np.asarray(predicted, float)])
    n, k = x.shape
    note = ""
    try:
        var_s, var_r = _fit_lmm(x)
        icc = var_s / (var_s + var_r) if var_s + var_r > 0 else np.nan
    except RuntimeError as exc:
        ms_rows, ms_err = _anova_components(x)
        var_s, var_r = max(float((ms_rows - ms_err) / k), 0.0), float(ms_err)
        icc = float(_icc_closed_form(x))
        note = f"MixedLM failed ({exc}); balanced-design REML closed form used"
    idx = _boot_indices(n, n_boot, seed)
    if refit == "closed_form":
        boot = np.concatenate([_icc_closed_form(x[chunk]) for chunk in np.array_split(idx, max(1, n_boot // 1000))])
    elif refit == "mixedlm":
        boot = np.empty(n_boot)
        for b, rows in enumerate(idx):
            try:
                vs, vr = _fit_lmm(x[rows])
                boot[b] = vs / (vs + vr) if vs + vr > 0 else np.nan
            except RuntimeError:
                boot[b] = np.nan
    else:
        raise ValueError(f"refit must be 'closed_form' or 'mixedlm', got {refit!r}")
    finite = boot[np.isfinite(boot)]
    lo, hi = np.percentile(finite, PERCENTILES) if finite.size else (np.nan, np.nan)
    med = float(np.median(finite)) if finite.size else np.nan
    if finite.size < n_boot:
        note = (note + "; " if note else "") + f"{n_boot - finite.size} degenerate resamples left out"
    return ICCResult("LMM", float(icc), float(lo), float(hi), "subject bootstrap percentile", n, k,
                     float(var_s), float(var_r), boot_median=med, n_boot=int(n_boot), note=note)


# ----------------------------------------------------------------------------- 3. Bland-Altman
def bland_altman(manual: ArrayLike, predicted: ArrayLike, *, parametric: bool = True, n_boot: int = 10_000,
                 seed: int = 0) -> BlandAltmanResult:
    """Bias and 95% limits of agreement of ``predicted - manual`` (clean pairs).

    Parametric: mean +- 1.96 SD, CIs from Bland & Altman's (1999) approximate SEs with t(n-1).
    Non-parametric: median and 2.5/97.5 percentiles, subject-bootstrap percentile CIs.
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


def linear_regression(manual: ArrayLike, predicted: ArrayLike, n_grid: int = 100) -> RegressionResult:
    """Least-squares line predicted = intercept + slope * manual (``scipy.stats.linregress``)."""
    x, y = np.asarray(manual, float), np.asarray(predicted, float)
    if np.ptp(x) == 0:
        raise ValueError("linear regression needs manual values that vary")
    res = stats.linregress(x, y)
    grid = _grid(x, n_grid)
    return RegressionResult("linear", float(res.slope), float(res.intercept), float(res.rvalue),
                            float(res.rvalue**2), float(res.pvalue), float(res.stderr),
                            float(res.intercept_stderr), grid, res.intercept + res.slope * grid)


def gp_regression(manual: ArrayLike, predicted: ArrayLike, *, n_grid: int = 100, seed: int = 0) -> RegressionResult:
    """Gaussian-process regression of predicted on manual (RBF + WhiteKernel, ``normalize_y``).

    Manual values are z-scored before fitting so the RBF's length-scale starts at the data's
    scale whatever the unit. The band is mean +- 1.96 sd of the predictive distribution (the
    fitted white noise included) on a grid over the manual range; R2 is on the fitted points.
    """
    x, y = np.asarray(manual, float), np.asarray(predicted, float)
    centre, scale = float(np.mean(x)), float(np.std(x))
    if scale == 0:
        raise ValueError("GP regression needs manual values that vary")
    z = ((x - centre) / scale)[:, None]
    kernel = RBF(length_scale=1.0, length_scale_bounds=(1e-2, 1e3)) + WhiteKernel(0.1, (1e-8, 1e1))
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=3, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a bound reached: the fit is still usable
        gp.fit(z, y)
    grid = _grid(x, n_grid)
    mean, sd = gp.predict(((grid - centre) / scale)[:, None], return_std=True)
    fitted = gp.predict(z)
    r2 = float(r2_score(y, fitted)) if np.ptp(y) > 0 else np.nan
    return RegressionResult("gaussian_process", np.nan, np.nan, float(np.corrcoef(y, fitted)[0, 1]), r2, np.nan,
                            np.nan, np.nan, grid, mean, mean - LOA_Z * sd, mean + LOA_Z * sd, str(gp.kernel_))


# ----------------------------------------------------------------------------- 5. Spearman
def spearman(manual: ArrayLike, predicted: ArrayLike) -> SpearmanResult:
    """Spearman's rank correlation (scipy); NaN when either arm is constant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input
        res = stats.spearmanr(np.asarray(manual, float), np.asarray(predicted, float))
    return SpearmanResult(float(res.statistic), float(res.pvalue))


# ----------------------------------------------------------------------------- entry points
def agreement(manual: Sequence[float], predicted: Sequence[float], subjects: Sequence[str] | None = None, *,
              n_boot: int = 10_000, seed: int = 0, alpha: float = 0.05,
              parametric: bool | None = None) -> AgreementResult:
    """Agreement of one biomarker between manual and predicted masks (paired per subject).

    ``parametric=None`` lets ``choose_test`` decide; True/False forces a path (the assumption
    tests are still reported). Both bootstraps use ``seed``, so results are reproducible.
    """
    data, n_dropped = paired_values(manual, predicted, subjects)
    m, p = data["manual"].to_numpy(), data["predicted"].to_numpy()
    choice = choose_test(m, p, alpha)
    if parametric is not None:
        choice = replace(choice, parametric=bool(parametric))
    if choice.parametric:
        icc = icc3_1(np.column_stack([m, p]))
        regression = linear_regression(m, p)
    else:
        icc = icc_lmm(m, p, n_boot=n_boot, seed=seed)
        regression = gp_regression(m, p, seed=seed)
    ba = bland_altman(m, p, parametric=choice.parametric, n_boot=n_boot, seed=seed)
    return AgreementResult(len(data), n_dropped, choice, icc, ba, regression, spearman(m, p), data)


def _rows_of(result: AgreementResult) -> dict[str, dict]:
    """One flat row per table for a result."""
    reg = {k: v for k, v in asdict(result.regression).items() if k in REGRESSION_COLUMNS}
    return {"test_choice": {**asdict(result.test_choice), "decision": result.test_choice.decision},
            "icc": {k: v for k, v in asdict(result.icc).items() if k in ICC_COLUMNS},
            "bland_altman": {k: v for k, v in asdict(result.bland_altman).items() if k in BA_COLUMNS},
            "regression": reg, "spearman": asdict(result.spearman)}


def agreement_table(df: pd.DataFrame, value_manual: str, value_predicted: str,
                    by: Sequence[str] = ("biomarker", "structure"), subject_col: str = "subject_id", *,
                    n_boot: int = 10_000, seed: int = 0, alpha: float = 0.05) -> AgreementTables:
    """``agreement`` for every group of ``by`` in a long table (one row per subject and group).

    Every table starts with the ``by`` columns, ``n_pairs``, ``n_dropped`` and ends with
    ``note``; a group that cannot be analysed (e.g. < 3 pairs) keeps a row of NaN with the
    reason in ``note``. Each group uses the same ``seed``.
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
                            sub[subject_col].to_numpy(), n_boot=n_boot, seed=seed, alpha=alpha)
        except ValueError as exc:
            n_ok = int((pd.to_numeric(sub[value_manual], errors="coerce").notna()
                        & pd.to_numeric(sub[value_predicted], errors="coerce").notna()).sum())
            for name in columns:
                rows[name].append({**head, "n_pairs": n_ok, "n_dropped": len(sub) - n_ok, "note": f"not run: {exc}"})
            continue
        results[key] = res
        for name, row in _rows_of(res).items():
            note = res.icc.note if name == "icc" else ""
            rows[name].append({**head, "n_pairs": res.n_pairs, "n_dropped": res.n_dropped, **row, "note": note})
    tables = {name: pd.DataFrame(rows[name], columns=[*by, "n_pairs", "n_dropped", *cols, "note"])
              for name, cols in columns.items()}
    return AgreementTables(**tables, results=results)

