"""How MRI acquisition parameters and finetuning choices shape Dice: the generic steps.

The study's recipe (Methods, "Data Preprocessing for Mixed-Effects Modeling" to "Hierarchical
Mixed-Effects Modeling"), one function per step:

1. ``assemble_table``: one row per (experiment, model, dataset, subject) with the subject's
   Dice, the scan's acquisition parameters and the experiment's settings (finetuning type,
   image encoder finetuned, box shift applied, initial weights). This is the *subject-level*
   table of the sensitivity analysis; the study's own response is one mean Dice per
   (experiment, dataset), built in :mod:`mskseg_lib.stats.study_effects`.
2. ``impute``: continuous variables iteratively with a random-forest regressor (scikit-learn
   ``IterativeImputer``); nominal, ordinal, discrete and binary ones with a random-forest
   classifier (so an imputed flip angle is a flip angle that occurs in the data);
   ``ks_sensitivity`` compares observed and completed distributions (two-sample
   Kolmogorov-Smirnov).
3. ``encode``: one-hot nominal variables (first level dropped, so the reference is explicit),
   ordinal codes, ``StandardScaler`` on continuous variables, ``MinMaxScaler`` on discrete ones
   (flip angle, image rows, age), binary ones as they are.
4. ``drop_collinear``: variance inflation factors (statsmodels); the feature with the largest
   VIF above 10 is dropped and the VIFs recomputed, until none exceeds it.
5. ``fit_mixed``: statsmodels ``MixedLM`` (REML) with a random intercept per group, optional
   nested variance components, fixed effects and two-way interactions; coefficients with 95%
   CIs, convergence and the variance components. ``formula_string`` is the exact patsy
   formula it fits.

``simulate_table`` draws data with known coefficients and a random dataset effect, which the
tests use to check that the fit recovers them. :class:`MixedEffectsSettings` holds the choices of
notebook 04's analyses (reference model, prompt condition, interactions, VIF threshold, seed)
with the study's values as defaults.
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
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from statsmodels.stats.outliers_influence import variance_inflation_factor

from mskseg_lib.data.errors import DataError, SettingsError


@dataclass(frozen=True)
class VariableTypes:
    """Which preprocessing each column gets (the study's variable classes)."""

    nominal: tuple[str, ...] = ("vendor", "acquisition")
    ordinal: Mapping[str, tuple] = field(default_factory=lambda: {"field_strength_t": (1.5, 3.0)})
    continuous: tuple[str, ...] = ("te_ms", "tr_ms", "slice_thickness_mm", "pixel_spacing_mm")
    discrete: tuple[str, ...] = ("flip_angle_deg", "rows_px", "age_years")
    binary: tuple[str, ...] = ()  # 0/1: not scaled (imputed, where missing, by the classifier)

    @property
    def numeric(self) -> list[str]:
        return [*self.continuous, *self.discrete]

    def all(self) -> list[str]:
        return [*self.nominal, *self.ordinal, *self.numeric, *self.binary]

    def kind(self, column: str) -> str:
        """``nominal``, ``ordinal``, ``continuous``, ``discrete``, ``binary`` or ``""``."""
        for name in ("nominal", "ordinal", "continuous", "discrete", "binary"):
            if column in getattr(self, name):
                return name
        return ""


MRI_TYPES = VariableTypes()
# the two-way interactions the study's text names: TE x slice thickness, TE x finetuning strategy
STUDY_INTERACTIONS: tuple[tuple[str, str], ...] = (("te_ms", "slice_thickness_mm"), ("te_ms", "encoder_finetuned"))


@dataclass(frozen=True)
class MixedEffectsSettings:
    """The choices of the mixed-effects analyses; the defaults are the study's.

    ``reference_model``: its zero-shot arm is the reference level (the study: SAM ViT-B; the first
    zero-shot model present stands in, and the fit tables say so); ``condition``: the prompt
    condition whose Dice is the response; ``interactions``: two-way interactions, pairs of raw
    variable names; ``vif_threshold``: features above it are dropped, largest first; ``seed``: the
    random forests of the imputation.
    """

    reference_model: str = "sam_vit_b"
    condition: str = "gt_box"
    interactions: tuple[tuple[str, str], ...] = STUDY_INTERACTIONS
    vif_threshold: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "interactions", tuple(tuple(p) for p in self.interactions))
        bad = [list(p) for p in self.interactions if len(p) != 2]
        if bad or self.vif_threshold <= 1:
            raise SettingsError(f"mixed effects: interactions must be pairs (got {bad or 'pairs'}) and vif_threshold "
                                f"> 1 (got {self.vif_threshold})")
# expected direction of each effect in the synthetic cohort (mskseg_lib/data/mr_physics.py):
# longer TE -> T2 decay, less signal; higher field -> more SNR; larger voxels -> more partial
# volume and fewer pixels across thin structures
PHYSICS_SIGNS = {"te_ms": -1, "field_strength_t": +1, "pixel_spacing_mm": -1, "slice_thickness_mm": -1}


# ----------------------------------------------------------------------------- 1. the table
FINETUNE_TYPE = {"single": "single", "anatomy": "mixed", "muscle": "mixed", "all_msk": "all_msk"}
ACQUISITION_COLUMNS = ("vendor", "acquisition", "field_strength_t", "te_ms", "tr_ms", "flip_angle_deg",
                       "slice_thickness_mm", "pixel_spacing_mm", "rows_px", "age_years")
# the evaluation's subject Dice, newest name first (the subject's mean slice Dice today)
SUBJECT_DICE_COLUMNS = ("dice_mean_slice", "dice_subject", "dice_mean", "dice")
# the experiment table's box-shift setting, newest name first (pixels on the stated grid)
BOX_SHIFT_COLUMNS = ("box_shift_grid_px", "box_shift_px")


def arm_name(model_key: str, finetuned: bool) -> str:
    """The model-and-training level of a row (``sam_vit_b zero-shot`` is the study's reference).

    Parameters
    ----------
    model_key : str
        Zoo key.
    finetuned : bool

    Returns
    -------
    str
        ``"<model_key> zero-shot"`` or ``"<model_key> finetuned"``.
    """
    return f"{model_key} {'finetuned' if finetuned else 'zero-shot'}"


def first_column(df: pd.DataFrame, candidates: Sequence[str], what: str, source: str) -> str:
    """The first of ``candidates`` that ``df`` has.

    Parameters
    ----------
    df : DataFrame
    candidates : sequence of str
        Column names in order of preference.
    what, source : str
        What the column holds and which table it is, for the error.

    Returns
    -------
    str
        The column name; a :class:`DataError` naming ``source`` when none is there.
    """
    for c in candidates:
        if c in df.columns:
            return c
    raise DataError(source, f"no {what} column (looked for {', '.join(candidates)}; "
                            f"has {', '.join(map(str, df.columns))})")


def experiment_settings(experiments: pd.DataFrame) -> pd.DataFrame:
    """The study's experiment covariates, one row per finetuned ``experiment_id``.

    Parameters
    ----------
    experiments : DataFrame
        The grid's experiment table (``experiment_id``, ``mix_kind``, ``encoder`` or ``strategy``,
        ``box_shift_grid_px`` or ``box_shift_px``, ``model_key``).

    Returns
    -------
    DataFrame
        ``finetune_type`` (single / mixed / all_msk from ``mix_kind``), ``finetuned`` (1),
        ``encoder_finetuned`` (1 when the image encoder was trained: ``encoder == "trained"``, or
        ``strategy == "full"``), ``box_shift_applied`` (1 when the box-shift setting is > 0) and
        ``initial_weights`` (the zoo key the model started from), after ``experiment_id``.
    """
    source = "finetuning experiment table"
    for c in ("experiment_id", "mix_kind", "model_key"):
        first_column(experiments, (c,), c, source)
    shift = first_column(experiments, BOX_SHIFT_COLUMNS, "box-shift", source)
    if "encoder" in experiments:
        encoder = experiments["encoder"].astype(str).eq("trained")
    else:
        encoder = experiments[first_column(experiments, ("strategy",), "encoder / strategy", source)].astype(str).eq("full")
    unknown = sorted(set(experiments["mix_kind"]) - set(FINETUNE_TYPE))
    if unknown:
        raise DataError(source, f"unknown mix_kind {unknown} (known: {sorted(FINETUNE_TYPE)})")
    return pd.DataFrame({"experiment_id": experiments["experiment_id"].to_numpy(),
                         "finetune_type": experiments["mix_kind"].map(FINETUNE_TYPE).to_numpy(),
                         "finetuned": 1, "encoder_finetuned": encoder.astype(int).to_numpy(),
                         "box_shift_applied": (experiments[shift].astype(float) > 0).astype(int).to_numpy(),
                         "initial_weights": experiments["model_key"].astype(str).to_numpy()})


def zero_shot_settings(experiment_id: str) -> dict:
    """The covariates of a zero-shot baseline row.

    Parameters
    ----------
    experiment_id : str
        ``zero_shot:<model>``.

    Returns
    -------
    dict
        ``finetune_type`` ``zero_shot``, ``finetuned``, ``encoder_finetuned`` and
        ``box_shift_applied`` 0, ``initial_weights`` the model.
    """
    key = experiment_id.split(":", 1)[1]
    return {"finetune_type": "zero_shot", "finetuned": 0, "encoder_finetuned": 0, "box_shift_applied": 0,
            "initial_weights": key}


def row_settings(experiment_ids: pd.Series, experiments: pd.DataFrame) -> pd.DataFrame:
    """Settings of every row (zero-shot baselines and finetuned experiments), plus ``arm``.

    Parameters
    ----------
    experiment_ids : Series
        One experiment id per row (``zero_shot:<model>`` for baselines).
    experiments : DataFrame
        The grid's experiment table.

    Returns
    -------
    DataFrame
        :func:`experiment_settings`' columns and ``arm`` (:func:`arm_name`), aligned with the rows.
    """
    tuned = experiment_settings(experiments).set_index("experiment_id") if len(experiments) else pd.DataFrame()
    rows = []
    for eid in experiment_ids:
        if str(eid).startswith("zero_shot:"):
            rows.append(zero_shot_settings(str(eid)))
        elif eid in tuned.index:
            rows.append(tuned.loc[eid].to_dict())
        else:
            raise DataError("finetuning experiment table", f"scores name experiment {eid!r}, which it does not list")
    out = pd.DataFrame(rows, index=experiment_ids.index)
    out["arm"] = [arm_name(w, bool(f)) for w, f in zip(out["initial_weights"], out["finetuned"])]
    return out


def assemble_table(subject_scores: pd.DataFrame, experiments: pd.DataFrame, subjects: pd.DataFrame,
                   condition: str = "gt_box", dice_column: str | None = None) -> pd.DataFrame:
    """One row per (experiment, model, dataset, subject): Dice, acquisition and settings.

    Parameters
    ----------
    subject_scores : DataFrame
        The grid's subject table (``experiment_id`` ``zero_shot:<model>`` for baselines), one row
        per (experiment, condition, dataset, subject).
    experiments : DataFrame
        The grid's experiment table.
    subjects : DataFrame
        The prepared subjects table (acquisition columns).
    condition : str
        The prompt condition kept.
    dice_column : str, optional
        The score (default: the first of :data:`SUBJECT_DICE_COLUMNS` present).

    Returns
    -------
    DataFrame
        ``dice`` (0-1), the ``ACQUISITION_COLUMNS`` (ms, degrees, mm, T) and the row settings.
    """
    dice_column = dice_column or first_column(subject_scores, SUBJECT_DICE_COLUMNS, "subject Dice", "subject scores")
    s = subject_scores[subject_scores["condition"] == condition].reset_index(drop=True)
    table = pd.concat([s[["experiment_id", "dataset", "subject_id"]],
                       s[dice_column].astype(float).rename("dice"), row_settings(s["experiment_id"], experiments)],
                      axis=1)
    acq = subjects[["dataset", "subject_id", *ACQUISITION_COLUMNS]]
    return table.merge(acq, on=["dataset", "subject_id"], how="left", validate="many_to_one")


# ----------------------------------------------------------------------------- 2. imputation
def missingness(df: pd.DataFrame, types: VariableTypes = MRI_TYPES) -> pd.DataFrame:
    """Variable type and missing values per column (table S35).

    Parameters
    ----------
    df : DataFrame
    types : VariableTypes
        The variables and their classes (absent columns are skipped).

    Returns
    -------
    DataFrame
        ``variable``, ``type``, ``n_missing``, ``fraction_missing``, ``n_levels``.
    """
    kinds = {**{c: "nominal" for c in types.nominal}, **{c: "ordinal" for c in types.ordinal},
             **{c: "continuous" for c in types.continuous}, **{c: "discrete" for c in types.discrete},
             **{c: "binary" for c in types.binary}}
    return pd.DataFrame([{"variable": c, "type": k, "n_missing": int(df[c].isna().sum()),
                          "fraction_missing": float(df[c].isna().mean()), "n_levels": int(df[c].nunique())}
                         for c, k in kinds.items() if c in df])


def impute(df: pd.DataFrame, types: VariableTypes = MRI_TYPES, seed: int = 0) -> pd.DataFrame:
    """Fill missing values as the study does, by variable type.

    1. Continuous columns: ``IterativeImputer`` with a random-forest regressor over every
       numeric, ordinal and binary column (the non-continuous ones take part as predictors,
       filled provisionally by the same imputer).
    2. Discrete, ordinal, binary and nominal columns: one ``RandomForestClassifier`` per column,
       trained on its observed rows with the completed continuous columns and the other
       (provisionally completed) numeric columns as predictors. Its classes are the observed
       values, so an imputed flip angle or field strength is one that occurs in the data.

    A column without any predictor (it is the only column) gets its most frequent observed
    value. Parameters: ``df`` (rows x variables; other columns are kept as they are), ``types``
    (which variable is which), ``seed`` (the forests' random state). Returns a copy of ``df``.
    """
    out = df.copy()
    numeric = [c for c in [*types.continuous, *types.discrete, *types.ordinal, *types.binary] if c in out]
    provisional = out[numeric].astype(float)
    if provisional.isna().any().any():
        imputer = IterativeImputer(estimator=RandomForestRegressor(n_estimators=50, random_state=seed),
                                   max_iter=10, random_state=seed, keep_empty_features=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter of the iterative imputer
            provisional = pd.DataFrame(imputer.fit_transform(provisional), index=out.index, columns=numeric)
        for c in [c for c in types.continuous if c in out]:
            out[c] = provisional[c]
    categorical = [c for c in [*types.discrete, *types.ordinal, *types.binary, *types.nominal] if c in out]
    for c in categorical:
        miss = df[c].isna()
        if not miss.any():
            continue
        if (~miss).sum() == 0:
            raise ValueError(f"impute: column {c!r} has no observed value")
        predictors = [p for p in numeric if p != c]
        observed = df.loc[~miss, c]
        if not predictors:
            out.loc[miss, c] = observed.mode().iloc[0]
            continue
        clf = RandomForestClassifier(n_estimators=100, random_state=seed)
        labels = observed.astype(str) if c in types.nominal else observed.astype(float).astype(str)
        clf.fit(provisional.loc[~miss, predictors], labels)
        predicted = clf.predict(provisional.loc[miss, predictors])
        out.loc[miss, c] = predicted if c in types.nominal else predicted.astype(float)
    return out


def ks_sensitivity(original: pd.DataFrame, imputed: pd.DataFrame, types: VariableTypes = MRI_TYPES) -> pd.DataFrame:
    """Two-sample KS test, observed values vs the completed column, for every imputed numeric
    column (table S36): a small statistic means imputation kept the distribution.

    Parameters
    ----------
    original, imputed : DataFrame
        The table before and after :func:`impute` (same rows).
    types : VariableTypes
        The variables' classes (numeric ones are tested).

    Returns
    -------
    DataFrame
        ``variable``, ``n_imputed``, ``ks_statistic``, ``p_value``; variables with nothing imputed
        are left out.
    """
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
    """A column name usable in a patsy formula (other characters -> ``_``).

    Parameters
    ----------
    name : str

    Returns
    -------
    str
    """
    return re.sub(r"\W+", "_", str(name)).strip("_")


def encode(df: pd.DataFrame, types: VariableTypes = MRI_TYPES,
           references: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Model-ready features.

    One-hot nominal (reference level dropped), ordinal codes, continuous variables through
    scikit-learn's ``StandardScaler`` (mean 0, SD 1 with ddof 0), discrete ones through
    ``MinMaxScaler`` (0 at the smallest value, 1 at the largest), binary as is. The scalers are
    fitted on the rows of ``df``.

    Parameters
    ----------
    df : DataFrame
        Complete (imputed) variables.
    types : VariableTypes
        Each column's class.
    references : mapping, optional
        The dropped level per nominal column (else the first in sorted order).

    Returns
    -------
    DataFrame
        One column per feature (``<variable>_<level>`` for one-hot columns), same rows.
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
    for scaler, columns in ((StandardScaler, types.continuous), (MinMaxScaler, types.discrete)):
        for c in [c for c in columns if c in df]:  # a constant column scales to 0 with either scaler
            values = scaler().fit_transform(df[[c]].astype(float).to_numpy())[:, 0]
            parts.append(pd.Series(values, index=df.index, name=c).to_frame())
    for c in [c for c in types.binary if c in df]:
        parts.append(df[c].astype(float).rename(c).to_frame())
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=df.index)


# ----------------------------------------------------------------------------- 4. collinearity
def vif_table(features: pd.DataFrame) -> pd.DataFrame:
    """Variance inflation factor of every feature (an intercept is added, as VIF assumes).

    Parameters
    ----------
    features : DataFrame
        Numeric features.

    Returns
    -------
    DataFrame
        ``feature``, ``vif`` (NaN for a constant feature).
    """
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
    """Drop the largest-VIF feature above ``threshold`` (never one in ``keep``) until none is left
    above it; constant features go first (even those in ``keep``: a constant has no effect to
    estimate).

    Parameters
    ----------
    features : DataFrame
        Numeric features.
    threshold : float
        VIF above which a feature is dropped.
    keep : sequence of str
        Features never dropped for VIF.

    Returns
    -------
    kept : list of str
        The features left.
    table : DataFrame
        ``feature``, ``vif_before``, ``vif_after``, ``dropped``.
    """
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
    variance_components: dict = field(default_factory=dict)  # nested component name -> variance
    log_likelihood: float = float("nan")  # REML log-likelihood


def formula_string(response: str, fixed: Sequence[str], interactions: Sequence[tuple[str, str]] = ()) -> str:
    """The patsy formula ``fit_mixed`` fits: ``response ~ a + b + a:b`` (``1`` with no term).

    Parameters
    ----------
    response : str
    fixed : sequence of str
        Fixed-effect columns.
    interactions : sequence of (str, str)
        Pairs; those whose factors are not both among ``fixed`` are left out.

    Returns
    -------
    str
    """
    terms = list(fixed) + [f"{a}:{b}" for a, b in interactions if a in fixed and b in fixed]
    return f"{response} ~ " + (" + ".join(terms) if terms else "1")


def fit_mixed(data: pd.DataFrame, response: str, fixed: Sequence[str], group: str = "dataset",
              interactions: Sequence[tuple[str, str]] = (),
              variance_components: Mapping[str, str] | None = None) -> MixedFit:
    """``MixedLM`` (REML): ``response ~ fixed + a:b`` with a random intercept per ``group``.

    Optimisers are tried in turn (lbfgs, Powell, Nelder-Mead) until one converges; a
    rank-deficient fixed-effect design is refused with a message.

    Parameters
    ----------
    data : DataFrame
        Response, features and the group column.
    response : str
    fixed : sequence of str
        Fixed effects.
    group : str
        Random-intercept grouping (datasets).
    interactions : sequence of (str, str)
        Two-way interactions among ``fixed``.
    variance_components : mapping, optional
        Random intercepts nested in the group, ``{name: column}`` (``{"subject": "subject_id"}``:
        one intercept per subject within its dataset).

    Returns
    -------
    MixedFit
        ``coefficients`` (term, coef, se, ci_low, ci_high, p_value; 95% CIs), ``converged``, the
        random-intercept, residual and nested variances, ``n_obs``, ``n_groups``, ``formula`` and
        the REML log-likelihood.
    """
    formula = formula_string(response, fixed, interactions)
    vc = {name: f"0 + C({column})" for name, column in (variance_components or {}).items()}
    model = smf.mixedlm(formula, data, groups=data[group], re_formula="1", vc_formula=vc or None)
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
    components = dict(zip(model.exog_vc.names, np.asarray(res.vcomp, float))) if vc else {}
    return MixedFit(coef, bool(res.converged), float(res.cov_re.iloc[0, 0]), float(res.scale), int(res.nobs),
                    int(data[group].nunique()), formula, components, float(res.llf))


def simulate_table(coefficients: Mapping[str, float], *, n_datasets: int = 12, n_subjects: int = 20,
                   intercept: float = 0.7, random_sd: float = 0.05, noise_sd: float = 0.03,
                   seed: int = 0) -> pd.DataFrame:
    """Data with known fixed effects (standard-normal features) and a random dataset intercept.

    Parameters
    ----------
    coefficients : mapping
        Feature name -> true coefficient.
    n_datasets, n_subjects : int
        Groups and rows per group.
    intercept, random_sd, noise_sd : float
        Fixed intercept, SD of the dataset intercepts, residual SD.
    seed : int

    Returns
    -------
    DataFrame
        ``dataset``, ``dice`` and one column per feature, ``n_datasets * n_subjects`` rows.
    """
    rng = np.random.default_rng(seed)
    n = n_datasets * n_subjects
    data = {name: rng.standard_normal(n) for name in coefficients}
    dataset = np.repeat([f"d{i:02d}" for i in range(n_datasets)], n_subjects)
    effect = dict(zip(np.unique(dataset), rng.normal(0, random_sd, n_datasets)))
    y = intercept + sum(coefficients[k] * data[k] for k in coefficients)
    y = y + np.array([effect[d] for d in dataset]) + rng.normal(0, noise_sd, n)
    return pd.DataFrame({"dataset": dataset, "dice": y, **data})
