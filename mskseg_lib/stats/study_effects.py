"""The study's mixed-effects analysis: MRI parameters and finetuning choices vs mean Dice (figure 5a).

The study (Methods, "Hierarchical Mixed-Effects Modeling of MRI Parameters and Finetuning
Strategies"; Results, "Statistical Analysis of MRI Acquisition Parameters") fits, per
finetuning type, a linear mixed model of the *mean Dice across subjects per dataset*. Here:

1. ``dataset_level_scores``: the response ``mean_dice`` is the mean of the test subjects'
   Dice, one value per (experiment, dataset) (the study's MeanDiceScore). Each row carries the
   experiment's covariates: ``finetuned``, ``encoder_finetuned`` (image encoder updated),
   ``box_shift_applied`` (box-shift augmentation on) and ``initial_weights``.
2. ``dataset_acquisition``: the acquisition covariates of each dataset, numeric ones as the
   mean over its subjects, categorical ones (vendor, field strength, 2D/3D) as the most
   frequent value.
3. ``prepare_design``: the preprocessing, once over the modelling table: random-forest
   imputation of what is still missing (per dataset, since a dataset's acquisition is one fact
   however many experiments score it) with a Kolmogorov-Smirnov check; one-hot / ordinal
   encoding, ``StandardScaler`` on continuous and ``MinMaxScaler`` on discrete variables; VIF
   over the study's acquisition features (TE, TR, flip angle, field strength, vendor, slice
   thickness, image rows, pixel spacing, 2D/3D; SAR is not recorded here), the largest above the
   threshold dropped first; then imputation, encoding and scaling again on what is left.
4. ``fit_type``: one ``MixedLM`` (REML, random intercept per dataset) per finetuning type
   (Type 1 single dataset, Type 2 mixed by anatomy / tissue / sequence, Type 3 mskSAM = all
   MSK), on that type's finetuned rows plus the SAM ViT-B zero-shot rows of the same datasets.
   The fixed effects (:func:`study_formula`) are the five MRI parameters the study names (echo
   time, pixel spacing, slice thickness, flip angle, acquisition mode 2D = 0 / 3D = 1), the
   finetuning covariates, the initial weights (SAM the reference level) and the two-way
   interactions the text names (TE x slice thickness, TE x finetuning strategy, the strategy
   being whether the encoder was finetuned). Terms that a type's rows cannot estimate (constant,
   collinear, or more dataset-level terms than its datasets allow) are dropped and listed.

With a dozen datasets every acquisition covariate has a dozen distinct values at most, so the
random forests impute from a dozen rows, the KS test has little power, the VIF screen works on
near-saturated designs and each MRI effect is a between-dataset contrast: read the estimates as
descriptions of these datasets, not as physics.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Sequence

import numpy as np
import pandas as pd

from mskseg_lib.data.errors import DataError, SettingsError
from mskseg_lib.stats.mixed_effects import (
    STUDY_INTERACTIONS,
    SUBJECT_DICE_COLUMNS,
    MixedEffectsSettings,
    VariableTypes,
    arm_name,
    drop_collinear,
    encode,
    first_column,
    fit_mixed,
    formula_string,
    impute,
    ks_sensitivity,
    row_settings,
    safe_name,
)

__all__ = ["STUDY_MRI_TERMS", "SETTING_TERMS", "DEFAULT_INTERACTIONS", "StudyEffects", "analyse_study_effects",
           "dataset_acquisition", "dataset_level_scores", "fit_type", "modelling_rows", "prepare_design",
           "published_mixed_effects", "study_formula", "with_published"]

RESPONSE = "mean_dice"
GROUP = "dataset"
FINETUNE_TYPES = ("single", "mixed", "all_msk")
TYPE_NAMES = {"single": "Type 1: single dataset", "mixed": "Type 2: mixed (anatomy / tissue / sequence)",
              "all_msk": "Type 3: mskSAM (all MSK datasets)"}
# the study's MRI fixed effects, in its order (EchoTime, PixelSpacing, SliceThickness, FlipAngle, AcquisitionMode)
STUDY_MRI_TERMS = ("te_ms", "pixel_spacing_mm", "slice_thickness_mm", "flip_angle_deg", "acquisition_3d")
# the finetuning covariates; ``finetuned`` separates the SAM zero-shot reference rows from SAM-initialised
# finetuned rows (without it a frozen-encoder, unshifted SAM finetune would share the reference's covariates)
SETTING_TERMS = ("finetuned", "encoder_finetuned", "box_shift_applied")
DEFAULT_INTERACTIONS = STUDY_INTERACTIONS
# the VIF screen: the study's ten features less SAR (not recorded by the cohort or DICOM manifests)
VIF_VARIABLES = ("te_ms", "tr_ms", "flip_angle_deg", "field_strength_t", "vendor", "slice_thickness_mm",
                 "rows_px", "pixel_spacing_mm", "acquisition_3d")
STUDY_TYPES = VariableTypes(nominal=("vendor",), ordinal={"field_strength_t": (1.5, 3.0)},
                            continuous=("te_ms", "tr_ms", "slice_thickness_mm", "pixel_spacing_mm"),
                            discrete=("flip_angle_deg", "rows_px", "age_years"), binary=("acquisition_3d",))
NUMERIC = ("te_ms", "tr_ms", "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm", "rows_px", "age_years")
CATEGORICAL = ("vendor", "field_strength_t", "acquisition_3d")
ROLES = {**{v: "VIF screen" for v in VIF_VARIABLES}, **{t: "fixed effect (after the VIF screen)" for t in STUDY_MRI_TERMS},
         "age_years": "descriptive (imputed and scaled, not modelled)"}
MIN_GROUPS = 3  # a between-dataset variance from two datasets is not an estimate
MIN_RESIDUAL_DF = 2  # rows beyond the fixed effects and the two variances
ACQUISITION_MODE = {"2D": 0, "3D": 1}


# ----------------------------------------------------------------------------- 1. the response
def dataset_level_scores(subject_scores: pd.DataFrame, experiments: pd.DataFrame, *, condition: str = "gt_box",
                         dice_column: str | None = None) -> pd.DataFrame:
    """The study's MeanDiceScore: one row per (experiment, dataset).

    Parameters
    ----------
    subject_scores : one row per (experiment_id, condition, dataset, subject_id) with a subject
        Dice column (``dice_column``; default the first of ``SUBJECT_DICE_COLUMNS`` present).
        Zero-shot baselines have ``experiment_id`` ``zero_shot:<model key>``.
    experiments : the finetuning grid's experiment table (``experiment_id``, ``mix_kind``,
        ``model_key``, ``encoder`` or ``strategy``, ``box_shift_grid_px`` or ``box_shift_px``).
    condition : the prompt condition whose Dice is the response.

    Returns
    -------
    DataFrame with ``experiment_id, dataset, mean_dice, sd_dice, n_subjects, dice_column``
    and the settings (``finetune_type, finetuned, encoder_finetuned, box_shift_applied,
    initial_weights, arm``).
    """
    dice_column = dice_column or first_column(subject_scores, SUBJECT_DICE_COLUMNS, "subject Dice", "subject scores")
    for c in ("experiment_id", "condition", "dataset", "subject_id", dice_column):
        first_column(subject_scores, (c,), c, "subject scores")
    scores = subject_scores[subject_scores["condition"] == condition]
    if scores.empty:
        raise DataError("subject scores", f"no rows under condition {condition!r} "
                                          f"(conditions: {sorted(subject_scores['condition'].unique())})")
    per = (scores.groupby(["experiment_id", GROUP], sort=True)
           .agg(mean_dice=(dice_column, "mean"), sd_dice=(dice_column, "std"), n_subjects=("subject_id", "nunique"))
           .reset_index())
    per["dice_column"] = dice_column
    return pd.concat([per, row_settings(per["experiment_id"], experiments)], axis=1)


def modelling_rows(scores: pd.DataFrame, reference_model: str) -> tuple[pd.DataFrame, str]:
    """The finetuned rows and the reference model's zero-shot rows.

    The reference is ``<reference_model> zero-shot`` (the study: SAM ViT-B); where that model
    has no zero-shot rows (its checkpoint is missing) the first zero-shot model present in
    sorted order stands in. Other zero-shot models are not part of the study's models.

    Parameters
    ----------
    scores : DataFrame
        :func:`dataset_level_scores`' table.
    reference_model : str
        Zoo key of the reference level.

    Returns
    -------
    rows : DataFrame
        The modelling rows.
    reference : str
        The reference arm used.
    """
    zero_shot = scores[scores["finetuned"] == 0]
    if zero_shot.empty:
        raise DataError("subject scores", "no zero-shot rows to serve as the reference level")
    wanted = arm_name(reference_model, finetuned=False)
    arms = sorted(zero_shot["arm"].unique())
    reference = wanted if wanted in arms else arms[0]
    rows = scores[(scores["finetuned"] == 1) | (scores["arm"] == reference)]
    return rows.reset_index(drop=True), reference


# ----------------------------------------------------------------------------- 2. acquisition per dataset
def _mode(values: pd.Series):
    """The most frequent non-missing value (the smallest of tied ones); NaN when all are missing."""
    modes = values.dropna().mode()
    return modes.iloc[0] if len(modes) else np.nan


def acquisition_mode(subjects: pd.DataFrame) -> pd.Series:
    """The study's AcquisitionMode: 0 for a 2D acquisition, 1 for 3D.

    Parameters
    ----------
    subjects : DataFrame
        With an ``acquisition`` column (``"2D"`` / ``"3D"``).

    Returns
    -------
    Series
        0.0, 1.0 or NaN where not recorded, aligned with ``subjects``.
    """
    values = subjects["acquisition"]
    bad = sorted(set(values.dropna().astype(str)) - set(ACQUISITION_MODE))
    if bad:
        raise DataError("subject table", f"column 'acquisition' must be '2D' or '3D', found {bad}")
    return values.map(ACQUISITION_MODE).astype(float)


def dataset_acquisition(subjects: pd.DataFrame, numeric: Sequence[str] = NUMERIC,
                        categorical: Sequence[str] = CATEGORICAL) -> pd.DataFrame:
    """One row per dataset: ``n_subjects``, the mean of each numeric and the mode of each
    categorical acquisition column over the dataset's subjects (missing values skipped; a
    dataset where every subject lacks a value keeps NaN, for the imputation).

    Parameters
    ----------
    subjects : DataFrame
        ``dataset``, ``subject_id``, the ``numeric`` columns and the ``categorical`` ones
        (``acquisition_3d`` may instead come from ``acquisition``, 2D/3D).
    numeric, categorical : sequence of str
        The columns summarised by mean and by mode.

    Returns
    -------
    DataFrame
        ``dataset``, ``n_subjects`` and one column per variable (raw units: ms, degrees, mm, T).
    """
    subjects = subjects.copy()
    if "acquisition_3d" in categorical and "acquisition_3d" not in subjects and "acquisition" in subjects:
        subjects["acquisition_3d"] = acquisition_mode(subjects)
    missing = [c for c in ("dataset", "subject_id", *numeric, *categorical) if c not in subjects]
    if missing:
        raise DataError("subject table", f"missing acquisition columns {missing}")
    groups = subjects.groupby(GROUP, sort=True)
    out = groups["subject_id"].nunique().rename("n_subjects").to_frame()
    out = out.join(groups[list(numeric)].mean(numeric_only=False))
    for c in categorical:
        out[c] = groups[c].agg(_mode)
    return out.reset_index()


# ----------------------------------------------------------------------------- 3. preprocessing
@dataclass
class Prepared:
    """The preprocessed modelling table and the preprocessing's own tables."""

    data: pd.DataFrame  # modelling rows with every per-dataset (imputed) acquisition variable, raw units (S34)
    design: pd.DataFrame  # the same rows with encoded and scaled features (what the models see)
    missingness: pd.DataFrame  # S35: variable, type, role, missing per subject and per dataset
    ks: pd.DataFrame  # S36: observed vs completed per imputed variable (dataset level)
    vif: pd.DataFrame  # S37: feature, VIF before / after the screen, dropped, role, in_model (offered to the models)
    kept_variables: list[str]  # acquisition variables left after the VIF screen


def _features(design: pd.DataFrame, variables: Sequence[str]) -> list[str]:
    """Encoded feature columns that come from ``variables`` (one-hot columns carry a prefix)."""
    names = [safe_name(v) for v in variables]
    return [c for c in design.columns if any(c == n or c.startswith(n + "_") for n in names)]


def _encode_rows(rows: pd.DataFrame, acquisition: pd.DataFrame, variables: Sequence[str],
                 types: VariableTypes) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = rows.merge(acquisition, on=GROUP, how="left", validate="many_to_one")
    keep = [v for v in types.all() if v in variables and v in data]
    features = encode(data[keep], types)
    ids = ["experiment_id", GROUP, RESPONSE, "n_subjects", "finetune_type", "arm", "initial_weights", *SETTING_TERMS]
    return data, pd.concat([data[ids].reset_index(drop=True), features.reset_index(drop=True)], axis=1)


def _sub_types(types: VariableTypes, variables: Sequence[str]) -> VariableTypes:
    keep = set(variables)
    return VariableTypes(nominal=tuple(c for c in types.nominal if c in keep),
                         ordinal={c: v for c, v in types.ordinal.items() if c in keep},
                         continuous=tuple(c for c in types.continuous if c in keep),
                         discrete=tuple(c for c in types.discrete if c in keep),
                         binary=tuple(c for c in types.binary if c in keep))


def prepare_design(rows: pd.DataFrame, subjects: pd.DataFrame, *, vif_threshold: float = 10.0, seed: int = 0,
                   types: VariableTypes = STUDY_TYPES) -> Prepared:
    """Impute, encode, scale, screen by VIF, and do it all again on the variables left.

    Imputation runs on the per-dataset table (one row per dataset); scaling and the VIF screen
    on the modelling rows, as the study's single preprocessed table.

    Parameters
    ----------
    rows : DataFrame
        The modelling rows (:func:`modelling_rows`).
    subjects : DataFrame
        The subjects table (acquisition columns), aggregated here over every subject of each
        modelled dataset.
    vif_threshold : float
        VIF above which a feature is dropped, largest first.
    seed : int
        Seed of the random forests.
    types : VariableTypes
        Each variable's class.

    Returns
    -------
    Prepared
        ``data`` (S34, raw units), ``design`` (encoded and scaled), ``missingness`` (S35), ``ks``
        (S36), ``vif`` (S37) and ``kept_variables``.
    """
    datasets = sorted(rows[GROUP].unique())
    in_model = subjects[subjects[GROUP].isin(datasets)].copy()
    if "acquisition_3d" not in in_model and "acquisition" in in_model:
        in_model["acquisition_3d"] = acquisition_mode(in_model)
    variables = [v for v in types.all() if v in in_model]
    observed = dataset_acquisition(in_model, [c for c in NUMERIC if c in variables],
                                   [c for c in CATEGORICAL if c in variables])
    recorded = [c for c in observed.columns if c not in (GROUP, "n_subjects")]
    acq_cols = [c for c in recorded if observed[c].notna().any()]  # a variable no dataset records is left out
    filled = impute(observed[acq_cols], _sub_types(types, acq_cols), seed=seed)
    missing = pd.DataFrame([{"variable": c, "type": types.kind(c),
                             "role": ROLES.get(c, "") if c in acq_cols else "left out: no dataset records it",
                             "n_missing_subjects": int(in_model[c].isna().sum()),
                             "fraction_missing_subjects": float(in_model[c].isna().mean()),
                             "n_missing_datasets": int(observed[c].isna().sum()), "n_datasets": len(observed),
                             "n_levels_datasets": int(filled[c].nunique()) if c in acq_cols else 0}
                            for c in recorded])
    ks = ks_sensitivity(observed[acq_cols], filled, _sub_types(types, acq_cols))
    acquisition = pd.concat([observed[[GROUP]], filled], axis=1)
    data, design = _encode_rows(rows, acquisition, acq_cols, types)
    screen = _features(design, [v for v in VIF_VARIABLES if v in acq_cols])
    kept, vif = drop_collinear(design[screen], vif_threshold)
    kept_vars = [v for v in acq_cols if v not in VIF_VARIABLES or _features(design[kept], [v])]
    # the second pass: impute from the kept variables only, encode and scale them again
    filled2 = impute(observed[kept_vars], _sub_types(types, kept_vars), seed=seed)
    acquisition2 = pd.concat([observed[[GROUP]], filled2], axis=1)
    second, design = _encode_rows(rows, acquisition2, kept_vars, types)
    data[kept_vars] = second[kept_vars]  # raw units: the second pass's values where a variable was kept
    imputed = observed[acq_cols].isna()
    notes = {d: ", ".join(c for c in acq_cols if imputed.loc[i, c]) for i, d in enumerate(observed[GROUP])}
    data["imputed_variables"] = data[GROUP].map(notes)
    vif["role"] = [ROLES.get(_source(f, acq_cols), "") for f in vif["feature"]]
    vif["in_model"] = [(f in STUDY_MRI_TERMS) and not d for f, d in zip(vif["feature"], vif["dropped"])]
    return Prepared(data, design, missing, ks, vif, kept_vars)


def _source(feature: str, variables: Sequence[str]) -> str:
    for v in sorted(variables, key=len, reverse=True):
        if feature == safe_name(v) or feature.startswith(safe_name(v) + "_"):
            return v
    return feature


# ----------------------------------------------------------------------------- 4. the models
def study_formula(mri_terms: Sequence[str] = STUDY_MRI_TERMS, weights: Sequence[str] = (),
                  interactions: Sequence[tuple[str, str]] = DEFAULT_INTERACTIONS) -> str:
    """The patsy formula of one type's model with every term estimable.

    Parameters
    ----------
    mri_terms : sequence of str
        MRI fixed effects.
    weights : sequence of str
        The non-reference initial weights (zoo keys), each a 0/1 column ``initial_weights_<key>``.
    interactions : sequence of (str, str)
        Two-way interactions.

    Returns
    -------
    str
        The formula (the random intercept per dataset is MixedLM's ``groups``, not a term).
    """
    fixed = [*mri_terms, *SETTING_TERMS, *[f"initial_weights_{safe_name(w)}" for w in weights]]
    return formula_string(RESPONSE, fixed, [(safe_name(a), safe_name(b)) for a, b in interactions])


def _dataset_level(column: np.ndarray, groups: np.ndarray) -> bool:
    """True when ``column`` is constant inside every group (a between-dataset term)."""
    s = pd.Series(column)
    return bool((s.groupby(groups).nunique() <= 1).all())


def select_terms(rows: pd.DataFrame, candidates: Sequence[str], interactions: Sequence[tuple[str, str]],
                 group: str = GROUP) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """The candidate terms (then interactions) a type's rows can estimate, in the given order.

    A term is dropped when it is constant in the rows, adds nothing to the design's rank (a
    linear combination of the terms before it), or is a between-dataset term beyond what the
    datasets allow (``n_datasets - 2`` beside the intercept, leaving one degree of freedom for
    the random intercept's variance).

    Parameters
    ----------
    rows : DataFrame
        The type's modelling rows (encoded features).
    candidates : sequence of str
        Fixed-effect columns in order of priority.
    interactions : sequence of (str, str)
        Candidate interactions.
    group : str
        The grouping column (datasets).

    Returns
    -------
    terms : list of str
    interactions : list of (str, str)
    dropped : list of str
        One reason per dropped term or interaction.
    """
    groups = rows[group].to_numpy()
    n_groups = len(np.unique(groups))
    base = [np.ones(len(rows))]
    n_between = 0
    kept, kept_inter, dropped = [], [], []

    def try_add(name: str, column: np.ndarray) -> bool:
        nonlocal n_between
        if np.ptp(column) == 0:
            dropped.append(f"{name} (constant in this model's rows)")
            return False
        trial = np.column_stack([*base, column])
        if np.linalg.matrix_rank(trial) < trial.shape[1]:
            dropped.append(f"{name} (collinear with the terms before it)")
            return False
        between = _dataset_level(column, groups)
        if between and n_between + 1 > n_groups - 2:
            dropped.append(f"{name} (between-dataset term beyond what {n_groups} datasets allow)")
            return False
        n_between += between
        base.append(column)
        return True

    for t in candidates:
        if try_add(t, rows[t].to_numpy(float)):
            kept.append(t)
    for a, b in interactions:
        if a not in kept or b not in kept:
            dropped.append(f"{a}:{b} (a factor is not in the model)")
        elif try_add(f"{a}:{b}", rows[a].to_numpy(float) * rows[b].to_numpy(float)):
            kept_inter.append((a, b))
    while len(rows) - (1 + len(kept) + len(kept_inter) + 1) < MIN_RESIDUAL_DF and (kept or kept_inter):
        if kept_inter:
            a, b = kept_inter.pop()
            dropped.append(f"{a}:{b} (too few rows)")
        else:
            dropped.append(f"{kept.pop()} (too few rows)")
    return kept, kept_inter, dropped


FIT_COLUMNS = ["finetune_type", "type_name", "status", "reference_arm", "n_obs", "n_groups", "n_experiments",
               "converged", "random_intercept_var", "residual_var", "log_likelihood", "dropped_terms", "formula",
               "random_effects", "dice_column"]


def fit_type(design: pd.DataFrame, kind: str, *, reference_arm: str, mri_terms: Sequence[str],
             interactions: Sequence[tuple[str, str]] = DEFAULT_INTERACTIONS) -> tuple[dict, pd.DataFrame]:
    """One finetuning type's model: its finetuned rows and the reference rows of its datasets.

    Parameters
    ----------
    design : DataFrame
        :attr:`Prepared.design`.
    kind : str
        ``single``, ``mixed`` or ``all_msk``.
    reference_arm : str
        The reference level's arm.
    mri_terms : sequence of str
        The MRI fixed effects left after the VIF screen.
    interactions : sequence of (str, str)

    Returns
    -------
    fit : dict
        The fit row (status, rows, datasets, convergence, variances, dropped terms, formula); a type
        that cannot be fitted gets a ``status`` saying why.
    coefficients : DataFrame
        term, coef, se, 95% CI, p, with a ``Group Var`` row for the random intercept's variance
        (as statsmodels' summary has it); empty when not fitted.
    """
    tuned = design[design["finetune_type"] == kind]
    fit_row = {"finetune_type": kind, "type_name": TYPE_NAMES.get(kind, kind), "reference_arm": reference_arm,
               "random_effects": f"random intercept per {GROUP}"}
    empty = pd.DataFrame()
    if tuned.empty:
        return {**fit_row, "status": f"not run: no finished {kind} experiment"}, empty
    reference = design[(design["arm"] == reference_arm) & design[GROUP].isin(tuned[GROUP].unique())]
    rows = pd.concat([reference, tuned], ignore_index=True)
    fit_row.update(n_obs=len(rows), n_groups=rows[GROUP].nunique(), n_experiments=rows["experiment_id"].nunique())
    if rows[GROUP].nunique() < MIN_GROUPS:
        return {**fit_row, "status": f"not estimable: {rows[GROUP].nunique()} dataset(s), fewer than {MIN_GROUPS} "
                                     "for the random intercept"}, empty
    reference_weights = reference["initial_weights"].iloc[0] if len(reference) else reference_arm.split(" ")[0]
    weights = sorted(set(rows["initial_weights"]) - {reference_weights})
    weight_cols = []
    for w in weights:
        col = f"initial_weights_{safe_name(w)}"
        rows[col] = (rows["initial_weights"] == w).astype(float)
        weight_cols.append(col)
    candidates = [*[t for t in STUDY_MRI_TERMS if t in mri_terms], *SETTING_TERMS, *weight_cols]
    pairs = [(safe_name(a), safe_name(b)) for a, b in interactions]
    terms, inter, dropped = select_terms(rows, candidates, pairs)
    fit_row["dropped_terms"] = "; ".join(dropped)
    try:
        fit = fit_mixed(rows, RESPONSE, terms, GROUP, inter)
    except (ValueError, RuntimeError) as exc:
        return {**fit_row, "status": f"not estimable: {exc}"}, empty
    fit_row.update(status="fitted", converged=fit.converged, random_intercept_var=fit.random_intercept_var,
                   residual_var=fit.residual_var, log_likelihood=fit.log_likelihood, formula=fit.formula)
    coef = pd.concat([fit.coefficients, pd.DataFrame([{"term": "Group Var", "coef": fit.random_intercept_var}])],
                     ignore_index=True)
    return fit_row, coef


# ----------------------------------------------------------------------------- everything
@dataclass
class StudyEffects:
    """Notebook 04's study tables: S34 (data), S35, S36, S37, S38 (coefficients), X04a (fits)."""

    data: pd.DataFrame
    missingness: pd.DataFrame
    ks: pd.DataFrame
    vif: pd.DataFrame
    coefficients: pd.DataFrame  # finetune_type, term, coef, se, ci_low, ci_high, p_value
    fits: pd.DataFrame
    reference_arm: str
    excluded_arms: list[str]  # zero-shot arms present but not part of the study's models


def analyse_study_effects(subject_scores: pd.DataFrame, experiments: pd.DataFrame, subjects: pd.DataFrame,
                          settings: MixedEffectsSettings = MixedEffectsSettings(), *,
                          dice_column: str | None = None) -> StudyEffects:
    """The study's analysis end to end (see the module docstring).

    Parameters
    ----------
    subject_scores : DataFrame
        One row per (experiment, condition, dataset, subject) with the subject's Dice (0-1),
        zero-shot baselines included (``FinetuneGrid.subjects``).
    experiments : DataFrame
        The grid's experiment table (type, model, strategy, box shift, status).
    subjects : DataFrame
        The prepared subjects table (acquisition columns: TE, TR in ms, flip angle in degrees,
        slice thickness and pixel spacing in mm, field strength in T, vendor, rows).
    settings : MixedEffectsSettings
        Reference model, condition, interactions (pairs among the MRI terms and the finetuning
        covariates), VIF threshold and seed; the study's by default.
    dice_column : str, optional
        The subject Dice column (default: the first of ``SUBJECT_DICE_COLUMNS`` present).

    Returns
    -------
    StudyEffects
        The modelling data (S34), missingness (S35), KS checks (S36), VIF screen (S37),
        coefficients (S38), one fit row per finetuning type (X04a), the reference arm and the
        zero-shot arms left out.
    """
    allowed = (*STUDY_MRI_TERMS, *SETTING_TERMS)
    for pair in settings.interactions:
        if any(v not in allowed for v in pair):
            raise SettingsError(f"mixed_effects.interactions: {list(pair)!r} is not a pair of {', '.join(allowed)}")
    scores = dataset_level_scores(subject_scores, experiments, condition=settings.condition, dice_column=dice_column)
    rows, reference = modelling_rows(scores, settings.reference_model)
    excluded = sorted(set(scores.loc[scores["finetuned"] == 0, "arm"]) - {reference})
    prepared = prepare_design(rows, subjects, vif_threshold=settings.vif_threshold, seed=settings.seed)
    mri = [t for t in STUDY_MRI_TERMS if t in prepared.kept_variables]
    pairs = list(settings.interactions)
    fits, coefs = [], []
    for kind in FINETUNE_TYPES:
        row, coef = fit_type(prepared.design, kind, reference_arm=reference, mri_terms=mri, interactions=pairs)
        fits.append({**row, "dice_column": scores["dice_column"].iloc[0]})
        if not coef.empty:
            coefs.append(coef.assign(finetune_type=kind))
    columns = ["finetune_type", "term", "coef", "se", "ci_low", "ci_high", "p_value"]
    coefficients = (pd.concat(coefs, ignore_index=True)[columns] if coefs else pd.DataFrame(columns=columns))
    fit_table = pd.DataFrame(fits).reindex(columns=FIT_COLUMNS)
    for c in ("n_obs", "n_groups", "n_experiments"):
        fit_table[c] = fit_table[c].astype("Int64")
    order = {k: i for i, k in enumerate(("zero_shot", *FINETUNE_TYPES))}
    data = prepared.data.sort_values(["finetune_type", "experiment_id", GROUP],
                                     key=lambda s: s.map(order) if s.name == "finetune_type" else s)
    return StudyEffects(data.reset_index(drop=True), prepared.missingness, prepared.ks, prepared.vif, coefficients,
                        fit_table, reference, excluded)


# ----------------------------------------------------------------------------- published values
PUBLISHED_COLUMNS = ["published_coef", "published_ci_low", "published_ci_high", "published_range_low",
                     "published_range_high", "published_finetune_type", "published_note"]


def published_mixed_effects() -> pd.DataFrame:
    """The study's published fixed effects (``mskseg_lib/reference/paper_mixed_effects.csv``).

    Returns
    -------
    DataFrame
        term, finetune_type (``single`` / ``mixed`` / ``all_msk``, or ``not stated``), coef, ci_low,
        ci_high, range_low, range_high (a range over the types where the text gives only that), note.
    """
    with resources.files("mskseg_lib.reference").joinpath("paper_mixed_effects.csv").open() as fh:
        return pd.read_csv(fh)


def with_published(coefficients: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """The regenerated coefficients with the published values beside each (type, term).

    A published value given for the row's finetuning type is used first; a value whose type
    the text does not state (``not stated``) is shown on every type's row, and
    ``published_finetune_type`` says which was used. The published range columns carry the
    study's range over types (flip angle, echo time).

    Parameters
    ----------
    coefficients : DataFrame
        finetune_type, term, coef, ... (S38 or X04b).
    published : DataFrame, optional
        :func:`published_mixed_effects` (read when not given).

    Returns
    -------
    DataFrame
        ``coefficients`` with the ``PUBLISHED_COLUMNS`` added.
    """
    published = published_mixed_effects() if published is None else published
    out = coefficients.copy()
    cols = {c: [] for c in PUBLISHED_COLUMNS}
    for kind, term in zip(out["finetune_type"], out["term"]):
        match = published[(published["term"] == term) & (published["finetune_type"] == kind)]
        stated = published[(published["term"] == term) & (published["finetune_type"] == "not stated")]
        point = match if not match.empty else stated[stated["coef"].notna()]
        spread = stated[stated["range_low"].notna()]
        p = point.iloc[0] if not point.empty else None
        r = spread.iloc[0] if not spread.empty else None
        cols["published_coef"].append(p["coef"] if p is not None else np.nan)
        cols["published_ci_low"].append(p["ci_low"] if p is not None else np.nan)
        cols["published_ci_high"].append(p["ci_high"] if p is not None else np.nan)
        cols["published_range_low"].append(r["range_low"] if r is not None else np.nan)
        cols["published_range_high"].append(r["range_high"] if r is not None else np.nan)
        cols["published_finetune_type"].append(p["finetune_type"] if p is not None else
                                                ("not stated" if r is not None else ""))
        notes = [x["note"] for x in (p, r) if x is not None and isinstance(x["note"], str)]
        cols["published_note"].append("; ".join(dict.fromkeys(notes)))
    for c, v in cols.items():
        out[c] = v
    return out
