"""The paired tests of Table 1, tier 1: finetuned vs zero-shot over the same test subjects.

Per initial model and evaluated dataset, a two-sided Wilcoxon signed-rank test of the paired
slice-mean subject Dice (a subject is a block), Benjamini-Hochberg across the model's datasets.
The table itself (the study's Dice per arm, subject summaries, published values) is built by
:func:`mskseg_lib.finetuning.report.table1_datasets`; :func:`table1_datasets` here is that table
with these tests, the one notebook 03 saves.
"""
from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd

from mskseg_lib.evaluation.aggregate import DEFAULT_LABEL_LEVEL, LabelLevel
from mskseg_lib.finetuning import report
from mskseg_lib.stats.comparisons import _wilcoxon_pair, bh_correct

__all__ = ["paired_wilcoxon", "table1_datasets"]


def paired_wilcoxon(finetuned: Sequence[float], zero_shot: Sequence[float]) -> tuple[float, float, str]:
    """Two-sided Wilcoxon signed-rank test of paired subject scores.

    Parameters
    ----------
    finetuned, zero_shot : the two arms' scores, one pair per subject (same order, same length).

    Returns
    -------
    (W, p, note)
        Not run (NaN, with the reason in ``note``) with fewer than two pairs or when every
        paired difference is zero, where the test has nothing to rank.
    """
    row = _wilcoxon_pair(pd.Series(list(finetuned), dtype=float), pd.Series(list(zero_shot), dtype=float))
    return row["statistic"], row["p_value"], row["note"]


def table1_datasets(subjects: pd.DataFrame, slices: pd.DataFrame, experiments: pd.DataFrame,
                    models: pd.DataFrame, condition: str = report.CONDITION,
                    level: LabelLevel = DEFAULT_LABEL_LEVEL,
                    published: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Table 1, tier 1 with the study's tests: :func:`mskseg_lib.finetuning.report.table1_datasets`
    with :func:`paired_wilcoxon` per dataset and Benjamini-Hochberg within each model (``p_bh``).

    Parameters are those of the report function (the grid's ``subjects``, ``slices``,
    ``experiments`` and ``models`` tables; the prompt condition; the label-Dice reading; the
    published values).

    Returns
    -------
    DataFrame
        The report's Table 1 tier 1 with this test's p and its BH-adjusted p (``p_bh``) filled in per row.
    """
    return report.table1_datasets(subjects, slices, experiments, models, condition=condition, level=level,
                                  published=published, paired_test=paired_wilcoxon, p_adjust=bh_correct)
