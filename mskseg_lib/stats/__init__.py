"""Statistics of the study: every test and model that turns scores and measurements into numbers.

* ``comparisons``: repeated-measures tests across models with subjects as blocks (Friedman per
  dataset, pairwise Wilcoxon signed-rank, the gated post-hoc reading), the rank-sum test of
  notebook 06 and Benjamini-Hochberg FDR correction;
* ``zero_shot_tests``: notebook 02's S4/S5 tests and the extra prompt-condition analyses;
* ``finetune_tests``: the paired Wilcoxon tests of Table 1 (finetuned vs zero-shot);
* ``mixed_effects``: the generic steps of the mixed-effects analyses (assembly, random-forest
  imputation with KS checks, encoding and scaling, VIF screen, ``MixedLM``) and
  ``MixedEffectsSettings`` (the study's choices as defaults);
* ``study_effects``: the study's dataset-level mixed models of figure 5a and S34-S38;
* ``acquisition_effects``: the subject-level sensitivity analysis and the physics direction
  check of notebook 04;
* ``agreement``: manual vs predicted biomarkers (S65-S68): test choice, ICC(3,1), ICC(A,1) and
  the bootstrap LMM ICC, Bland-Altman, linear or Gaussian-process regression, Spearman, with
  ``AgreementSettings`` (the study's by default).

Functions take tables and settings objects, never a profile; plots only draw their results.
"""
