"""Statistics for comparing segmentation models.

``comparisons``: repeated-measures tests across models with subjects as blocks (Friedman per
dataset, pairwise Wilcoxon signed-rank) and Benjamini-Hochberg FDR correction. Mixed-effects
models and agreement statistics will be added later, each as its own module.
"""
