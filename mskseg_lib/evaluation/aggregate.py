"""From (slice, label) scores to slice, subject, dataset, tissue-class and label summaries.

As in the study, a subject's Dice is the mean of its slice Dice values, where a slice's Dice is
the mean over the labels present on it. Alongside it, ``dice_3d`` is the Dice of the stacked
prediction against the stacked ground truth per label, averaged over the subject's labels.
Datasets, tissue classes and labels are summarised over subjects (each subject counts once).
An ``arm`` is a model under a prompt condition ("LiteMedSAM · gt_box"): the unit the
statistics compare.
"""
from __future__ import annotations

import pandas as pd

ARM_SEP = " · "


def add_arm(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["arm"] = out["model"].astype(str) + ARM_SEP + out["condition"].astype(str)
    return out


def slice_table(slice_labels: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, condition, slice): mean Dice/IoU over the slice's labels."""
    keys = ["model_key", "model", "condition", "dataset", "subject_id", "slice_index"]
    return (slice_labels.groupby(keys, sort=False)
            .agg(dice=("dice", "mean"), iou=("iou", "mean"), n_labels=("label_value", "size"))
            .reset_index())


def subject_table(slice_labels: pd.DataFrame, volume_labels: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, condition, subject): mean slice Dice / IoU and mean 3D label Dice."""
    keys = ["model_key", "model", "condition", "dataset", "subject_id"]
    per_slice = slice_table(slice_labels)
    subj = (per_slice.groupby(keys, sort=False)
            .agg(dice_mean_slice=("dice", "mean"), iou_mean_slice=("iou", "mean"), n_slices=("slice_index", "size"))
            .reset_index())
    vol = volume_labels.groupby(keys, sort=False).agg(dice_3d=("dice_3d", "mean")).reset_index()
    if "hd95_mm" in slice_labels:
        hd = slice_labels.groupby(keys, sort=False).agg(hd95_mm_median=("hd95_mm", "median")).reset_index()
        subj = subj.merge(hd, on=keys, how="left")
    return add_arm(subj.merge(vol, on=keys, how="left"))


def dataset_table(subjects: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, condition, dataset): mean, SD and median of subject Dice."""
    keys = ["model_key", "model", "condition", "arm", "dataset"]
    return (subjects.groupby(keys, sort=False)
            .agg(n_subjects=("subject_id", "nunique"), dice_mean=("dice_mean_slice", "mean"),
                 dice_sd=("dice_mean_slice", "std"), dice_median=("dice_mean_slice", "median"),
                 iou_mean=("iou_mean_slice", "mean"), dice_3d_mean=("dice_3d", "mean"))
            .reset_index())


def grouped_table(slice_labels: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per (model, condition, dataset, ``by``) where ``by`` is ``tissue_class`` or ``label_name``:
    the subject-level mean Dice (mean over the subject's slices of that class), then its mean
    and SD over subjects."""
    keys = ["model_key", "model", "condition", "dataset", by]
    per_subject = (slice_labels.groupby(keys + ["subject_id"], sort=False)
                   .agg(dice=("dice", "mean"), iou=("iou", "mean")).reset_index())
    out = (per_subject.groupby(keys, sort=False)
           .agg(n_subjects=("subject_id", "nunique"), dice_mean=("dice", "mean"), dice_sd=("dice", "std"),
                iou_mean=("iou", "mean"))
           .reset_index())
    return add_arm(out)
