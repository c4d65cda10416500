"""Figure 4's numbers: per ablation group, subject mean ± SD of the finetuned runs and baselines.

Each panel of figure 4 (:mod:`mskseg_lib.plots.finetune` draws them) shows, for the finished
experiments of one ablation group, the mean over test subjects of the slice-mean subject Dice
with its SD (a subject's repeated runs averaged first), next to the zero-shot Dice of the same
initial model on the same datasets. :func:`ablation_summary` computes those numbers for one
group, :func:`figure4_summaries` for the four panels:

* ``size`` (a): per dataset and training-set size (``train_subjects``);
* ``strategy`` (b): per dataset, encoder (frozen/trained) and box shift;
* ``knee`` (c): per knee dataset, encoder, box shift and size;
* ``mixing`` (d): per dataset and training mix (single, anatomy, muscle, all_msk), on the
  datasets a single-dataset run was scored on unless ``datasets`` says otherwise.

Only in-domain results count (:func:`mskseg_lib.finetuning.report.trained_on`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from mskseg_lib.data.catalog import anatomy_of
from mskseg_lib.finetuning.report import (
    CONDITION,
    SUMMARY_COLUMNS,
    group_scores,
    in_group,
    order_datasets,
    summarise,
    zero_shot_scores,
)

__all__ = ["SETTING_KEYS", "AblationSummary", "ablation_summary", "figure4_summaries"]

#: per group, the experiment settings its panel separates (besides initial model and dataset)
SETTING_KEYS: dict[str, tuple[str, ...]] = {"size": ("size",), "strategy": ("encoder", "box_shift_grid_px"),
                                            "knee": ("encoder", "box_shift_grid_px", "size"),
                                            "mixing": ("mix_kind",)}
MODEL_KEYS = ("model_key", "model")


@dataclass(frozen=True)
class AblationSummary:
    """The numbers behind one panel of figure 4.

    Attributes
    ----------
    group : the ablation group (``size``, ``strategy``, ``knee``, ``mixing``).
    defined : whether the experiments table has experiments of the group at all (a panel without
        results then says "no results yet" rather than "no experiments").
    value_col : the subject score summarised (``dice_mean_slice``).
    finetuned : one row per (model_key, model, setting keys of :data:`SETTING_KEYS`, dataset)
        with n_subjects, mean and sd (ddof=1; NaN with one subject). ``size`` is the training
        size as text (``"5"``, ``"all"``).
    zero_shot : one row per (model_key, dataset) of ``finetuned``: the initial model's zero-shot
        n_subjects, mean and sd on that dataset.
    n_train_all : dataset -> the largest number of training subjects per dataset of its runs
        with ``train_subjects == "all"`` (NaN when unknown): the "all (n=K)" tick label.
    datasets : the datasets the panel was asked to show (``mixing``; empty otherwise).
    """

    group: str
    defined: bool
    value_col: str
    finetuned: pd.DataFrame
    zero_shot: pd.DataFrame
    n_train_all: dict[str, float] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """No finished in-domain result to draw."""
        return self.finetuned.empty


def _n_all(scores: pd.DataFrame) -> float:
    """Largest ``n_train_subjects_max`` of the runs with ``train_subjects == "all"``."""
    if "n_train_subjects_max" not in scores:
        return np.nan
    runs = scores[scores["train_subjects"].astype(str) == "all"]
    return float(pd.to_numeric(runs["n_train_subjects_max"], errors="coerce").max())


def _mixing_datasets(s: pd.DataFrame, datasets: Optional[Sequence[str]]) -> list[str]:
    """The mixing panel's datasets: those given, else those a single-dataset run was scored on
    (the reference each mix is compared with), else every dataset with results."""
    if datasets is not None:
        return [str(d) for d in datasets]
    singles = s[s["mix_kind"].astype(str) == "single"] if len(s) else s
    return order_datasets((singles if len(singles) else s)["dataset"])


def ablation_summary(subjects: pd.DataFrame, experiments: pd.DataFrame, group: str, *,
                     condition: str = CONDITION, value_col: str = "dice_mean_slice",
                     datasets: Optional[Sequence[str]] = None) -> AblationSummary:
    """Subject mean ± SD of one ablation group's finished experiments and of their baselines.

    Parameters
    ----------
    subjects : the grid's subject table (``experiment_id``, ``condition``, ``dataset``,
        ``subject_id``, ``value_col``; baselines as ``zero_shot:<model_key>``).
    experiments : the grid's experiments table (``groups``, ``status``, settings).
    group : ``size``, ``strategy``, ``knee`` (knee datasets only) or ``mixing``.
    condition : the prompt condition (exact boxes).
    value_col : the subject score.
    datasets : ``mixing`` only: the datasets to show (default: those of the single-dataset runs).

    Returns
    -------
    AblationSummary
    """
    if group not in SETTING_KEYS:
        raise ValueError(f"group must be one of {sorted(SETTING_KEYS)}, got {group!r}")
    s = group_scores(subjects, experiments, group, condition, value_col)
    if group == "knee" and len(s):
        s = s[s["dataset"].map(anatomy_of) == "knee"]
    shown: list[str] = []
    if group == "mixing":
        shown = _mixing_datasets(s, datasets)
        s = s[s["dataset"].isin(shown)]
    if len(s) and "size" in SETTING_KEYS[group]:
        s = s.assign(size=s["train_subjects"].astype(str).str.strip())
    keys = [*MODEL_KEYS, *SETTING_KEYS[group], "dataset"]
    defined = not in_group(experiments, group).empty
    if s.empty:
        empty = pd.DataFrame(columns=[*keys, *SUMMARY_COLUMNS])
        return AblationSummary(group, defined, value_col, empty, pd.DataFrame(columns=["model_key", "dataset",
                                                                                        *SUMMARY_COLUMNS]),
                               datasets=tuple(shown))
    zs = zero_shot_scores(subjects, s["model_key"].unique(), condition, value_col)
    zs = zs[zs["dataset"].isin(set(s["dataset"]))]
    n_all = {d: _n_all(g) for d, g in s.groupby("dataset", sort=False)}
    return AblationSummary(group, defined, value_col, summarise(s, keys), summarise(zs, ["model_key", "dataset"]),
                           n_all, tuple(shown))


def figure4_summaries(subjects: pd.DataFrame, experiments: pd.DataFrame, condition: str = CONDITION,
                      value_col: str = "dice_mean_slice") -> dict[str, AblationSummary]:
    """The four panels' summaries: ``{"size": ..., "strategy": ..., "knee": ..., "mixing": ...}``
    (see :func:`ablation_summary`)."""
    return {g: ablation_summary(subjects, experiments, g, condition=condition, value_col=value_col)
            for g in SETTING_KEYS}
