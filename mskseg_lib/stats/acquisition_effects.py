"""Sensitivity analysis: the mixed model at the *subject* level, and the physics direction check.

The study's own analysis (one mean Dice per experiment and dataset) is
:mod:`mskseg_lib.stats.study_effects`. This module keeps the project's earlier, finer-grained
model as a labelled sensitivity analysis (tables X04c/X04d): does the picture change when each
test subject's Dice is a row of its own? ``analyse_effects`` runs the steps of
:mod:`mskseg_lib.stats.mixed_effects`:

1. acquisition parameters are imputed once per *subject* (a subject scored by ten experiments
   is still one scan, so it must not weigh ten times in the imputation or its KS check);
2. one model per finetuning type (single dataset, mixed anatomy/muscle, all-MSK). Each model's
   data are that type's finetuned rows plus the zero-shot rows on the same datasets, the
   reference arm being the reference model zero-shot (SAM ViT-B in the study; the first
   available zero-shot model otherwise, stated in the fit table);
3. fixed effects: every recorded MRI parameter, the arm (model x zero-shot/finetuned, one-hot
   against the reference), image encoder finetuned, box shift applied, and two-way interactions
   from the profile; features with VIF > threshold are dropped and the preprocessing repeated on
   what remains (imputation with only the kept parameters as predictors, scaling on the model's
   own rows);
4. random intercepts per dataset and per subject within its dataset (statsmodels ``MixedLM``,
   REML): a subject scored by several experiments gives correlated rows.

``physics_check`` fits the MRI parameters alone to one zero-shot model's Dice over the whole
synthetic cohort and compares the sign of each effect with the sign the cohort's physics implies
(:data:`mskseg_lib.stats.mixed_effects.PHYSICS_SIGNS`).

Nothing here fails because a type is absent or a model is degenerate: that type's row in the fit
table says why (``status``), so a partial grid still gives a report.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from mskseg_lib.stats.mixed_effects import (
    ACQUISITION_COLUMNS,
    MRI_TYPES,
    PHYSICS_SIGNS,
    SUBJECT_DICE_COLUMNS,
    MixedEffectsSettings,
    VariableTypes,
    arm_name,
    assemble_table,
    drop_collinear,
    encode,
    first_column,
    fit_mixed,
    impute,
    ks_sensitivity,
    missingness,
    safe_name,
)

FINETUNE_TYPES = ("single", "mixed", "all_msk")
SETTING_TYPES = {"nominal": ("arm",), "binary": ("encoder_finetuned", "box_shift_applied")}
GROUP = "dataset"
MIN_GROUPS = 3  # a between-dataset variance from two datasets is not an estimate
MIN_RESIDUAL_DF = 3  # observations beyond the fixed effects and the two variances
RESPONSE = "dice"
PHYSICS_RATIONALE = {
    "te_ms": "longer TE: T2 decay lowers tissue signal, not noise (less CNR)",
    "field_strength_t": "higher field: SNR proportional to B0",
    "pixel_spacing_mm": "coarser pixels: fewer pixels across thin structures, more partial volume",
    "slice_thickness_mm": "thicker slices: through-plane partial volume blurs edges",
}
FIT_COLUMNS = ["finetune_type", "status", "reference_arm", "n_obs", "n_groups", "n_experiments", "converged",
               "random_intercept_var", "subject_var", "residual_var", "dropped_features", "dropped_interactions",
               "formula"]


@dataclass
class EffectsAnalysis:
    """The subject-level sensitivity analysis (notebook 04's X04 tables)."""

    table: pd.DataFrame  # assembled rows (one per experiment, dataset, subject) with imputed acquisition
    missingness: pd.DataFrame  # per subject
    ks: pd.DataFrame  # observed vs completed, per subject
    vif: pd.DataFrame  # finetune_type, feature, vif_before, vif_after, dropped
    coefficients: pd.DataFrame  # finetune_type, term, coef, se, ci_low, ci_high, p_value
    fits: pd.DataFrame  # one row per finetuning type: status, convergence, variances, formula


def analysis_types(types: VariableTypes = MRI_TYPES) -> VariableTypes:
    """MRI variable types plus the experiment settings (arm nominal, encoder/box shift binary).

    Parameters
    ----------
    types : VariableTypes

    Returns
    -------
    VariableTypes
    """
    return replace(types, nominal=(*types.nominal, *SETTING_TYPES["nominal"]),
                   binary=(*types.binary, *SETTING_TYPES["binary"]))


def reference_arm(table: pd.DataFrame, preferred_model: str) -> str:
    """The reference level: ``<preferred_model> zero-shot`` if that arm has rows, else the first
    zero-shot arm present (sorted).

    Parameters
    ----------
    table : DataFrame
        Rows with ``finetune_type`` and ``arm``.
    preferred_model : str

    Returns
    -------
    str
        The arm; ValueError when there is no zero-shot row.
    """
    arms = sorted(table.loc[table["finetune_type"] == "zero_shot", "arm"].unique())
    if not arms:
        raise ValueError("mixed effects: no zero-shot rows to serve as the reference arm")
    wanted = arm_name(preferred_model, finetuned=False)
    return wanted if wanted in arms else arms[0]


def impute_subjects(subjects: pd.DataFrame, columns: Sequence[str], types: VariableTypes,
                    seed: int) -> pd.DataFrame:
    """Acquisition columns of each (dataset, subject) imputed from the given columns only.

    Parameters
    ----------
    subjects : DataFrame
        The subjects table.
    columns : sequence of str
        The acquisition columns to complete (absent ones skipped).
    types : VariableTypes
        Their classes.
    seed : int
        Seed of the random forests.

    Returns
    -------
    DataFrame
        ``dataset``, ``subject_id`` and the completed columns, aligned with ``subjects``.
    """
    keep = [c for c in columns if c in subjects]
    sub_types = VariableTypes(nominal=tuple(c for c in types.nominal if c in keep),
                              ordinal={c: v for c, v in types.ordinal.items() if c in keep},
                              continuous=tuple(c for c in types.continuous if c in keep),
                              discrete=tuple(c for c in types.discrete if c in keep))
    filled = impute(subjects[keep], sub_types, seed=seed)
    return pd.concat([subjects[["dataset", "subject_id"]], filled], axis=1)


def _source_variable(feature: str, variables: Sequence[str]) -> str:
    """The raw column an encoded feature came from (one-hot features carry a ``<var>_`` prefix)."""
    for v in sorted(variables, key=len, reverse=True):
        if feature == safe_name(v) or feature.startswith(safe_name(v) + "_"):
            return v
    return feature


def _design(rows: pd.DataFrame, acquisition: pd.DataFrame, variables: Sequence[str], types: VariableTypes,
            reference: str) -> pd.DataFrame:
    data = rows.drop(columns=[c for c in ACQUISITION_COLUMNS if c in rows]).merge(
        acquisition, on=["dataset", "subject_id"], how="left", validate="many_to_one")
    feats = encode(data[[v for v in variables if v in data]], types, references={"arm": reference})
    return pd.concat([data[[GROUP, "subject_id", "experiment_id", RESPONSE]].reset_index(drop=True),
                      feats.reset_index(drop=True)], axis=1)


def _estimable_interactions(data: pd.DataFrame, fixed: list[str],
                            wanted: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """Interactions whose factors were kept and that keep the design full rank."""
    kept, dropped = [], []
    base = [np.ones(len(data)), *[data[f].to_numpy(float) for f in fixed]]
    for a, b in wanted:
        if a not in fixed or b not in fixed:
            dropped.append(f"{a}:{b} (a factor was dropped)")
            continue
        column = data[a].to_numpy(float) * data[b].to_numpy(float)
        trial = np.column_stack([*base, column])
        if np.linalg.matrix_rank(trial) < trial.shape[1]:
            dropped.append(f"{a}:{b} (collinear with the main effects)")
            continue
        base.append(column)
        kept.append((a, b))
    return kept, dropped


def fit_one(rows: pd.DataFrame, subjects: pd.DataFrame, *, reference: str, types: VariableTypes,
            interactions: Sequence[tuple[str, str]], vif_threshold: float, seed: int,
            label: str, subject_effects: bool = False) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Preprocess, prune by VIF, preprocess again on the kept variables, fit.

    ``subject_effects`` adds a random intercept per subject within its dataset where some
    subject has more than one row (several experiments scored it) and some dataset more than
    one subject (with one subject per dataset it would be the dataset's intercept again).

    Parameters
    ----------
    rows : DataFrame
        The model's rows (Dice and settings).
    subjects : DataFrame
        The subjects of those rows (acquisition columns).
    reference : str
        Reference level of ``arm`` ("" for none).
    types : VariableTypes
        Classes of every variable.
    interactions : sequence of (str, str)
    vif_threshold : float
    seed : int
    label : str
        The fit row's ``finetune_type``.
    subject_effects : bool

    Returns
    -------
    fit : dict
        Status, reference, rows, datasets, convergence, variances, dropped features and
        interactions, formula; a model that cannot be fitted gets a ``status`` saying why.
    vif : DataFrame
        The VIF screen.
    coefficients : DataFrame
        term, coef, se, 95% CI, p (empty when not fitted).
    """
    fit_row = {"finetune_type": label, "reference_arm": reference, "n_obs": len(rows),
               "n_groups": rows[GROUP].nunique(), "n_experiments": rows["experiment_id"].nunique()}
    empty = pd.DataFrame()
    if rows[GROUP].nunique() < MIN_GROUPS:
        return {**fit_row, "status": f"not estimable: fewer than {MIN_GROUPS} datasets for the random intercept"}, empty, empty
    variables = types.all()
    acq_cols = [c for c in ACQUISITION_COLUMNS if c in variables]
    in_model = subjects.merge(rows[["dataset", "subject_id"]].drop_duplicates(), on=["dataset", "subject_id"])
    acquisition = impute_subjects(in_model, acq_cols, types, seed)
    data = _design(rows, acquisition, variables, types, reference)
    features = [c for c in data.columns if c not in (GROUP, "subject_id", "experiment_id", RESPONSE)]
    kept, vif = drop_collinear(data[features], vif_threshold)
    kept_vars = sorted({_source_variable(f, variables) for f in kept}, key=variables.index)
    # repeat the preprocessing on what remains: impute from the kept parameters, re-encode
    acquisition = impute_subjects(in_model, [c for c in acq_cols if c in kept_vars], types, seed)
    data = _design(rows, acquisition, kept_vars, types, reference)
    fixed = [f for f in kept if f in data.columns]
    inter, inter_dropped = _estimable_interactions(data, fixed, [(safe_name(a), safe_name(b)) for a, b in interactions])
    while inter and len(data) - (len(fixed) + len(inter) + 3) < MIN_RESIDUAL_DF:
        inter_dropped.append(f"{inter[-1][0]}:{inter[-1][1]} (too few observations)")
        inter = inter[:-1]
    fit_row.update(dropped_features=", ".join(vif.loc[vif["dropped"], "feature"]),
                   dropped_interactions="; ".join(inter_dropped))
    if len(data) - (len(fixed) + 3) < MIN_RESIDUAL_DF:
        return {**fit_row, "status": f"not estimable: {len(data)} observations for {len(fixed)} fixed effects, "
                                     "an intercept and two variances"}, vif, empty
    nested = {}
    if (subject_effects and data.groupby([GROUP, "subject_id"]).size().max() > 1
            and data.groupby(GROUP)["subject_id"].nunique().max() > 1):  # else it is the dataset's intercept
        nested = {"subject": "subject_id"}
    try:
        fit = fit_mixed(data, RESPONSE, fixed, GROUP, inter, variance_components=nested)
    except (ValueError, RuntimeError) as exc:
        return {**fit_row, "status": f"not estimable: {exc}"}, vif, empty
    fit_row.update(status="fitted", converged=fit.converged, random_intercept_var=fit.random_intercept_var,
                   subject_var=fit.variance_components.get("subject", float("nan")),
                   residual_var=fit.residual_var,
                   formula=fit.formula + (" + (1 | dataset) + (1 | dataset:subject_id)" if nested else " + (1 | dataset)"))
    return fit_row, vif, fit.coefficients


def analyse_effects(subject_scores: pd.DataFrame, experiments: pd.DataFrame, subjects: pd.DataFrame,
                    settings: MixedEffectsSettings = MixedEffectsSettings(), *,
                    types: VariableTypes = MRI_TYPES, dice_column: str | None = None) -> EffectsAnalysis:
    """The subject-level sensitivity analysis: one mixed model per finetuning type with random
    intercepts per dataset and per subject (see the module docstring).

    Parameters
    ----------
    subject_scores : DataFrame
        One row per (experiment, condition, dataset, subject) with the subject's Dice (0-1).
    experiments : DataFrame
        The grid's experiment table.
    subjects : DataFrame
        The prepared subjects table with the acquisition columns (ms, degrees, mm, T).
    settings : MixedEffectsSettings
        Reference model, condition, interactions, VIF threshold, seed (the study's by default).
    types : VariableTypes
        Preprocessing class of each acquisition variable.
    dice_column : str, optional
        The subject Dice column (default: the first of ``SUBJECT_DICE_COLUMNS`` present).

    Returns
    -------
    EffectsAnalysis
        The subject-level table, missingness, KS checks, VIF screens, coefficients and one fit
        row per finetuning type (tables X04b, X04c).
    """
    raw = assemble_table(subject_scores, experiments, subjects, settings.condition, dice_column)
    if raw.empty:
        raise ValueError(f"mixed effects: no subject scores under condition {settings.condition!r}")
    seed, vif_threshold = settings.seed, settings.vif_threshold
    in_table = subjects.merge(raw[["dataset", "subject_id"]].drop_duplicates(), on=["dataset", "subject_id"])
    acq_cols = [c for c in ACQUISITION_COLUMNS if c in types.all()]
    filled = impute_subjects(in_table, acq_cols, types, seed)
    table = raw.drop(columns=list(ACQUISITION_COLUMNS)).merge(filled, on=["dataset", "subject_id"], how="left")
    full_types = analysis_types(types)
    reference = reference_arm(raw, settings.reference_model)
    pairs = list(settings.interactions)
    fits, vifs, coefs = [], [], []
    for kind in FINETUNE_TYPES:
        tuned = raw[raw["finetune_type"] == kind]
        if tuned.empty:
            fits.append({"finetune_type": kind, "status": f"not run: no finished {kind} experiment",
                         "reference_arm": reference})
            continue
        base = raw[(raw["arm"] == reference) & raw[GROUP].isin(tuned[GROUP].unique())]
        row, vif, coef = fit_one(pd.concat([base, tuned], ignore_index=True), in_table, reference=reference,
                                 types=full_types, interactions=pairs, vif_threshold=vif_threshold, seed=seed,
                                 label=kind, subject_effects=True)
        fits.append(row)
        if not vif.empty:
            vifs.append(vif.assign(finetune_type=kind))
        if not coef.empty:
            coefs.append(coef.assign(finetune_type=kind))
    coefficients = (pd.concat(coefs, ignore_index=True) if coefs else
                    pd.DataFrame(columns=["term", "coef", "se", "ci_low", "ci_high", "p_value", "finetune_type"]))
    coefficients = coefficients[["finetune_type", *[c for c in coefficients if c != "finetune_type"]]]
    vif_all = (pd.concat(vifs, ignore_index=True) if vifs else
               pd.DataFrame(columns=["feature", "vif_before", "vif_after", "dropped", "finetune_type"]))
    vif_all = vif_all[["finetune_type", *[c for c in vif_all if c != "finetune_type"]]]
    return EffectsAnalysis(table=table, missingness=missingness(in_table, types),
                           ks=ks_sensitivity(in_table, filled, types), vif=vif_all, coefficients=coefficients,
                           fits=_typed(pd.DataFrame(fits).reindex(columns=FIT_COLUMNS)))


def _typed(fits: pd.DataFrame) -> pd.DataFrame:
    """Counts as nullable integers (a type that was not run has none)."""
    for c in ("n_obs", "n_groups", "n_experiments"):
        fits[c] = fits[c].astype("Int64")
    return fits


# ----------------------------------------------------------------------------- reporting helpers
def data_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Rows, subjects, experiments and subject Dice per finetuning type and dataset of the
    subject-level table, with the dataset's typical acquisition (median over its subjects).

    Parameters
    ----------
    table : DataFrame
        :attr:`EffectsAnalysis.table`.

    Returns
    -------
    DataFrame
        One row per (finetune_type, dataset).
    """
    keys = ["finetune_type", GROUP]
    counts = table.groupby(keys).agg(n_rows=(RESPONSE, "size"), n_subjects=("subject_id", "nunique"),
                                     n_experiments=("experiment_id", "nunique"), dice_mean=(RESPONSE, "mean"),
                                     dice_sd=(RESPONSE, "std"))
    numeric = [c for c in ("field_strength_t", "te_ms", "tr_ms", "flip_angle_deg", "slice_thickness_mm",
                           "pixel_spacing_mm", "rows_px") if c in table]
    acq = table.groupby(keys)[numeric].median().add_suffix("_median")
    order = {k: i for i, k in enumerate(("zero_shot", *FINETUNE_TYPES))}
    out = counts.join(acq).reset_index()
    return out.sort_values(keys, key=lambda s: s.map(order) if s.name == "finetune_type" else s).reset_index(drop=True)


# ----------------------------------------------------------------------------- physics check
def within_dataset(features: pd.DataFrame, groups: pd.Series, tol: float = 1e-9) -> pd.DataFrame:
    """Each feature minus its dataset mean, for the features that vary inside some dataset.

    A random intercept per dataset absorbs what datasets share (anatomy, sequence, site), but a
    pooled fit still lets a parameter's *between*-dataset differences, which are confounded with
    all of that, drive its coefficient. Deviations from the dataset mean are free of it: their
    coefficient is the within-dataset effect (the Mundlak / within-between decomposition).

    Parameters
    ----------
    features : DataFrame
        Encoded features.
    groups : Series
        The dataset of each row.
    tol : float
        A feature whose centred values have an SD of at most ``tol`` is left out.

    Returns
    -------
    DataFrame
        The centred features that vary inside some dataset (maybe none), same rows.
    """
    centred = features - features.groupby(groups.to_numpy()).transform("mean").to_numpy()
    return centred.loc[:, centred.std(ddof=0) > tol]


def _verdict(coef: float, lo: float, hi: float, sign: int) -> str:
    if lo > 0 or hi < 0:
        return "agrees" if np.sign(coef) == sign else "contradicts"
    return "inconclusive (95% CI includes 0; sign " + ("as expected)" if np.sign(coef) == sign else "opposite)")


def physics_check(zero_shot_subjects: pd.DataFrame, subjects: pd.DataFrame, model_key: str,
                  settings: MixedEffectsSettings = MixedEffectsSettings(), *,
                  types: VariableTypes = MRI_TYPES) -> tuple[dict, pd.DataFrame]:
    """Dice of one zero-shot model against the MRI parameters; does each effect point the way
    the synthetic cohort's physics says it should?

    The verdict uses the *within-dataset* effect (each parameter centred on its dataset mean,
    random intercept per dataset) wherever the parameter varies inside datasets (TE and field
    strength do in the clinical sets): same anatomy and sequence, different acquisition, which is
    what the physics predicts. A parameter constant inside every dataset (voxel size here) has
    only a between-dataset estimate, from the pooled model, which is confounded with anatomy and
    sequence; its verdict says so. *agrees* / *contradicts* need a 95% CI that excludes 0,
    otherwise *inconclusive*; *not estimable* where VIF pruning dropped the term.

    Parameters
    ----------
    zero_shot_subjects : DataFrame
        One row per (model_key, condition, dataset, subject) with the subject's Dice (0-1).
    subjects : DataFrame
        The prepared subjects table (acquisition columns).
    model_key : str
        The zero-shot model whose Dice is fitted.
    settings : MixedEffectsSettings
        ``condition``, ``vif_threshold`` and ``seed`` are used.
    types : VariableTypes
        Preprocessing class of each acquisition variable.

    Returns
    -------
    fit : dict
        The fit row of the within-dataset model (status, rows, groups, variances, formula).
    verdicts : DataFrame
        One row per physics term: expected sign, source, estimate with 95% CI, p value,
        verdict, rationale, and the pooled estimate beside it.
    """
    condition, vif_threshold, seed = settings.condition, settings.vif_threshold, settings.seed
    rows = zero_shot_subjects[(zero_shot_subjects["model_key"] == model_key)
                              & (zero_shot_subjects["condition"] == condition)]
    if rows.empty:
        raise ValueError(f"physics check: no zero-shot scores of {model_key!r} under {condition!r}")
    dice = first_column(rows, SUBJECT_DICE_COLUMNS, "subject Dice", "zero-shot subject scores")
    data = pd.DataFrame({"experiment_id": f"zero_shot:{model_key}", GROUP: rows[GROUP].to_numpy(),
                         "subject_id": rows["subject_id"].to_numpy(), RESPONSE: rows[dice].to_numpy()})
    in_table = subjects.merge(data[["dataset", "subject_id"]].drop_duplicates(), on=["dataset", "subject_id"])
    pooled_row, pooled_vif, pooled = fit_one(data, in_table, reference="", types=types, interactions=(),
                                             vif_threshold=vif_threshold, seed=seed, label=f"zero_shot:{model_key}")
    # the within-dataset model
    acq_cols = [c for c in ACQUISITION_COLUMNS if c in types.all()]
    acquisition = impute_subjects(in_table, acq_cols, types, seed)
    design = _design(data, acquisition, types.all(), types, reference="")
    features = [c for c in design.columns if c not in (GROUP, "subject_id", "experiment_id", RESPONSE)]
    within = within_dataset(design[features], design[GROUP])
    within_row: dict = {"finetune_type": f"zero_shot:{model_key} (within datasets)", "n_obs": len(design),
                        "n_groups": design[GROUP].nunique(), "n_experiments": 1}
    est = pd.DataFrame()
    if within.empty:
        within_row["status"] = "not estimable: no parameter varies inside any dataset"
    else:
        kept, _ = drop_collinear(within, vif_threshold)
        fit_data = pd.concat([design[[GROUP, RESPONSE]], within[kept]], axis=1)
        try:
            fit = fit_mixed(fit_data, RESPONSE, kept, GROUP)
            within_row.update(status="fitted", converged=fit.converged, random_intercept_var=fit.random_intercept_var,
                              residual_var=fit.residual_var, formula=fit.formula)
            est = fit.coefficients.set_index("term")
        except (ValueError, RuntimeError) as exc:
            within_row["status"] = f"not estimable: {exc}"
    pooled_est = pooled.set_index("term") if not pooled.empty else pd.DataFrame()
    dropped_pooled = set(pooled_vif.loc[pooled_vif["dropped"], "feature"]) if not pooled_vif.empty else set()
    table = []
    for term, sign in PHYSICS_SIGNS.items():
        row = {"term": term, "expected_sign": "+" if sign > 0 else "-", "rationale": PHYSICS_RATIONALE[term]}
        if term in pooled_est.index:
            row.update(pooled_coef=pooled_est.loc[term, "coef"], pooled_ci_low=pooled_est.loc[term, "ci_low"],
                       pooled_ci_high=pooled_est.loc[term, "ci_high"])
        if term in est.index:
            c = est.loc[term]
            row.update(source="within datasets", coef=c["coef"], ci_low=c["ci_low"], ci_high=c["ci_high"],
                       p_value=c["p_value"], verdict=_verdict(c["coef"], c["ci_low"], c["ci_high"], sign))
        elif term in pooled_est.index and term not in within.columns:
            c = pooled_est.loc[term]
            row.update(source="between datasets only (confounded with anatomy and sequence)", coef=c["coef"],
                       ci_low=c["ci_low"], ci_high=c["ci_high"], p_value=c["p_value"],
                       verdict=_verdict(c["coef"], c["ci_low"], c["ci_high"], sign))
        else:
            why = ("dropped for VIF" if term in dropped_pooled or term in within.columns
                   else within_row.get("status", pooled_row["status"]))
            row.update(source="", verdict=f"not estimable: {why}")
        table.append(row)
    columns = ["term", "expected_sign", "source", "coef", "ci_low", "ci_high", "p_value", "verdict",
               "pooled_coef", "pooled_ci_low", "pooled_ci_high", "rationale"]
    return within_row, pd.DataFrame(table).reindex(columns=columns)
