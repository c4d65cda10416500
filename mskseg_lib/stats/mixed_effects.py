"""How MRI acquisition parameters and finetuning choices shape Dice: a linear mixed model.

The study's recipe, step by step:

1. ``assemble_table``: one row per (experiment, model, dataset, subject) with the subject's mean
   Dice, the acquisition parameters of the scan (echo/repetition time, flip angle, field
   strength, vendor, slice thickness, pixel spacing, image rows, 2D/3D, age) and the
   experiment's settings (finetuning type, encoder trained, box shift, initial weights).
2. ``impute``: nominal variables by a random-forest classifier, ordinal and numeric ones
   iteratively with a random-forest regressor (scikit-learn ``IterativeImputer``);
   ``ks_sensitivity`` compares observed and imputed distributions (two-sample
   Kolmogorov-Smirnov).
3. ``encode``: one-hot nominal variables (first level dropped, so the reference is explicit),
   ordinal codes, continuous variables standardised, discrete ones (flip angle, rows, age)
   min-max scaled.
4. ``drop_collinear``: variance inflation factors (statsmodels); the feature with the largest
   VIF above 10 is dropped and the VIFs recomputed, until none exceeds it.
5. ``fit_mixed``: statsmodels ``MixedLM`` with a random intercept per dataset, fixed effects
   and two-way interactions; coefficients with 95% CIs, convergence and the random-intercept
   variance.

``simulate_table`` draws data with known coefficients and a random dataset effect, which the
tests use to check that the fit recovers them.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (activates IterativeImputer)
from sklearn.impute import IterativeImputer
from statsmodels.stats.outliers_influence import variance_inflation_factor


@dataclass(frozen=True)
class VariableTypes:
    """Which preprocessing each column gets (the study's variable classes)."""

    nominal: tuple[str, ...] = ("vendor", "acquisition")
    ordinal: Mapping[str, tuple] = field(default_factory=lambda: {"field_strength_t": (1.5, 3.0)})
    continuous: tuple[str, ...] = ("te_ms", "tr_ms", "slice_thickness_mm", "pixel_spacing_mm")
    discrete: tuple[str, ...] = ("flip_angle_deg", "rows_px", "age_years")
    binary: tuple[str, ...] = ()  # already 0/1: left as they are

    @property
    def numeric(self) -> list[str]:
        return [*self.continuous, *self.discrete]

    def all(self) -> list[str]:
        return [*self.nominal, *self.ordinal, *self.numeric, *self.binary]


MRI_TYPES = VariableTypes()
# expected direction of each effect in the synthetic cohort (mskseg_lib/data/mr_physics.py):
# longer TE -> T2 decay, less signal; higher field -> more SNR; larger voxels -> more partial
# volume and fewer pixels across thin structures
PHYSICS_SIGNS = {"te_ms": -1, "field_strength_t": +1, "pixel_spacing_mm": -1, "slice_thickness_mm": -1}
# the study's published effect sizes (standardised/scaled predictors), for side-by-side display
PUBLISHED_EFFECTS = pd.DataFrame([
    {"term": "flip_angle_deg", "published_low": 0.714, "published_high": 0.773},
    {"term": "te_ms", "published_low": -0.099, "published_high": -0.058},
    {"term": "pixel_spacing_mm", "published_low": -0.080, "published_high": -0.080},
])


# ----------------------------------------------------------------------------- 1. the table
FINETUNE_TYPE = {"single": "single", "anatomy": "mixed", "muscle": "mixed", "all_msk": "all_msk"}
ACQUISITION_COLUMNS = ("vendor", "acquisition", "field_strength_t", "te_ms", "tr_ms", "flip_angle_deg",
                       "slice_thickness_mm", "pixel_spacing_mm", "rows_px", "age_years")


def arm_name(model_key: str, finetuned: bool) -> str:
    """The model-and-training level of a row (``sam_vit_b zero-shot`` is the study's reference)."""
    return f"{model_key} {'finetuned' if finetuned else 'zero-shot'}"


def assemble_table(subject_scores: pd.DataFrame, experiments: pd.DataFrame, subjects: pd.DataFrame,
                   condition: str = "gt_box") -> pd.DataFrame:
    """One row per (experiment, model, dataset, subject): Dice, acquisition and settings.

    ``subject_scores`` is the grid's subject table (``experiment_id`` ``zero_shot:<model>`` for
    baselines), ``experiments`` its experiment table, ``subjects`` the prepared subject table.
    """
    s = subject_scores[subject_scores["condition"] == condition].copy()
    exp = experiments.set_index("experiment_id")
    rows = []
    for r in s.itertuples(index=False):
        if r.experiment_id.startswith("zero_shot:"):
            key = r.experiment_id.split(":", 1)[1]
            settings = {"finetune_type": "zero_shot", "encoder_trained": 0, "box_shift": 0,
                        "initial_weights": key, "arm": arm_name(key, finetuned=False)}
        else:
            e = exp.loc[r.experiment_id]
            settings = {"finetune_type": FINETUNE_TYPE[e["mix_kind"]], "encoder_trained": int(e["encoder"] == "trained"),
                        "box_shift": int(e["box_shift_px"] > 0), "initial_weights": e["model_key"],
                        "arm": arm_name(e["model_key"], finetuned=True)}
        rows.append({"experiment_id": r.experiment_id, "dataset": r.dataset, "subject_id": r.subject_id,
                     "dice": float(r.dice_mean_slice), **settings})
    table = pd.DataFrame(rows)
    acq = subjects[["dataset", "subject_id", *ACQUISITION_COLUMNS]]
    return table.merge(acq, on=["dataset", "subject_id"], how="left", validate="many_to_one")


# ----------------------------------------------------------------------------- 2. imputation
def missingness(df: pd.DataFrame, types: VariableTypes = MRI_TYPES) -> pd.DataFrame:
    """Variable type and missing fraction per column (table S35)."""
    kinds = {**{c: "nominal" for c in types.nominal}, **{c: "ordinal" for c in types.ordinal},
             **{c: "continuous" for c in types.continuous}, **{c: "discrete" for c in types.discrete},
             **{c: "binary" for c in types.binary}}
    return pd.DataFrame([{"variable": c, "type": k, "n_missing": int(df[c].isna().sum()),
                          "fraction_missing": float(df[c].isna().mean()), "n_levels": int(df[c].nunique())}
                         for c, k in kinds.items() if c in df])


def impute(df: pd.DataFrame, types: VariableTypes = MRI_TYPES, seed: int = 0) -> pd.DataFrame:
    """Fill missing values: numeric and ordinal columns iteratively (random-forest regressor),
    then nominal ones with a random-forest classifier on the completed numeric columns.

    Ordinal and discrete values are snapped to observed levels (an imputed field strength is
    1.5 or 3.0 T, not 2.2).
    """
    out = df.copy()
    numeric = [c for c in [*types.numeric, *types.ordinal] if c in out]
    if out[numeric].isna().any().any():
        imputer = IterativeImputer(estimator=RandomForestRegressor(n_estimators=50, random_state=seed),
                                   max_iter=10, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter of the iterative imputer
            filled = imputer.fit_transform(out[numeric].astype(float))
        out[numeric] = filled
        for c in [*types.discrete, *types.ordinal]:
            if c in out and df[c].isna().any():
                levels = np.array(sorted(df[c].dropna().unique()), float)
                miss = df[c].isna().to_numpy()
                out.loc[miss, c] = levels[np.abs(out.loc[miss, c].to_numpy()[:, None] - levels[None]).argmin(1)]
    for c in [c for c in types.nominal if c in out]:
        miss = out[c].isna()
        if not miss.any():
            continue
        if (~miss).sum() == 0:
            raise ValueError(f"impute: column {c!r} has no observed value")
        clf = RandomForestClassifier(n_estimators=100, random_state=seed)
        clf.fit(out.loc[~miss, numeric], out.loc[~miss, c].astype(str))
        out.loc[miss, c] = clf.predict(out.loc[miss, numeric])
    return out


def ks_sensitivity(original: pd.DataFrame, imputed: pd.DataFrame, types: VariableTypes = MRI_TYPES) -> pd.DataFrame:
    """Two-sample KS test, observed values vs the completed column, for every imputed numeric
    column (table S36): a small statistic means imputation kept the distribution."""
    rows = []
    for c in [c for c in [*types.numeric, *types.ordinal] if c in original]:
        n_miss = int(original[c].isna().sum())
        if n_miss == 0:
            continue
        res = stats.ks_2samp(original[c].dropna().astype(float), imputed[c].astype(float))
        rows.append({"variable": c, "n_imputed": n_miss, "ks_statistic": float(res.statistic),
                     "p_value": float(res.pvalue)})
    return pd.DataFrame(rows, columns=["variable", "n_imputed", "ks_statistic", "p_value"])


# ----------------------------------------------------------------------------- 3. encoding
def safe_name(name: str) -> str:
    """A column name usable in a patsy formula."""
    return re.sub(r"\W+", "_", str(name)).strip("_")


def encode(df: pd.DataFrame, types: VariableTypes = MRI_TYPES,
           references: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Model-ready features: one-hot nominal (reference level dropped), ordinal codes,
    standardised continuous, min-max scaled discrete, binary as is.

    ``references`` fixes the dropped level per nominal column (else the first in sorted order).
    """
    references = dict(references or {})
    parts = []
    for c in [c for c in types.nominal if c in df]:
        levels = sorted(df[c].astype(str).unique())
        ref = str(references.get(c, levels[0]))
        if ref not in levels:
            raise ValueError(f"encode: reference level {ref!r} of {c!r} is not in the data ({levels})")
        cat = pd.Categorical(df[c].astype(str), categories=[ref, *[v for v in levels if v != ref]])
        dummies = pd.get_dummies(cat, prefix=c, drop_first=True, dtype=float)
        dummies.index = df.index
        parts.append(dummies.rename(columns=safe_name))
    for c, levels in types.ordinal.items():
        if c in df:
            codes = pd.Series(np.searchsorted(np.asarray(levels, float), df[c].astype(float)), index=df.index, name=c)
            parts.append(codes.astype(float).to_frame())
    for c in [c for c in types.continuous if c in df]:
        x = df[c].astype(float)
        sd = x.std(ddof=0)
        parts.append(((x - x.mean()) / sd if sd > 0 else x * 0.0).rename(c).to_frame())
    for c in [c for c in types.discrete if c in df]:
        x = df[c].astype(float)
        span = x.max() - x.min()
        parts.append(((x - x.min()) / span if span > 0 else x * 0.0).rename(c).to_frame())
    for c in [c for c in types.binary if c in df]:
        parts.append(df[c].astype(float).rename(c).to_frame())
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=df.index)


# ----------------------------------------------------------------------------- 4. collinearity
def vif_table(features: pd.DataFrame) -> pd.DataFrame:
    """Variance inflation factor of every feature (an intercept is added, as VIF assumes)."""
    x = features.loc[:, features.std(ddof=0) > 0].astype(float)
    design = np.column_stack([np.ones(len(x)), x.to_numpy()])
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exact collinearity gives an infinite VIF, which is the point
        vifs = [variance_inflation_factor(design, i + 1) for i in range(x.shape[1])]
    out = pd.DataFrame({"feature": x.columns, "vif": vifs})
    constant = [c for c in features.columns if c not in x.columns]
    if constant:
        out = pd.concat([out, pd.DataFrame({"feature": constant, "vif": np.nan})], ignore_index=True)
    return out


def drop_collinear(features: pd.DataFrame, threshold: float = 10.0,
                   keep: Sequence[str] = ()) -> tuple[list[str], pd.DataFrame]:
    """Drop the largest-VIF feature above ``threshold`` (never one in ``keep``) until none is
    left above it; constant features go first (even those in ``keep``: a constant has no
    effect to estimate). Returns (kept features, before/after table)."""
    before = vif_table(features)
    kept = [c for c in features.columns if features[c].std(ddof=0) > 0]  # a constant is never estimable
    while True:
        v = vif_table(features[kept])
        v = v[~v["feature"].isin(keep)]
        worst = v.sort_values("vif", ascending=False).iloc[0] if not v.empty else None
        if worst is None or not (worst["vif"] > threshold):
            break
        kept.remove(worst["feature"])
    after = vif_table(features[kept])
    table = before.merge(after, on="feature", how="left", suffixes=("_before", "_after"))
    table["dropped"] = ~table["feature"].isin(kept)
    return kept, table


# ----------------------------------------------------------------------------- 5. the model
@dataclass
class MixedFit:
    coefficients: pd.DataFrame  # term, coef, se, ci_low, ci_high, p_value
    converged: bool
    random_intercept_var: float
    residual_var: float
    n_obs: int
    n_groups: int
    formula: str


def fit_mixed(data: pd.DataFrame, response: str, fixed: Sequence[str], group: str = "dataset",
              interactions: Sequence[tuple[str, str]] = ()) -> MixedFit:
    """``MixedLM``: ``response ~ fixed + a:b`` with a random intercept per ``group`` (REML)."""
    terms = list(fixed) + [f"{a}:{b}" for a, b in interactions if a in fixed and b in fixed]
    formula = f"{response} ~ " + (" + ".join(terms) if terms else "1")
    model = smf.mixedlm(formula, data, groups=data[group])
    rank = np.linalg.matrix_rank(model.exog)
    if rank < model.exog.shape[1]:
        raise ValueError(f"MixedLM {formula}: the fixed effects are linearly dependent (rank {rank} of "
                         f"{model.exog.shape[1]} columns); drop collinear terms first (drop_collinear)")
    res, errors = None, []
    for method in ("lbfgs", "powell", "nm"):  # a later optimiser where an earlier one fails
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings: reported as `converged`
                res = model.fit(reml=True, method=method)
        except (np.linalg.LinAlgError, ValueError) as exc:
            errors.append(f"{method}: {exc}")
            continue
        if res.converged:
            break
    if res is None:
        raise RuntimeError(f"MixedLM {formula}: no optimiser could fit it ({'; '.join(errors)})")
    ci = res.conf_int(alpha=0.05)
    names = [n for n in res.fe_params.index]
    coef = pd.DataFrame({"term": names, "coef": res.fe_params.values, "se": res.bse_fe.values,
                         "ci_low": ci.loc[names, 0].values, "ci_high": ci.loc[names, 1].values,
                         "p_value": res.pvalues.loc[names].values})
    return MixedFit(coef, bool(res.converged), float(res.cov_re.iloc[0, 0]), float(res.scale), int(res.nobs),
                    int(data[group].nunique()), formula)


def simulate_table(coefficients: Mapping[str, float], *, n_datasets: int = 12, n_subjects: int = 20,
                   intercept: float = 0.7, random_sd: float = 0.05, noise_sd: float = 0.03,
                   seed: int = 0) -> pd.DataFrame:
    """Data with known fixed effects (standard-normal features) and a random dataset intercept."""
    rng = np.random.default_rng(seed)
    n = n_datasets * n_subjects
    data = {name: rng.standard_normal(n) for name in coefficients}
    dataset = np.repeat([f"d{i:02d}" for i in range(n_datasets)], n_subjects)
    effect = dict(zip(np.unique(dataset), rng.normal(0, random_sd, n_datasets)))
    y = intercept + sum(coefficients[k] * data[k] for k in coefficients)
    y = y + np.array([effect[d] for d in dataset]) + rng.normal(0, noise_sd, n)
    return pd.DataFrame({"dataset": dataset, "dice": y, **data})
