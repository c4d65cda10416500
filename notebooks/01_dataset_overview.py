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
# # 01 · Dataset overview (synthetic cohort)
#
# The cohort at a glance, laid out as the study's **figure 2** (panels a–f) and **supplementary
# tables S0–S2**, plus a **QC montage** of prepared slices with their masks (no study counterpart).
#
# **The data here are synthetic.** The study's MRI cannot be shipped, so `mskseg_lib` generates a
# cohort with the study's twelve dataset names, anatomy, label sets, demographics and protocols
# (`mskseg_lib/data/cohort.py`). Every number and figure below describes that generated cohort,
# not the study's subjects; only the real spine fixture (MyoSegmenTUM, 8 lumbar volumes), which the
# `default` and `paper` profiles add, is real data. Each table carries a `data_source` column
# (`synthetic` or `real` per dataset row) and captions of synthetic results start with
# "Synthetic data.".
#
# * (a) age and weight distributions per anatomy
# * (b) subjects and processed slices per anatomy, by split
# * (c) age and weight per dataset
# * (d) acquisition attributes (UpSet plot)
# * (e) sex per anatomy
# * (f) labels per anatomy and tissue class
# * tables S0 (datasets and labels), S1 (demographics), S2 (acquisition)
#
# **How to run.** Everything is computed by `mskseg_lib`; this notebook only calls it.
# `./run_all.sh --profile fixture --only 01` executes it with papermill for a profile of
# `params/` (`default`, `fixture`, `paper`). Interactively, set `MSKSEG_PROFILE` before starting Jupyter
# (or edit `profile` below) and run all cells. The cohort is generated and prepared on first use
# and reused afterwards.

# %% tags=["parameters"]
import os

profile = os.environ.get("MSKSEG_PROFILE", "default")
params = None

# %% [markdown]
# ## Setup
#
# `params` is the full profile as injected by papermill (or `None` when run interactively); merging
# it over the profile file is idempotent.

# %%
import pandas as pd

from mskseg_lib.config import notebook_options
from mskseg_lib.from_profile import load_profile
from mskseg_lib.logging_setup import configure_logging
from mskseg_lib.plots import dataset_overview as dov
from mskseg_lib.plots.style import apply_style
from mskseg_lib.reporting import save_figure, save_table

configure_logging(stream="stdout")  # the library's INFO messages appear under each cell
cfg = load_profile(profile, overrides=params if isinstance(params, dict) else None)
opts = notebook_options(cfg, "01")
apply_style()
print(f"profile: {cfg['profile']} - {cfg['description']}")

# %% [markdown]
# ## Data
#
# `generate_cohort` writes the synthetic cohort (subjects already written are skipped),
# `collect_sources` adds the profile's other raw data (the real spine fixture, a site's manifest)
# and `prepare_all` turns it all into model-ready slices, masks and boxes as the study prepared
# them: each volume clipped to the 1st-99th percentiles of its non-zero voxels and scaled to 8-bit,
# each labelled slice resized straight to the square model size with a cubic spline (masks nearest
# neighbour), small components removed (`PrepareSettings`: the profile's `prepare` section; the
# study's values are its defaults; `resize_mode="pad"` keeps the aspect ratio instead). Without a
# profile: `prepare_all(read_manifest("my_manifest.csv"), Path("prepared"), PrepareSettings())`.
# The two tables used below are `subjects` (one row per subject: demographics, acquisition, split,
# where the data came from) and `slices` (one row per processed slice).

# %%
from mskseg_lib.data.cohort import generate_cohort
from mskseg_lib.data.prepare import prepare_all
from mskseg_lib.data.sources import collect_sources
from mskseg_lib.data.tables import load_tables
from mskseg_lib.from_profile import data as fp_data

prepared_dir = fp_data.prepared_dir(cfg)
cohort = fp_data.cohort_settings(cfg)  # None when the profile has no synthetic cohort
manifest = generate_cohort(fp_data.cohort_dir(cfg), cohort) if cohort else None
settings = fp_data.prepare_settings(cfg)
notes = []  # sources the profile names but this machine lacks; bad manifest rows under on_bad_input: skip
sources = collect_sources(manifest, fp_data.raw_sources(cfg), notes, settings.on_bad_input)
prepared = prepare_all(sources, prepared_dir, settings, notes=notes)
subjects, slices = load_tables(prepared_dir)
print(f"{len(subjects)} subjects, {len(slices)} processed slices, {subjects['dataset'].nunique()} datasets")
subjects.head()

# %%
pd.read_csv(prepared.summary_csv)

# %% [markdown]
# Where each dataset's subjects come from: `synthetic` is the generated cohort, `real` the real
# spine fixture (or a site's manifest under `paper`). Tables below label their rows the same way.

# %%
kind = subjects["source"].map(lambda s: "synthetic" if s == "synthetic" else "real")
subjects.assign(data_source=kind).groupby(["data_source", "dataset"], sort=True).size().rename("subjects").to_frame()

# %% [markdown]
# ## (a) Age and weight per anatomy
#
# Kernel densities of age and weight per anatomy; missing values are dropped and counted in the
# corner. Clinical datasets (spine, thigh) span a wider age range than the research cohorts.
# Age matters downstream: the cohort builds in cartilage thinning and longer cartilage T2 with
# age, and disc height loss with age, so age is a covariate of the biomarker analyses.

# %%
fig = dov.plot_age_weight_density(subjects)
save_figure(fig, cfg, "fig2a_age_weight_density", notebook="01", datasets=subjects["dataset"].unique(),
            caption="Age and weight distributions (kernel density) per anatomy; missing values excluded.")

# %% [markdown]
# ## (b) Subjects and slices per anatomy
#
# Bars are stacked by split (train dark, val, test light). Slices are the 2D slices kept by
# `prepare_all`, i.e. what the models are evaluated on.

# %%
fig = dov.plot_counts_per_anatomy(subjects, slices)
save_figure(fig, cfg, "fig2b_counts_per_anatomy", notebook="01", datasets=subjects["dataset"].unique(),
            caption="Subjects (left) and processed slices (right) per anatomy, stacked by split.")

# %% [markdown]
# ## (c) Age and weight per dataset
#
# One violin per dataset, grouped by anatomy and coloured by sequence; the points are subjects.
# Look for datasets whose demographics differ from the rest of their anatomy: a difference in
# segmentation accuracy between them could then be due to the population, not the protocol.

# %%
fig = dov.plot_demographic_violins(subjects, hue="sequence")
save_figure(fig, cfg, "fig2c_demographic_violins", notebook="01", datasets=subjects["dataset"].unique(),
            caption="Age (top) and weight (bottom) per dataset, grouped by anatomy, coloured by sequence.")

# %% [markdown]
# ## (d) Acquisition attributes
#
# Each subject is described by seven yes/no attributes (thresholds in
# `dov.UPSET_THRESHOLDS`); the bars count subjects per combination. Unknown values (for example
# a missing flip angle) count as "no". Research datasets form a few large columns (one fixed
# protocol each); clinical datasets spread over many combinations (vendors, field strengths and
# timings vary per subject). Slice thickness follows the profile's `cohort.slice_scale`, so the
# thin-slice column depends on the profile.

# %%
fig = dov.plot_acquisition_upset(subjects)
save_figure(fig, cfg, "fig2d_acquisition_upset", notebook="01", datasets=subjects["dataset"].unique(),
            caption="UpSet plot of binary acquisition attributes per subject (unknown values count as absent).")

# %% [markdown]
# ## (e) Sex per anatomy
#
# Female / male / unknown subjects per anatomy. Splits are stratified by sex where the profile
# says so (`prepare.stratify_by`).

# %%
fig = dov.plot_sex_donuts(subjects)
save_figure(fig, cfg, "fig2e_sex_donuts", notebook="01", datasets=subjects["dataset"].unique(),
            caption="Sex of the subjects per anatomy (female, male, unknown).")

# %% [markdown]
# ## (f) Labels per anatomy and tissue class
#
# Inner ring: anatomy; outer ring: tissue class within it, sized by number of labels (a structure
# labelled in two datasets counts twice). Cartilage (knee, discs) and bone dominate; muscle, nerve
# and fat come from the clinical spine and thigh datasets only.

# %%
from mskseg_lib.data.catalog import dataset_order, labels_for_datasets

labels = labels_for_datasets(dataset_order(subjects))
fig = dov.plot_tissue_layered_donut(labels)
save_figure(fig, cfg, "fig2f_tissue_layered_donut", notebook="01", datasets=dataset_order(subjects),
            caption="Labels per anatomy (inner ring) and tissue class (outer ring).")

# %% [markdown]
# ## Supplementary tables
#
# S0 lists each dataset with its labels, S1 its demographics (mean ± SD over known values, with
# the number of missing values), S2 its acquisition (median [range] over subjects). They follow the
# study's layout but describe the synthetic cohort (and the real spine fixture where prepared: see
# each row's `data_source`); the study's own values are in its supplement and are not reproduced.

# %%
from mskseg_lib.data import summary

table_s0 = summary.table_s0_datasets(subjects, labels)
save_table(table_s0, cfg, "tableS0_datasets", notebook="01",
           caption="Table S0. Datasets of the synthetic cohort (and the real spine fixture where prepared): anatomy, "
                   "plane, acquisition, labels and task.")
table_s0

# %%
table_s1 = summary.table_s1_demographics(subjects)
save_table(table_s1, cfg, "tableS1_demographics", notebook="01",
           caption="Table S1. Demographics per dataset of the synthetic cohort (real spine fixture rows marked real): "
                   "split sizes, age, weight and BMI (mean ± SD of known values), sex, missing values.")
table_s1

# %%
table_s2 = summary.table_s2_acquisition(subjects)
save_table(table_s2, cfg, "tableS2_acquisition", notebook="01",
           caption="Table S2. Acquisition per dataset of the synthetic cohort (real spine fixture rows marked real): "
                   "vendors, field strengths, TE/TR/flip angle, slice thickness and pixel spacing (median [range]), "
                   "matrix, 2D/3D, protocol type.")
table_s2

# %% [markdown]
# ## QC montage
#
# Per dataset, the prepared slice with the most labels (ties broken at random), exactly as the
# models receive it (resized as `prepare.resize` says), with its mask overlaid (background
# transparent). Check that masks sit on the anatomy, that intensities are normalised (no black or
# saturated slices) and that the orientation is consistent within an anatomy. The montage has no
# study counterpart, hence its `X01` number.

# %%
from mskseg_lib.data.slice_store import qc_samples

samples = qc_samples(prepared_dir, slices, per_dataset=opts.get("qc_slices_per_dataset", 1),
                     size_px=cfg["prepare"]["slice_sizes_px"][0], seed=cfg["seed"])
fig = dov.plot_qc_montage(samples, order=dataset_order(subjects))
how = {"stretch": "resized straight to the square model size", "pad": "aspect kept, zero-padded to the square"}
save_figure(fig, cfg, "figX01a_qc_montage", notebook="01", datasets=[s["dataset"] for s in samples],
            caption=f"QC montage: prepared model-input slices ({how[cfg['prepare']['resize']]}) with label overlays, "
                    "one row per dataset.")

# %% [markdown]
# ## Outputs
#
# Figures are written as PNG to the profile's `paths.figures_dir` and tables as CSV to
# `paths.tables_dir` (e.g. `figures/default/`, `tables/default/`), each registered with its
# caption for the HTML index of the profile. Executed copies of this notebook go to the run
# folder under `paths.runs_dir`.
