#!/usr/bin/env python
"""Write ``notebooks/05_biomarker_agreement.ipynb`` (without outputs) from the cells below.

The notebook is generated so that it stays thin and reviewable: edit the cells here, then run
``python scripts/make_notebook_05.py`` (``--check`` exits 1 if the stored notebook differs).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_gen  # noqa: E402
from notebook_gen import code, md, parameters_cells  # noqa: E402

TARGET = notebook_gen.ROOT / "notebooks" / "05_biomarker_agreement.ipynb"

CELLS = [
    md("""
# 05 · Clinical biomarkers: predicted masks against manual ones

A segmentation is only as useful as the measurements it gives. This notebook measures the
study's four biomarkers from manual masks and from model predictions of the same subjects, and
asks how well they agree. It regenerates **figure 5b** and the supplementary tables **S39-S68**.

* **Cartilage thickness** (femoral, tibial, patellar; mm): chords through the medial axis along
  the local normal, to the sub-pixel boundary, in-plane spacing honoured (the study's code took
  the distance at the skeleton times the slice thickness, without doubling it);
* **T2 / T1rho** (ms): mean of the map inside each cartilage compartment, maps clipped to
  0-100 ms, voxel-weighted per subject;
* **disc height** (mm): the short side of the minimum-area rectangle of each disc in mm, the
  maximum over slices (through the slices for axial disc stacks);
* **tissue volume** (cm3): voxel count × voxel volume, per label.

Missing structures are NaN with a reason, never 0. **Predictions** come from the best finetuned
model of notebook 03 for each dataset (chosen on *validation* Dice during training, never on the
test subjects measured here) and, for contrast, from a zero-shot model, each prompted with
ground-truth boxes on every labelled slice.

**Agreement**, per biomarker and structure (`mskseg_lib/stats/agreement.py`): Shapiro-Wilk and
Levene decide between parametric and non-parametric statistics; ICC(3,1) (pingouin) or an ICC
from a linear mixed model with a subject bootstrap; Bland-Altman bias and limits; linear or
Gaussian-process regression; Spearman's rho. Beyond the study, the synthetic cohort's true
values show the error of the manual *and* the predicted measurement.
"""),
    *parameters_cells(),
    code("""
import pandas as pd

from mskseg_lib.biomarkers import study
from mskseg_lib.config import load_profile
from mskseg_lib.data.cohort import load_truth
from mskseg_lib.data.prepare import prepare_all
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation.volumes import assemble_volume, predict_volumes
from mskseg_lib.finetuning.engine import run_dir_of
from mskseg_lib.finetuning.evaluate import FINETUNED_KEY, predict_run_volumes
from mskseg_lib.finetuning.grid import expand_grid
from mskseg_lib.finetuning.runner import run_grid
from mskseg_lib.plots import biomarkers as bplots
from mskseg_lib.plots.style import apply_style
from mskseg_lib.reporting import save_figure, save_table
from mskseg_lib.stats.agreement import agreement_table

cfg = load_profile(profile, overrides=params if isinstance(params, dict) else None)
b = cfg["biomarkers"]
apply_style()
pd.set_option("display.width", 160)
print(f"profile: {cfg['profile']} - {cfg['description']}")
print(b)
"""),
    md("""
## Subjects and the model per dataset

The grid of notebook 03 is loaded (and finished if it is not). For each dataset the predicting
model is the finished experiment trained on it with the highest validation Dice.
"""),
    code("""
prepare_all(cfg)
subjects, _ = load_tables(cfg)
grid = run_grid(cfg)
real_name = "RealSpine_MyoSegmenTUM_VB_8"
wanted = sorted(subjects["dataset"].unique()) if b["datasets"] == "all" else list(b["datasets"])
wanted = [d for d in wanted if d != real_name]  # the real fixture has its own section below
splits = [b["split"]] if isinstance(b["split"], str) else list(b["split"])
chosen = subjects[subjects["dataset"].isin(wanted) & (subjects["split"].isin(splits) | (b["split"] == "all"))]
chosen = chosen.sort_values(["dataset", "subject_id"])
if b["max_subjects_per_dataset"] > 0:
    chosen = chosen.groupby("dataset").head(b["max_subjects_per_dataset"])
best = study.best_experiment_per_dataset(grid.experiments, grid.history, wanted)
pd.DataFrame({"dataset": wanted, "subjects": [int((chosen["dataset"] == d).sum()) for d in wanted],
              "finetuned model (best validation Dice)": [best.get(d, "none trained on it") for d in wanted]})
"""),
    md("""
## Whole-volume predictions

Every labelled slice of the chosen subjects, ground-truth boxes, one embedding per slice (the
zero-shot embedding cache is shared with decoder-only finetunes). Runs resume.
"""),
    code("""
datasets = sorted(chosen["dataset"].unique())
zs_key = b["zero_shot_model"]
zs_run = predict_volumes(cfg, zs_key, tag=b["tag"], datasets=datasets, split=b["split"],
                         max_subjects_per_dataset=b["max_subjects_per_dataset"])
zs_done = set(zip(zs_run.slices.get("dataset", []), zs_run.slices.get("subject_id", [])))
experiments = {e.run_id(r): (e, r) for e in expand_grid(cfg, sorted(subjects["dataset"].unique()))
               for r in range(1, cfg["finetune"]["repeats"] + 1)}
ft_runs = {}
for eid in sorted(set(best.values())):
    exp, repeat = experiments[eid]
    mine = [d for d in datasets if best.get(d) == eid]
    for d, run in predict_run_volumes(cfg, exp, run_dir_of(cfg, exp, repeat), datasets=mine, split=b["split"],
                                      max_subjects_per_dataset=b["max_subjects_per_dataset"]).items():
        ft_runs[d] = run


def finetuned_volume(s):
    run = ft_runs.get(s["dataset"])
    return None if run is None else assemble_volume(run.run_dir, FINETUNED_KEY, s)[0]


def zero_shot_volume(s):
    return assemble_volume(zs_run.run_dir, zs_key, s)[0] if (s["dataset"], s["subject_id"]) in zs_done else None


print(f"zero-shot {zs_key}: {len(zs_done)} subjects; finetuned: {sorted(ft_runs)}")
"""),
    md("""
## Measurements (S39-S64)

One long table of every value (manual, finetuned, zero-shot and, for the synthetic cohort, the
truth), then one table per biomarker and structure with each subject's values side by side.
"""),
    code("""
long = study.measure_all(chosen, {"finetuned": finetuned_volume, "zero_shot": zero_shot_volume})
if cfg["cohort"]["enabled"]:
    long = pd.concat([long, study.truth_rows(load_truth(cfg), chosen)], ignore_index=True)
save_table(long.round(5), cfg, "tableS39plus_biomarkers_long", notebook="05",
           caption="S39+: every biomarker value per subject and structure, from manual masks, the best finetuned "
                   "model, the zero-shot model and (synthetic cohort) the truth; NaN rows carry their reason.")
wide = long.pivot_table(index=["biomarker", "structure", "dataset", "subject_id"], columns="source", values="value",
                        aggfunc="first").reset_index()
groups = [g for g, part in wide.groupby(["biomarker", "structure"]) if part.drop(columns=["biomarker", "structure",
          "dataset", "subject_id"]).notna().any().any()]
for number, (biomarker, structure) in enumerate(groups[:26], start=39):
    part = wide[(wide["biomarker"] == biomarker) & (wide["structure"] == structure)]
    save_table(part.round(4), cfg, f"tableS{number}_{biomarker}_{study.safe_structure(structure)}", notebook="05",
               caption=f"S{number}: {biomarker} of {structure} per subject: manual vs predicted masks.")
if len(groups) > 26:
    print(f"{len(groups) - 26} more biomarker/structure groups are in the long table only (S39-S64 hold 26)")
wide.groupby(["biomarker", "structure"])[[c for c in ("manual", "finetuned", "zero_shot", "truth") if c in wide]].mean().round(3)
"""),
    md("""
## Agreement (S65-S68)

For the finetuned predictions (the study's comparison) and the zero-shot ones (for contrast):
S65 the test choice, S66 the ICC, S67 the regression, S68 Spearman's rho, S68b Bland-Altman. A
group with fewer than three subject pairs gets a row that says so.
"""),
    code("""
tables = {}
for source in ("finetuned", "zero_shot"):
    pairs = study.paired(long, source)
    tables[source] = agreement_table(pairs, "manual", "predicted", by=("biomarker", "structure"),
                                     subject_col="subject", n_boot=b["n_boot"], seed=cfg["seed"])


def both(name):
    return pd.concat([getattr(t, name).assign(predicted_by=s) for s, t in tables.items()], ignore_index=True)


for name, number, caption in [("test_choice", "S65", "normality (Shapiro-Wilk) and equal variance (Levene) tests and "
                                                     "the parametric / non-parametric decision"),
                              ("icc", "S66", "ICC(3,1) with its F-based 95% CI, or the mixed-model ICC with a subject "
                                             "bootstrap (median, 2.5/97.5 percentiles)"),
                              ("regression", "S67", "linear regression (slope, intercept, r, R2, p, stderr) or "
                                                    "Gaussian-process regression (R2)"),
                              ("spearman", "S68", "Spearman's rho and p"),
                              ("bland_altman", "S68b", "Bland-Altman bias and 95% limits of agreement "
                                                       "(predicted - manual) with CIs")]:
    save_table(both(name).round(5), cfg, f"table{number}_{name}", notebook="05",
               caption=f"{number}: {caption}, per biomarker and structure, manual vs predicted masks.")
both("icc")[["predicted_by", "biomarker", "structure", "n_pairs", "method", "icc", "ci_low", "ci_high", "note"]].round(3)
"""),
    md("""
## Figure 5b

Per biomarker, the structure with the most subject pairs: Bland-Altman (left) and regression
with the identity line (right) of the finetuned predictions, annotated with the ICC, R2 or rho
and p. Every other structure is in S65-S68.
"""),
    code("""
results = tables["finetuned"].results
shown = {}
for biomarker in sorted({k[0] for k in results}):
    keys = [k for k in results if k[0] == biomarker]
    key = max(keys, key=lambda k: results[k].n_pairs)
    shown[key] = results[key]
fig = bplots.plot_figure5b(shown, units={k: study.UNITS[k[0]] for k in shown})
save_figure(fig, cfg, "fig5b_biomarker_agreement", notebook="05",
            caption="Figure 5b: biomarkers from the best finetuned model's masks vs manual masks: Bland-Altman "
                    "(left) and regression with identity line (right), one structure per biomarker.")
"""),
    md("""
## Beyond the study: error against the truth

The synthetic cohort knows each subject's true thickness, relaxation times, disc heights and
volumes, so both measurements can be checked: how far is the manual mask's value from the truth,
and how far the predicted mask's? (Known limit of the truth: the meniscus overwrites the rim of
the tibial cartilage slab, so the tibial label is thinner than its nominal thickness.)
"""),
    code("""
truth_pairs = study.paired(long, "finetuned").dropna(subset=["truth"])
if truth_pairs.empty:
    print("no true values for these subjects (real data): nothing to show")
else:
    truth_pairs = truth_pairs.rename(columns={"truth": "true"})
    fig = bplots.plot_truth_error(truth_pairs, units=study.UNITS)
    save_figure(fig, cfg, "fig5c_biomarker_error_vs_truth", notebook="05",
                caption="Beyond the study: biomarker error (measured - true) against the synthetic cohort's true "
                        "value, from manual masks and from the finetuned model's masks.")
    err = truth_pairs.assign(manual_error=truth_pairs["manual"] - truth_pairs["true"],
                             predicted_error=truth_pairs["predicted"] - truth_pairs["true"])
    summary = err.groupby("biomarker")[["manual_error", "predicted_error"]].agg(["mean", "std", "count"]).round(4)
    save_table(summary.reset_index(), cfg, "tableS68c_error_vs_truth", notebook="05",
               caption="S68c: mean and SD of the error against the cohort's truth, manual vs finetuned masks.")
    display(summary)
"""),
    md("""
## The real spine fixture

Eight real lumbar MRI volumes with manual vertebral-body masks (`../shared/data/real_spine`).
Every subject is segmented zero-shot (no model was trained on them under this comparison) and
each vertebral body's volume from the predicted mask is compared with the manual one.
"""),
    code("""
real = subjects[subjects["dataset"] == real_name].sort_values("subject_id")
if not b["real_spine"] or real.empty:
    print("real spine fixture: not in this profile's prepared data (set MSKSEG_REAL_SPINE / sources)")
else:
    real_run = predict_volumes(cfg, zs_key, tag=f"{b['tag']}_real_spine", datasets=[real_name], split="all")
    real_long = study.measure_all(real, {"zero_shot": lambda s: assemble_volume(real_run.run_dir, zs_key, s)[0]})
    vb = study.paired(real_long[real_long["biomarker"] == "volume_cm3"], "zero_shot", with_truth=False)
    vb["subject_vb"] = vb["subject"] + ":" + vb["structure"]
    real_agreement = agreement_table(vb.assign(biomarker="volume_cm3", structure="vertebral bodies"), "manual",
                                     "predicted", subject_col="subject_vb", n_boot=b["n_boot"], seed=cfg["seed"])
    save_table(vb.round(4), cfg, "tableS68d_real_spine_vertebral_volumes", notebook="05",
               caption="S68d: real spine fixture: vertebral body volumes (cm3), manual vs zero-shot masks.")
    save_table(real_agreement.icc.round(4), cfg, "tableS68e_real_spine_icc", notebook="05",
               caption="S68e: real spine fixture: agreement (ICC) of vertebral body volumes, manual vs zero-shot.")
    display(real_agreement.icc[["n_pairs", "method", "icc", "ci_low", "ci_high", "note"]].round(3))
"""),
]


def render() -> str:
    return notebook_gen.render(CELLS, "nb05")


if __name__ == "__main__":
    sys.exit(notebook_gen.main(TARGET, render(), len(CELLS), __doc__.splitlines()[0]))
