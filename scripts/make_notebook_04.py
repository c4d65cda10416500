#!/usr/bin/env python
"""Write ``notebooks/04_mixed_effects.ipynb`` (without outputs) from the cells below.

The notebook is generated so that it stays thin and reviewable: edit the cells here, then run
``python scripts/make_notebook_04.py`` (``--check`` exits 1 if the stored notebook differs).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_gen  # noqa: E402
from notebook_gen import code, md, parameters_cells  # noqa: E402

TARGET = notebook_gen.ROOT / "notebooks" / "04_mixed_effects.ipynb"

CELLS = [
    md("""
# 04 · How acquisition parameters and finetuning choices shape Dice

A linear mixed model per finetuning type relates each subject's Dice to the scan's acquisition
parameters and to the experiment's settings, with a random intercept per dataset (datasets
differ in ways no recorded parameter captures). This notebook regenerates **figure 5a** and the
supplementary tables **S34-S38**.

**Data.** Notebook 03's grid: every finetuned model and its zero-shot baseline scored on the
same test subjects (subject Dice = mean of slice Dice, ground-truth boxes). Each row is one
(experiment, dataset, subject); the scan's parameters come from the subject table: echo and
repetition time, flip angle, field strength, vendor, slice thickness, pixel spacing, image rows,
2D/3D and age. SAR is not recorded by the synthetic cohort or the real-data manifests, so it is
not a predictor here.

**Preprocessing, as in the study.** Missing parameters are imputed once per subject (a scan
scored by ten experiments is still one scan): nominal ones with a random-forest classifier,
ordinal and numeric ones iteratively with a random-forest regressor, and checked with
Kolmogorov-Smirnov tests. Nominal variables are one-hot encoded (first level dropped), field
strength ordinal-encoded, continuous ones standardised, discrete ones (flip angle, rows, age)
min-max scaled. Features with a variance inflation factor above the threshold are dropped,
largest first, and the preprocessing is repeated on what remains.

**Models.** One per finetuning type (single dataset, mixed anatomy/muscle, all-MSK): that type's
finetuned rows plus the reference zero-shot rows on the same datasets. The reference level is
SAM ViT-B zero-shot, as in the study; where its checkpoint is missing (the `default` profile)
it is the first zero-shot model present, and the fit table says which. Fixed effects: the
parameters, the arm (model × finetuned), encoder trained, box shift, and the profile's two-way
interactions (echo time × slice thickness, echo time × encoder trained).

**Validation.** `tests/test_mixed_effects.py` and `tests/test_acquisition_effects.py` fit
simulated tables with known coefficients and a random dataset effect and recover them. Below, a
zero-shot model over the whole synthetic cohort tests whether the recovered effects point the
way the cohort's MR physics says they should.
"""),
    *parameters_cells(),
    code("""
import pandas as pd

from mskseg_lib.config import load_profile
from mskseg_lib.data.prepare import prepare_all
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation import aggregate
from mskseg_lib.evaluation.zero_shot import run_zero_shot, zero_shot_variant
from mskseg_lib.finetuning.runner import run_grid
from mskseg_lib.plots import mixed_effects as meplots
from mskseg_lib.plots.style import apply_style
from mskseg_lib.reporting import save_figure, save_table
from mskseg_lib.stats import acquisition_effects as ae
from mskseg_lib.stats.mixed_effects import MRI_TYPES, PUBLISHED_EFFECTS

cfg = load_profile(profile, overrides=params if isinstance(params, dict) else None)
me = cfg["mixed_effects"]
apply_style()
pd.set_option("display.width", 160)
print(f"profile: {cfg['profile']} - {cfg['description']}")
print({k: v for k, v in me.items() if k != "physics"})
"""),
    md("""
## The assembled table

`run_grid` returns the finished grid of notebook 03 at once (and trains whatever is missing,
resuming). Rows with `experiment_id` `zero_shot:<model>` are the baselines.
"""),
    code("""
prepare_all(cfg)
subjects, _ = load_tables(cfg)
grid = run_grid(cfg)
result = ae.analyse_effects(grid.subjects, grid.experiments, subjects, reference_model=me["reference_model"],
                            condition=me["condition"], interactions=me["interactions"],
                            vif_threshold=me["vif_threshold"], seed=cfg["seed"])
s34 = ae.data_summary(result.table)
save_table(s34.round(4), cfg, "tableS34_mixed_effects_data", notebook="04",
           caption="S34: rows, subjects, experiments and subject Dice per finetuning type and dataset, "
                   "with the dataset's median acquisition parameters.")
s34
"""),
    md("""
## Missing parameters and imputation

S35 lists each variable's type and how often the subject table lacks it; S36 compares each
imputed column's observed values with the completed column (two-sample KS: a small statistic
means the imputation kept the distribution).
"""),
    code("""
save_table(result.missingness.round(4), cfg, "tableS35_variable_types_missingness", notebook="04",
           caption="S35: variable type, missing count and fraction, and number of levels, per subject.")
save_table(result.ks.round(4), cfg, "tableS36_imputation_ks", notebook="04",
           caption="S36: Kolmogorov-Smirnov test, observed vs observed-plus-imputed values, per imputed variable.")
display(result.missingness.round(3))
if result.ks.empty:
    print("S36: no parameter is missing for the subjects in this table, so nothing was imputed")
result.ks.round(4)
"""),
    md("""
## Collinearity

Acquisition parameters travel together (a 3D knee protocol fixes thin slices, long TR and a
low flip angle at once), so several are near-copies of each other or of the dataset. S37 gives
each feature's VIF before and after pruning, per finetuning type; dropped features are not in
that type's model.
"""),
    code("""
save_table(result.vif.round(3), cfg, "tableS37_vif", notebook="04",
           caption="S37: variance inflation factor of each feature before and after pruning (VIF > "
                   f"{me['vif_threshold']}), per finetuning type.")
result.vif.pivot(index="feature", columns="finetune_type", values="vif_before").round(2)
"""),
    md("""
## The mixed models

One row per finetuning type: whether it was fitted (or why not), the reference arm, convergence,
the random-intercept (between-dataset) and residual variances, and what was dropped.
"""),
    code("""
save_table(result.fits, cfg, "tableS38b_mixed_model_fits", notebook="04",
           caption="S38b: per finetuning type, fit status, reference arm, observations, datasets, convergence, "
                   "random-intercept and residual variance, dropped features and interactions, formula.")
result.fits[["finetune_type", "status", "reference_arm", "n_obs", "n_groups", "converged",
             "random_intercept_var", "residual_var"]]
"""),
    md("""
## Figure 5a and table S38

Fixed effects with 95% CIs for the three finetuning types side by side. Continuous predictors
are z-scored (effect per SD), discrete ones min-max scaled (effect from the smallest to the
largest value), binary ones 0/1, so effects are comparable within a term, not across terms.
Grey bands are the study's published ranges: flip angle +0.714 to +0.773, echo time -0.099 to
-0.058, pixel spacing -0.080. **The cohort differs** (a synthetic cohort here, or a different
set of sites), so the regenerated numbers are not expected to match them; the sign and rough
size are what to compare.
"""),
    code("""
s38 = ae.with_published(result.coefficients)
save_table(s38.round(5), cfg, "tableS38_mixed_model_coefficients", notebook="04",
           caption="S38: fixed effects (coefficient, SE, 95% CI, p) per finetuning type, with the study's "
                   "published range beside flip angle, echo time and pixel spacing (a different cohort).")
fig = meplots.plot_forest(result.coefficients, PUBLISHED_EFFECTS)
save_figure(fig, cfg, "fig5a_mixed_effects_forest", notebook="04",
            caption="Figure 5a: fixed effects on subject Dice (95% CI) by finetuning type; reference: zero-shot. "
                    "Grey: published ranges from the study's cohort.")
s38[s38["term"].isin(PUBLISHED_EFFECTS["term"])].round(4)
"""),
    md("""
## Do the effects follow the physics? (synthetic cohort)

The synthetic cohort's images are rendered from tissue relaxation with the subject's TE, TR,
flip angle and field strength, with noise scaled by voxel size and field (`mskseg_lib/data/
mr_physics.py`). One zero-shot model is scored on every subject (`mixed_effects.physics`, its
own run folder, sharing the embedding cache) and its Dice fitted to the MRI parameters alone.
Datasets differ in far more than their parameters (a long-TE T2 spine scan suits its anatomy
better than a short-TE knee scan suits cartilage), so the verdict uses each parameter's
**within-dataset** effect: the parameter centred on its dataset mean, with the random intercept
per dataset. TE, TR, flip angle, vendor and field strength vary inside the clinical datasets;
voxel size does not, so it only has a between-dataset estimate (pooled model), marked as
confounded with anatomy and sequence. A verdict is *agrees* or *contradicts* only when the 95%
CI excludes zero; otherwise the data cannot tell.
"""),
    code("""
ph = me["physics"]
if not ph["enabled"]:
    print("physics check: disabled in this profile (it needs the synthetic cohort's known physics)")
else:
    phys_cfg = zero_shot_variant(cfg, tag=ph["tag"], models=[ph["model"]], split=ph["split"],
                                 conditions=[{"name": me["condition"], "jitter_px": 0}],
                                 max_subjects_per_dataset=ph["max_subjects_per_dataset"],
                                 max_slices_per_subject=ph["max_slices_per_subject"], hd95=False)
    phys = run_zero_shot(phys_cfg)
    status = phys.models.set_index("model_key").loc[ph["model"], "status"]
    if status != "available":
        print(f"physics check: not run, {ph['model']} is {status}")
    else:
        phys_subjects = aggregate.subject_table(phys.slices, phys.volumes)
        phys_fit, verdict = ae.physics_check(phys_subjects, subjects, model_key=ph["model"],
                                             condition=me["condition"], vif_threshold=me["vif_threshold"],
                                             seed=cfg["seed"])
        print(f"{len(phys_subjects)} subjects, {phys_subjects['dataset'].nunique()} datasets; within-dataset "
              f"fit: {phys_fit['status']}, converged {phys_fit.get('converged')}")
        save_table(verdict.round(5), cfg, "tableS38c_physics_direction_check", notebook="04",
                   caption="S38c: zero-shot Dice over the synthetic cohort vs MRI parameters: expected sign from the "
                           "cohort's physics, within-dataset estimate (between-dataset where the parameter is constant inside "
                           "datasets) with 95% CI, whether they agree, and the pooled estimate beside it.")
        display(verdict.round(4))
"""),
    md("""
## Outputs

Tables go to `paths.tables_dir`, the figure to `paths.figures_dir`. The physics run keeps its
per-subject results in `runs/<profile>/zero_shot/<physics tag>/` and resumes like any zero-shot
run.
"""),
]


def render() -> str:
    return notebook_gen.render(CELLS, "nb04")


if __name__ == "__main__":
    sys.exit(notebook_gen.main(TARGET, render(), len(CELLS), __doc__.splitlines()[0]))
