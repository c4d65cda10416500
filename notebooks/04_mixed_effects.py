# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (mskseg)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · How acquisition parameters and finetuning choices shape Dice
#
# The study relates segmentation quality to how each dataset was acquired and how each model was
# finetuned with one linear mixed model per finetuning type and a random intercept per dataset.
# This notebook regenerates **figure 5a** and the supplementary tables **S34-S38** the way the
# study computes them, and adds two labelled extras: the same question asked at the subject level
# (a sensitivity analysis) and, on the synthetic cohort, whether the effects point the way the
# cohort's MR physics says they should. Under the `fixture` and `default` profiles every number
# here comes from the **synthetic cohort**; the study's published coefficients sit beside them
# for comparison, not as targets.
#
# **The study's model** (`mskseg_lib/stats/study_effects.py`):
#
# * *Response*: the mean Dice across the test subjects of each (experiment, dataset), the study's
#   MeanDiceScore (a subject's Dice is the evaluation's subject Dice: the mean of its slice Dice,
#   ground-truth boxes).
# * *Acquisition covariates per dataset*: numeric ones (echo and repetition time, flip angle,
#   slice thickness, pixel spacing, image rows, age) the mean over the dataset's subjects,
#   categorical ones (vendor, field strength, 2D/3D) the most frequent value.
# * *Preprocessing, as in the study*: what is still missing is imputed with random forests
#   (classifier for nominal, ordinal and discrete variables, iterative regressor for continuous
#   ones), checked with Kolmogorov-Smirnov tests; nominal variables one-hot (first level dropped),
#   field strength ordinal, continuous variables through `StandardScaler`, discrete ones (flip
#   angle, image rows, age) through `MinMaxScaler`; a VIF screen over the study's acquisition
#   features (SAR is not recorded here) drops the largest VIF above the threshold until none is
#   left; then imputation, encoding and scaling are repeated on what remains.
# * *Fixed effects*: echo time, pixel spacing, slice thickness, flip angle, acquisition mode
#   (2D = 0, 3D = 1), finetuned (0 for the reference rows), image encoder finetuned, box shift
#   applied, initial weights (SAM the reference level), and the two interactions the text names:
#   echo time × slice thickness and echo time × finetuning strategy (encoder finetuned or not).
# * *One model per finetuning type*: Type 1 single dataset, Type 2 mixed (anatomy / tissue /
#   sequence), Type 3 mskSAM (all MSK datasets), each on that type's finetuned rows plus the SAM
#   ViT-B zero-shot rows of the same datasets (the reference level). Where SAM ViT-B has no
#   zero-shot rows (no checkpoint) the first zero-shot model present stands in, and the tables
#   say which.
#
# **Few rows.** A dataset's acquisition is one fact however many experiments score it: with a
# dozen datasets the forests impute from a dozen rows, the KS test has little power, the VIF
# screen works on an almost saturated design, and every MRI effect is a contrast *between*
# datasets, confounded with anatomy and task. A type's model keeps at most (number of datasets
# − 2) dataset-level terms and lists what it had to drop.
#
# **Validation.** `tests/test_study_effects.py` recovers known per-dataset effects (TE, flip
# angle, encoder finetuned, the MedSAM offset, TE × encoder) from a simulated 40-dataset study;
# `tests/test_mixed_effects.py` and `tests/test_acquisition_effects.py` check the generic steps,
# the subject-level model and the physics check.

# %% tags=["parameters"]
import os

profile = os.environ.get("MSKSEG_PROFILE", "default")
params = None

# %% [markdown]
# ## Setup
#
# `params` is the full profile as injected by papermill (or `None` when run interactively).
# `settings` holds the analysis choices of the profile's `mixed_effects` section (reference model,
# prompt condition, interactions, VIF threshold, seed); `MixedEffectsSettings()` alone gives the
# study's, so without a profile the study's model is
# `analyse_study_effects(subject_scores, experiments, subjects, MixedEffectsSettings())`.

# %%
import pandas as pd

from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation import aggregate
from mskseg_lib.evaluation.zero_shot import run_zero_shot
from mskseg_lib.finetuning.runner import run_grid
from mskseg_lib.from_profile import data as fp_data
from mskseg_lib.from_profile import load_profile
from mskseg_lib.from_profile.finetune import finetune_inputs
from mskseg_lib.from_profile.stats import mixed_effects_settings
from mskseg_lib.from_profile.zero_shot import zero_shot_inputs
from mskseg_lib.logging_setup import configure_logging
from mskseg_lib.plots import mixed_effects as meplots
from mskseg_lib.plots.style import apply_style
from mskseg_lib.reporting import dataset_sources, profile_data_source, save_figure, save_table
from mskseg_lib.stats import acquisition_effects as ae
from mskseg_lib.stats import study_effects as se

configure_logging(stream="stdout")  # the library's INFO messages appear under each cell
cfg = load_profile(profile, overrides=params if isinstance(params, dict) else None)
me = cfg["mixed_effects"]
settings = mixed_effects_settings(cfg)  # reference model, condition, interactions, VIF threshold, seed
apply_style()
pd.set_option("display.width", 160)
print(f"profile: {cfg['profile']} - {cfg['description']}")
print(settings)

# %% [markdown]
# ## The data (S34)
#
# `run_grid` returns the finished grid of notebook 03 at once (and trains whatever is missing,
# resuming): every finetuned model and the zero-shot baselines scored on the same test subjects.
# S34 has one row per (experiment, dataset) of the study's models: the mean Dice, the number of
# subjects behind it, the experiment's covariates and the dataset's acquisition (after
# imputation, raw units; `imputed_variables` names any value that was imputed).

# %%
fp_data.prepare(cfg)
subjects, _ = load_tables(fp_data.prepared_dir(cfg))
grid = run_grid(**finetune_inputs(cfg))
study = se.analyse_study_effects(grid.subjects, grid.experiments, subjects, settings)
print(f"reference level: {study.reference_arm}; zero-shot arms not in the study's models: {study.excluded_arms}")
print(f"response: mean over subjects of {study.fits['dice_column'].iloc[0]!r} per (experiment, dataset)")
modelled = sorted(study.data["dataset"].unique())
sources = {dataset_sources(cfg).get(d, profile_data_source(cfg)) for d in modelled}
model_source = sources.pop() if len(sources) == 1 else "mixed"
s34_columns = ["finetune_type", "experiment_id", "dataset", "mean_dice", "n_subjects", "arm", "initial_weights",
               "finetuned", "encoder_finetuned", "box_shift_applied",
               *[c for c in ("te_ms", "tr_ms", "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm", "rows_px",
                             "age_years", "vendor", "field_strength_t", "acquisition_3d") if c in study.data],
               "imputed_variables"]
s34 = study.data[s34_columns]
save_table(s34.round(4), cfg, "tableS34_mixed_effects_data", notebook="04",
           caption="S34: the mixed models' data, one row per (experiment, dataset): mean Dice over the test subjects "
                   "(the study's MeanDiceScore), subjects behind it, experiment covariates and the dataset's "
                   "acquisition (numeric: mean over its subjects; categorical: mode).")
s34

# %% [markdown]
# ## Variables, missing values and imputation (S35, S36)
#
# S35 lists each variable's type, its role, how often the subject table lacks it and how many
# datasets lack it after aggregation (only those are imputed). The subject-level sensitivity
# analysis imputes per subject instead; its rows are labelled `level = subject`. S36 compares
# each imputed variable's observed values with the completed column (two-sample KS: a small
# statistic means the imputation kept the distribution).

# %%
sens = ae.analyse_effects(grid.subjects, grid.experiments, subjects, settings)
s35 = pd.concat([study.missingness.assign(level="dataset (the study's model)"),
                 sens.missingness.rename(columns={"n_missing": "n_missing_subjects",
                                                  "fraction_missing": "fraction_missing_subjects"})
                 .assign(level="subject (sensitivity analysis)")], ignore_index=True)
s35 = s35[["level", *[c for c in s35 if c != "level"]]]
s36 = pd.concat([study.ks.assign(level="dataset (the study's model)"),
                 sens.ks.assign(level="subject (sensitivity analysis)")], ignore_index=True)
s36 = s36[["level", *[c for c in s36 if c != "level"]]]
save_table(s35.round(4), cfg, "tableS35_variable_types_missingness", notebook="04", data_source=model_source,
           caption="S35: variable type, role in the model, missing values per subject and per dataset after aggregation, "
                   "and number of distinct values, for the study's dataset-level model and the subject-level "
                   "sensitivity analysis.")
save_table(s36.round(4), cfg, "tableS36_imputation_ks", notebook="04", data_source=model_source,
           caption="S36: Kolmogorov-Smirnov test, observed vs observed-plus-imputed values, per imputed variable and "
                   "level (dataset level: the study's model; subject level: the sensitivity analysis).")
display(s35.round(3))
if study.ks.empty:
    print("S36: every modelled dataset has each parameter for some subject, so nothing was imputed at the dataset "
          "level; subject-level rows (if any) are the sensitivity analysis'")
s36.round(4)

# %% [markdown]
# ## Collinearity (S37)
#
# Acquisition parameters travel together (a 3D knee protocol fixes thin slices, long TR and a
# low flip angle at once), and with one row of parameters per dataset the design is nearly
# saturated. S37 gives each screened feature's VIF before and after the screen (VIF above the
# threshold dropped, largest first), its role and whether it is offered to the models as a fixed
# effect; the variables left are imputed, encoded and scaled again before fitting.

# %%
save_table(study.vif.round(3), cfg, "tableS37_vif", notebook="04", data_source=model_source,
           caption=f"S37: variance inflation factor of each acquisition feature before and after the screen (VIF > "
                   f"{me['vif_threshold']} dropped, largest first) over the modelling rows, its role, and whether it "
                   "is offered to the models as a fixed effect (X04a lists what a type's rows could not estimate).")
study.vif.round(2)

# %% [markdown]
# ## The models (S38, X04a, figure 5a)
#
# X04a has one row per finetuning type: whether it was fitted (or why not), the reference level,
# rows, datasets, convergence, the random-intercept and residual variances, REML log-likelihood,
# the terms its rows could not estimate, and the **exact formula fitted** (patsy; random
# intercept per dataset). S38 gives each fixed effect with its 95% CI and the random-intercept
# variance (`Group Var`), and beside them the study's published values: flip angle +0.714 to
# +0.773 and echo time −0.099 to −0.058 (ranges over the types), echo time −0.099 (95% CI
# −0.158 to −0.040) for Type 2 and −0.058 (−0.096 to −0.019) for Type 3, pixel spacing −0.080
# (−0.136 to −0.025, type not stated). Continuous predictors are z-scored (effect per SD),
# discrete ones min-max scaled (smallest to largest value), binary ones 0/1, so effects compare
# within a term, not across terms. The cohorts differ, so only sign and rough size are worth
# comparing.

# %%
save_table(study.fits, cfg, "tableX04a_mixed_model_fits", notebook="04", data_source=model_source,
           caption="X04a: the study's mixed models, one per finetuning type: status, reference level, rows, datasets, "
                   "convergence, random-intercept and residual variance, REML log-likelihood, terms not estimable "
                   "from the type's rows, and the exact formula fitted (random intercept per dataset).")
display(study.fits[["finetune_type", "status", "reference_arm", "n_obs", "n_groups", "converged",
                    "random_intercept_var", "residual_var", "dropped_terms"]])
for r in study.fits.itertuples():
    if isinstance(r.formula, str):
        print(f"{r.finetune_type}: {r.formula}  (groups: dataset)")

# %%
s38 = se.with_published(study.coefficients)
save_table(s38.round(5), cfg, "tableS38_mixed_model_coefficients", notebook="04", data_source=model_source,
           caption="S38: fixed effects on the mean Dice per (experiment, dataset) with SE, 95% CI and p, and the "
                   "random-intercept variance (Group Var), per finetuning type (reference: "
                   f"{study.reference_arm}); the study's published values beside flip angle, echo time and pixel "
                   "spacing (the study's cohort).")
fig = meplots.plot_forest(study.coefficients, se.published_mixed_effects(),
                          reference=study.reference_arm)
save_figure(fig, cfg, "fig5a_mixed_effects_forest", notebook="04", datasets=modelled,
            caption="Figure 5a: fixed effects on the mean Dice per (experiment, dataset), 95% CI, by finetuning type; "
                    f"reference: {study.reference_arm}. Grey: the study's published values (its cohort).")
s38[s38["term"].isin(se.published_mixed_effects()["term"])].round(4)

# %% [markdown]
# ## Sensitivity analysis: subject-level model (X04b, X04c)
#
# The same question with each test subject's Dice as its own row: every recorded acquisition
# parameter of the subject (after its own VIF screen, per type), the arm (model × zero-shot /
# finetuned, the reference zero-shot arm as reference), encoder finetuned, box shift applied and
# the same interactions, with random intercepts per dataset and per subject within its dataset
# (a subject scored by several experiments gives correlated rows). This is the project's
# earlier analysis, kept to show how much the aggregation level matters; it is not the study's.

# %%
x04b = se.with_published(sens.coefficients)
save_table(x04b.round(5), cfg, "tableX04b_subject_level_coefficients", notebook="04", data_source=model_source,
           caption="X04b: sensitivity analysis, not the study's model: fixed effects on each subject's Dice (95% CI) "
                   "per finetuning type, random intercepts per dataset and per subject; the study's published "
                   "dataset-level values beside.")
save_table(sens.fits, cfg, "tableX04c_subject_level_fits", notebook="04", data_source=model_source,
           caption="X04c: sensitivity analysis fits (subject level): status, reference arm, rows, datasets, convergence, "
                   "dataset, subject and residual variances, dropped features and interactions, formula.")
display(sens.fits[["finetune_type", "status", "n_obs", "n_groups", "converged", "random_intercept_var",
                   "subject_var", "residual_var"]])
x04b[x04b["term"].isin(se.published_mixed_effects()["term"])].round(4)

# %% [markdown]
# ## Do the effects follow the physics? (synthetic cohort, X04d)
#
# The synthetic cohort's images are rendered from tissue relaxation with the subject's TE, TR,
# flip angle and field strength, with noise scaled by voxel size and field (`mskseg_lib/data/
# mr_physics.py`). One zero-shot model is scored on every subject (`mixed_effects.physics`, its
# own run folder, sharing the embedding cache) and its Dice fitted to the MRI parameters alone.
# Datasets differ in far more than their parameters (a long-TE T2 spine scan suits its anatomy
# better than a short-TE knee scan suits cartilage), so the verdict uses each parameter's
# **within-dataset** effect: the parameter centred on its dataset mean, with the random intercept
# per dataset. TE, TR, flip angle, vendor and field strength vary inside the clinical datasets;
# voxel size does not, so it only has a between-dataset estimate (pooled model), marked as
# confounded with anatomy and sequence. A verdict is *agrees* or *contradicts* only when the 95%
# CI excludes zero; otherwise the data cannot tell. This check has no counterpart in the study.

# %%
ph = me["physics"]
if not ph["enabled"]:
    print("physics check: disabled in this profile (it needs the synthetic cohort's known physics)")
else:
    phys = run_zero_shot(**zero_shot_inputs(cfg, tag=ph["tag"], models=[ph["model"]], split=ph["split"],
                                            conditions=[{"name": me["condition"], "shift_grid_px": 0}],
                                            max_subjects_per_dataset=ph["max_subjects_per_dataset"],
                                            max_slices_per_subject=ph["max_slices_per_subject"], hd95=False))
    status = phys.models.set_index("model_key").loc[ph["model"], "status"]
    if status != "available":
        print(f"physics check: not run, {ph['model']} is {status}")
    else:
        phys_subjects = aggregate.subject_table(phys.slices, phys.volumes)
        phys_fit, verdict = ae.physics_check(phys_subjects, subjects, ph["model"], settings)
        print(f"{len(phys_subjects)} subjects, {phys_subjects['dataset'].nunique()} datasets; within-dataset "
              f"fit: {phys_fit['status']}, converged {phys_fit.get('converged')}")
        save_table(verdict.round(5), cfg, "tableX04d_physics_direction_check", notebook="04",
                   data_source="synthetic",
                   caption="X04d: zero-shot Dice over the synthetic cohort vs MRI parameters: expected sign from the "
                           "cohort's physics, within-dataset estimate (between-dataset where the parameter is constant "
                           "inside datasets) with 95% CI, whether they agree, and the pooled estimate beside it.")
        display(verdict.round(4))

# %% [markdown]
# ## Outputs
#
# Tables go to `paths.tables_dir`, the figure to `paths.figures_dir`:
#
# | file | study counterpart | content |
# |---|---|---|
# | `tableS34_mixed_effects_data.csv` | S34 | the models' data, one row per (experiment, dataset) |
# | `tableS35_variable_types_missingness.csv` | S35 | variable types, roles, missing values |
# | `tableS36_imputation_ks.csv` | S36 | KS check of the imputation |
# | `tableS37_vif.csv` | S37 | VIF screen and the final variables |
# | `tableS38_mixed_model_coefficients.csv` | S38 | fixed effects with 95% CI, published values beside |
# | `fig5a_mixed_effects_forest.png` | figure 5a | forest plot of S38 |
# | `tableX04a_mixed_model_fits.csv` | none | fit statistics and exact formula per type |
# | `tableX04b_subject_level_coefficients.csv` | none | sensitivity analysis: subject-level fixed effects |
# | `tableX04c_subject_level_fits.csv` | none | sensitivity analysis: its fits |
# | `tableX04d_physics_direction_check.csv` | none | physics direction check (synthetic cohort) |
#
# The physics run keeps its per-subject results in `runs/<profile>/zero_shot/<physics tag>/`
# and resumes like any zero-shot run.
