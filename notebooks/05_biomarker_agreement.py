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
# # 05 · Clinical biomarkers: predicted masks against manual ones
#
# A segmentation is only as useful as the measurements it gives. This notebook measures the
# study's biomarkers from manual masks and from model predictions of the same subjects, and asks
# how well they agree, computed the way the study computes it. It regenerates **figure 5b**, the
# per-subject biomarker tables within **S39-S64** and the agreement tables **S65-S68**.
#
# * **Cartilage thickness** (femoral, tibial, patellar; mm): the project's validated measure,
#   chords through the medial axis along the local normal to the sub-pixel boundary. Beside it, the
#   study's two readings of its medial-axis distance transform: `study_text` (the EDT radius at
#   the medial axis, scaled by the in-plane pixel spacing) and `study_code` (the EDT radius in
#   pixels times the *slice thickness*, as the study's code does). Both report a radius, about
#   half the thickness; their error against the synthetic cohort's truth is shown below.
# * **T2 / T1rho** (ms): as the study, per slice the mean of the map (clipped to 0-100 ms) inside
#   each compartment and a `total` = mean over the compartments on that slice; per subject the mean
#   over slices. The voxel-weighted mean is kept as a labelled variant.
# * **Disc height** (mm): the short side of each disc's minimum-area rectangle to the sub-pixel
#   edge, the maximum over slices (through the slices for axial disc stacks); the study's
#   rectangle around the contour's pixel centres (one pixel shorter) is the labelled variant.
# * **Tissue volume** (cm3): voxel count × voxel volume, summed over slices, per label (as the study).
#
# Missing structures are NaN with a reason, never 0. **Predictions** come from the best finetuned
# model of notebook 03 for each dataset (chosen on *validation* Dice during training, never on the
# test subjects measured here) and, for contrast, from a zero-shot model, each prompted with
# ground-truth boxes on every labelled slice.
#
# **Agreement**, per dataset, biomarker and structure (`mskseg_lib/stats/agreement.py`):
# Shapiro-Wilk on each arm and Levene decide between parametric and non-parametric statistics.
# Parametric: ICC(3,1) (pingouin, the study's named coefficient) with ICC(A,1) beside it (the
# "absolute agreement" the study's words describe), Bland-Altman mean ± 1.96 SD, linear
# regression. Non-parametric: the ICC of a mixed model with a subject random intercept and no
# rater term, reported as the median of 10,000 subject-bootstrap resamples with its 2.5/97.5
# percentiles (a closed form per resample, checked against statsmodels MixedLM refits),
# Bland-Altman median and percentiles with bootstrap CIs, Gaussian-process regression. Regression
# puts the automated value on x and the manual value on y, as the study. Spearman's rho always.
# The study's printed ranges stand beside the regenerated ones.
#
# **File names.** S39-S64: the study gives only the range, so the project fixes one table per
# (biomarker, dataset), the same in every profile (`study.SUPPLEMENT_TABLES`, shown below; S63 and
# S64 unused); S65 test choice, S66 ICC, S67 regression, S68 Spearman. Everything without a study
# counterpart is in the X05 series.

# %% tags=["parameters"]
import os

profile = os.environ.get("MSKSEG_PROFILE", "default")
params = None

# %% [markdown]
# ## Setup
#
# `params` is the full profile as injected by papermill (or `None` when run interactively).
# `bi` holds the profile's `biomarkers` section as the library's arguments. Without a profile the
# agreement of any label volumes with the manual masks is a handful of calls:
# `chosen = study.choose_subjects(subjects, BiomarkerSelection(split="test"))`,
# `long = study.measure_all(chosen, {"mine": my_volume})` (a function returning a subject's label
# volume on its prepared mask's grid) and `study.agreement_by_source(long, ["mine"], AgreementSettings())`.

# %%
import pandas as pd

from mskseg_lib.biomarkers import study
from mskseg_lib.data.bad_inputs import SkippedInputs
from mskseg_lib.data.cohort import load_truth
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation.volumes import assemble_volume, predict_volumes
from mskseg_lib.finetuning.evaluate import FINETUNED_KEY, predict_run_volumes
from mskseg_lib.finetuning.run_folder import run_dir_of
from mskseg_lib.finetuning.runner import run_grid
from mskseg_lib.from_profile import data as fp_data
from mskseg_lib.from_profile import load_profile
from mskseg_lib.from_profile.biomarkers import biomarker_inputs
from mskseg_lib.from_profile.finetune import finetune_inputs
from mskseg_lib.from_profile.zero_shot import volume_inputs
from mskseg_lib.logging_setup import configure_logging
from mskseg_lib.plots import biomarkers as bplots
from mskseg_lib.plots.style import apply_style
from mskseg_lib.reporting import save_figure, save_table, show_skipped
from mskseg_lib.stats.agreement import agreement_table

configure_logging(stream="stdout")  # the library's INFO messages appear under each cell
cfg = load_profile(profile, overrides=params if isinstance(params, dict) else None)
bi = biomarker_inputs(cfg)  # prepared/cohort folders, subject selection, agreement settings, zero-shot model
apply_style()
pd.set_option("display.width", 160)
print(f"profile: {cfg['profile']} - {cfg['description']}")
print(bi["selection"], bi["agreement"], sep="\n")

# %% [markdown]
# ## Subjects and the model per dataset
#
# The grid of notebook 03 is loaded (and finished if it is not). For each dataset the predicting
# model is the finished experiment trained on it with the highest validation Dice.

# %%
fp_data.prepare(cfg)
subjects, _ = load_tables(bi["prepared_dir"])
grid = run_grid(**finetune_inputs(cfg))
real_name = "RealSpine_MyoSegmenTUM_VB_8"
wanted = study.selected_datasets(subjects, bi["selection"])  # the real fixture has its own section below
chosen = study.choose_subjects(subjects, bi["selection"])
best = study.best_experiment_per_dataset(grid.experiments, grid.history, wanted)
pd.DataFrame({"dataset": wanted, "subjects": [int((chosen["dataset"] == d).sum()) for d in wanted],
              "finetuned model (best validation Dice)": [best.get(d, "none trained on it") for d in wanted]})

# %% [markdown]
# ## Whole-volume predictions
#
# Every labelled slice of the chosen subjects, ground-truth boxes, one embedding per slice (the
# zero-shot embedding cache is shared with decoder-only finetunes). Runs resume.

# %%
datasets = sorted(chosen["dataset"].unique())
zs_key, sel = bi["zero_shot_model"], bi["selection"]
zs_run = predict_volumes(model_key=zs_key, datasets=datasets, split=sel.split,
                         max_subjects_per_dataset=sel.max_subjects_per_dataset, **volume_inputs(cfg, bi["tag"]))
zs_done = set(zip(zs_run.slices.get("dataset", []), zs_run.slices.get("subject_id", [])))
volumes = {k: v for k, v in volume_inputs(cfg, bi["tag"]).items() if k != "run_dir"}  # each run has its own
ft_runs = {}
for eid in sorted(set(best.values())):
    exp, repeat = grid.runs[eid]
    mine = [d for d in datasets if best.get(d) == eid]
    for d, run in predict_run_volumes(exp, run_dir_of(grid.root, exp, repeat), datasets=mine, split=sel.split,
                                      max_subjects_per_dataset=sel.max_subjects_per_dataset, **volumes).items():
        ft_runs[d] = run


def finetuned_volume(s):
    run = ft_runs.get(s["dataset"])
    return None if run is None else assemble_volume(run.run_dir, FINETUNED_KEY, s)[0]


def zero_shot_volume(s):
    return assemble_volume(zs_run.run_dir, zs_key, s)[0] if (s["dataset"], s["subject_id"]) in zs_done else None


print(f"zero-shot {zs_key}: {len(zs_done)} subjects; finetuned: {sorted(ft_runs)}")

# %% [markdown]
# ## Measurements (S39-S64)
#
# One long table of every value in every definition (manual, finetuned, zero-shot and, for the
# synthetic cohort, the truth; X05b), then the study-numbered tables: one per (biomarker, dataset)
# with each subject's values side by side, in the project's definition of the biomarker. The
# numbering (X05a) is fixed; a table whose dataset is not in this profile's run is listed as such.

# %%
skipped = SkippedInputs("biomarkers")  # a subject whose mask, map or prediction cannot be read: listed, not fatal
long = study.measure_all(chosen, {"finetuned": finetuned_volume, "zero_shot": zero_shot_volume}, skipped=skipped,
                         out_dir=bi["run_dir"])
show_skipped(zs_run.skipped, *(r.skipped for r in ft_runs.values()), skipped.table())
if bi["cohort_dir"] is not None:  # the synthetic cohort knows the truth
    long = pd.concat([long, study.truth_rows(load_truth(bi["cohort_dir"]), chosen)], ignore_index=True)
numbering = study.supplement_mapping(long[long["source"] == "manual"])
save_table(numbering, cfg, "tableX05a_supplement_numbering", notebook="05",
           caption="The project's mapping of the study's biomarker tables S39-S64 (the study gives only the range) to "
                   "(biomarker, dataset), with the definition used and the subjects each holds in this run.")
save_table(long.round(5), cfg, "tableX05b_biomarkers_long", notebook="05",
           caption="Every biomarker value per subject and structure in every definition (variants included), from "
                   "manual masks, the best finetuned model, the zero-shot model and (synthetic cohort) the truth; NaN "
                   "rows carry their reason.")
wide = long.pivot_table(index=["biomarker", "structure", "dataset", "subject_id"], columns="source", values="value",
                        aggfunc="first").reset_index()
written = []
for number, biomarker, dataset in study.SUPPLEMENT_TABLES:
    part = wide[(wide["biomarker"] == biomarker) & (wide["dataset"] == dataset)]
    if part.empty:
        continue
    name = study.supplement_table_name(number, biomarker, dataset)
    save_table(part.round(4), cfg, name, notebook="05",
               caption=f"S{number}: {biomarker} per subject and structure in {dataset}: manual vs predicted masks "
                       f"({study.DEFINITIONS[biomarker][1]}).")
    written.append(name)
print(f"written: {written}")
display(numbering)
primary = wide[wide["biomarker"].isin(study.PRIMARY_BIOMARKERS)]
primary.groupby(["biomarker", "structure"])[[c for c in ("manual", "finetuned", "zero_shot", "truth")
                                            if c in wide]].mean().round(3)

# %% [markdown]
# ## Agreement (S65-S68)
#
# Per dataset, biomarker (project definition) and structure, for the finetuned predictions (the
# study's comparison) and the zero-shot ones (for contrast): S65 the normality and variance tests
# and the decision, S66 the ICC (the decision's ICC in `icc`, and every ICC beside it: ICC(3,1),
# ICC(A,1), the mixed-model bootstrap median with the largest difference between the closed form
# and a MixedLM refit), S67 the regression of manual on automated, S68 Spearman's rho, X05c
# Bland-Altman. The study's printed ranges are beside the finetuned rows (`published_*`) and
# summarised in X05d. A group with fewer than three subject pairs gets a row that says so.

# %%
tables = study.agreement_by_source(long, ["finetuned", "zero_shot"], bi["agreement"])


def both(name):
    return study.stacked(tables, name)


published = study.published_agreement()


def beside_published(df, statistic):
    out = study.with_published(df, statistic, published)
    zero_shot = out["predicted_by"] != "finetuned"  # the study's values are for finetuned models
    out.loc[zero_shot, [c for c in out.columns if c.startswith("published_")]] = None
    return out


for name, number, statistic, caption in [
        ("test_choice", "S65", None, "Shapiro-Wilk (each arm decides; the differences are reported) and Levene tests "
                                     "and the parametric / non-parametric decision"),
        ("icc", "S66", "icc", "ICC: the decision's (ICC(3,1) with its F-based 95% CI, or the no-rater mixed-model ICC "
                              "as the median of the subject bootstrap with its 2.5/97.5 percentiles), with ICC(3,1), "
                              "ICC(A,1) and the bootstrap ICC all beside it, and the study's printed range"),
        ("regression", "S67", "r2", "regression of the manual value (y) on the automated value (x): linear (slope, "
                                    "intercept, r, R2, p, stderr) or Gaussian-process (R2), with the printed R2 range"),
        ("spearman", "S68", "spearman_rho", "Spearman's rho and p, with the printed range")]:
    df = both(name)
    if statistic:
        df = beside_published(df, statistic)
    save_table(df.round(5), cfg, f"table{number}_{name}", notebook="05",
               caption=f"{number}: {caption}; per dataset, biomarker and structure, manual vs predicted masks.")
save_table(both("bland_altman").round(5), cfg, "tableX05c_bland_altman", notebook="05",
           caption="Bland-Altman bias and 95% limits of agreement (predicted - manual) with CIs: mean +- 1.96 SD or "
                   "median and 2.5/97.5 percentiles with subject-bootstrap CIs, per the S65 decision.")
ft = tables["finetuned"]
vs_published = study.published_vs_regenerated(ft.icc, ft.regression, ft.spearman, published)
save_table(vs_published.round(4), cfg, "tableX05d_published_vs_regenerated", notebook="05",
           caption="The study's printed agreement ranges (finetuned model vs manual) beside the regenerated ranges of "
                   "the same statistic and biomarker family: over the study's datasets and over every dataset.")
display(vs_published)
icc_view = both("icc")[["predicted_by", "dataset", "biomarker", "structure", "n_pairs", "method", "icc", "ci_low",
                        "ci_high", "icc3_1", "icc_a1", "icc_lmm_median", "mixedlm_check_max_abs_diff", "note"]]
icc_view.round(3)

# %% [markdown]
# ## Figure 5b
#
# Per biomarker, the group with the most subject pairs: Bland-Altman (left) and regression of the
# manual value on the automated value with the identity line (right) of the finetuned predictions,
# annotated with the ICC, R2 or rho and p. Every other group is in S65-S68.

# %%
results = tables["finetuned"].results
shown = study.most_pairs_per_biomarker(results)
fig = bplots.plot_figure5b(shown, units={k: study.UNITS[k[0]] for k in shown})
save_figure(fig, cfg, "fig5b_biomarker_agreement", notebook="05",
            datasets=sorted({k[0] for k in results}),
            caption="Figure 5b: biomarkers from the best finetuned model's masks vs manual masks: Bland-Altman "
                    "(left) and manual vs automated with regression and identity line (right), one structure per "
                    "biomarker.")

# %% [markdown]
# ## Beyond the study: the definitions against the truth
#
# The synthetic cohort knows each subject's true thickness, relaxation times, disc heights and
# volumes, so every definition can be checked on manual and predicted masks alike: X05e holds every
# value with its truth and X05f the mean, SD and mean absolute error per biomarker, definition and
# source. The study's thickness readings are radii (about half the thickness) and `study_code`
# scales by the slice thickness instead of the pixel size; the voxel-weighted relaxation mean is the
# map's mean over the structure, which is what the cohort stores. (Known limit of the truth: the
# meniscus overwrites the rim of the tibial cartilage slab, so the tibial label is thinner than its
# nominal thickness.) X05g: agreement (ICC etc.) of the finetuned predictions in each variant
# definition, to see whether the definition changes the agreement.

# %%
errors = study.errors_vs_truth(long)
if errors.empty:
    print("no true values for these subjects (real data): nothing to show")
else:
    save_table(errors.round(5), cfg, "tableX05e_errors_vs_truth", notebook="05",
               caption="Every biomarker value with a known truth, in every definition (project, study and variants), "
                       "from manual, finetuned and zero-shot masks: value, truth, error = value - truth.")
    summary = study.error_summary(errors)
    save_table(summary.round(4), cfg, "tableX05f_error_summary", notebook="05",
               caption="Error against the cohort's truth per biomarker, definition and source: n, mean error, SD, "
                       "mean absolute error, mean relative error.")
    display(summary.round(3))
    truth_pairs = study.truth_error_pairs(errors, definitions=study.PRIMARY_BIOMARKERS)
    fig = bplots.plot_truth_error(truth_pairs, units=study.UNITS)
    save_figure(fig, cfg, "figX05a_biomarker_error_vs_truth", notebook="05",
                datasets=sorted(truth_pairs["dataset"].unique()),
                caption="Beyond the study: biomarker error (measured - true) against the synthetic cohort's true "
                        "value, from manual masks and from the finetuned model's masks (project definitions).")
    by_definition = study.truth_error_pairs(errors, panel="definition")
    fig = bplots.plot_truth_error(by_definition, panel_col="definition", units=study.UNITS)
    save_figure(fig, cfg, "figX05b_definitions_error_vs_truth", notebook="05",
                datasets=sorted(errors["dataset"].unique()),
                caption="Beyond the study: error against the truth of every definition of each biomarker (the "
                        "project's, the study's text and code readings, the voxel-weighted variant), manual and "
                        "finetuned masks.")
variant_agreement = study.agreement_by_source(long, ["finetuned"], bi["agreement"],
                                              biomarkers=list(study.VARIANT_OF))["finetuned"]
variant_icc = variant_agreement.icc.assign(
    definition=lambda d: d["biomarker"].map(lambda v: study.DEFINITIONS[v][1]),
    measures=lambda d: d["biomarker"].map(lambda v: study.DEFINITIONS[v][0]))
save_table(variant_icc.round(5), cfg, "tableX05g_variant_definitions_icc", notebook="05",
           caption="Agreement (S66's columns) of the finetuned predictions with manual masks when each biomarker is "
                   "measured in a variant definition (study thickness readings, voxel-weighted relaxation mean, the "
                   "study's disc rectangle).")
variant_icc[["dataset", "biomarker", "structure", "n_pairs", "method", "icc", "icc3_1", "icc_a1",
             "icc_lmm_median"]].round(3)

# %% [markdown]
# ## The real spine fixture
#
# Eight real lumbar MRI volumes with manual vertebral-body masks (`../shared/data/real_spine`).
# Every subject is segmented zero-shot (no model was trained on them under this comparison) and
# each vertebral body's volume from the predicted mask is compared with the manual one (X05h, X05i;
# real data).

# %%
real = subjects[subjects["dataset"] == real_name].sort_values("subject_id")
if bi["max_real_subjects"] > 0:  # the first N volumes (the profile's budget)
    real = real.head(bi["max_real_subjects"])
if not bi["real_spine"] or real.empty:
    print("real spine fixture: not in this profile's prepared data (set MSKSEG_REAL_SPINE / sources)")
else:
    real_run = predict_volumes(model_key=zs_key, datasets=[real_name], split="all",
                               max_subjects_per_dataset=len(real), **volume_inputs(cfg, f"{bi['tag']}_real_spine"))
    real_long = study.measure_all(real, {"zero_shot": lambda s: assemble_volume(real_run.run_dir, zs_key, s)[0]})
    vb = study.paired(real_long[real_long["biomarker"] == "volume_cm3"], "zero_shot", with_truth=False)
    vb["subject_vb"] = vb["subject"] + ":" + vb["structure"]
    real_agreement = agreement_table(vb.assign(biomarker="volume_cm3", structure="vertebral bodies"), "manual",
                                     "predicted", by=("biomarker", "structure"), subject_col="subject_vb",
                                     settings=bi["agreement"])
    save_table(vb.round(4), cfg, "tableX05h_real_spine_vertebral_volumes", notebook="05", data_source="real",
               caption="Real spine fixture: vertebral body volumes (cm3), manual vs zero-shot masks.")
    save_table(real_agreement.icc.round(4), cfg, "tableX05i_real_spine_icc", notebook="05", data_source="real",
               caption="Real spine fixture: agreement (ICC, S66's columns) of vertebral body volumes, manual vs "
                       "zero-shot.")
    display(real_agreement.icc[["n_pairs", "method", "icc", "ci_low", "ci_high", "icc3_1", "icc_a1", "note"]].round(3))
