"""From (slice, label) scores to slice, subject, label, tissue-class and dataset summaries.

Two summaries of a dataset are kept apart, because the study uses both:

* **The dataset's Dice ("Mean Tissue", S3 and Table 1).** Label Dice -> tissue-class means
  within the dataset (the unweighted mean of the label values of that class) -> their
  unweighted mean. For the thigh, SAM's published labels give muscle 0.90313 (mean of the five
  muscle groups), bone 0.85958, nerve 0.84700, fat 0.71454 and a Mean Tissue of 0.83106, the
  published dataset value, while the plain mean of the nine labels would be about 0.866.
  A label's Dice is averaged over slices in one of two readings (:data:`LABEL_LEVELS`):
  ``pooled_slices`` (default): the mean over every test slice of the dataset on which the label
  is present, as the study's evaluation engine aggregates MONAI's
  ``DiceMetric(reduction="mean_batch", ignore_empty=True)`` and as Table 1's caption words it
  ("averaged across all class labels and MRI slices within each dataset");
  ``per_subject``: the mean over a subject's slices, then over subjects, as the engine's
  per-volume and global CSVs do. The two agree when every subject contributes the same number
  of slices of a label. The published tiers only give label means, so they cannot tell the two
  readings apart; the second one is kept as a named variant column.
* **The subject's Dice (figure 3, Friedman and Wilcoxon blocks).** A slice's Dice is the mean
  over the labels present on it, a subject's Dice (``dice_mean_slice``) the mean of its slice
  Dice values, as the study's "subject mean Dice". Per dataset it is summarised as the mean,
  SD and median over subjects (``subject_dice_*`` columns), each subject counting once.
  ``dice_3d`` is the Dice of the stacked slices per label, averaged over the subject's labels.

Labels absent from a slice's ground truth have a NaN Dice and are left out of every mean. An
``arm`` is a model under a prompt condition ("LiteMedSAM · gt_box").
"""
from __future__ import annotations

from typing import Literal, Sequence

import pandas as pd

ARM_SEP = " · "
LabelLevel = Literal["pooled_slices", "per_subject"]
LABEL_LEVELS: tuple[str, ...] = ("pooled_slices", "per_subject")
DEFAULT_LABEL_LEVEL: LabelLevel = "pooled_slices"
LABEL_COLUMNS: tuple[str, ...] = ("label_value", "label_name", "tissue_class")
SUBJECT_KEYS: tuple[str, ...] = ("dataset", "subject_id")
RUN_KEYS: list[str] = ["model_key", "model", "condition", "arm", "dataset"]


def add_arm(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["arm"] = out["model"].astype(str) + ARM_SEP + out["condition"].astype(str)
    return out


def _check_level(level: str) -> None:
    if level not in LABEL_LEVELS:
        raise ValueError(f"label Dice level must be one of {LABEL_LEVELS}, got {level!r}")


def _require(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}; available: {list(df.columns)}")


# ------------------------------------------------------------------ the study's dataset Dice
def label_dice(slice_labels: pd.DataFrame, keys: Sequence[str], level: LabelLevel = DEFAULT_LABEL_LEVEL,
               value_col: str = "dice") -> pd.DataFrame:
    """Dice of every label, per ``keys`` (which must include ``dataset``).

    Parameters
    ----------
    slice_labels : one row per (…keys, subject_id, slice, label) with ``value_col``,
        ``label_value``, ``label_name`` and ``tissue_class``.
    keys : grouping columns, e.g. ``["model_key", "condition", "dataset"]``.
    level : ``"pooled_slices"`` (mean over all slices of the dataset on which the label is
        present) or ``"per_subject"`` (mean over each subject's slices, then over subjects).
    value_col : the score to average (``dice`` or ``iou``).

    Returns
    -------
    DataFrame with ``keys``, ``label_value``, ``label_name``, ``tissue_class``, ``value_col``,
    ``n_subjects`` and ``n_slices`` (rows with a finite score). Rows with NaN scores (label
    absent from the ground truth) are left out; a label without any finite score has no row.
    """
    _check_level(level)
    keys = list(keys)
    _require(slice_labels, [*keys, *LABEL_COLUMNS, "subject_id", value_col], "label_dice")
    labels = list(LABEL_COLUMNS)
    subject = list(dict.fromkeys([*SUBJECT_KEYS, *keys]))
    df = slice_labels.assign(_v=pd.to_numeric(slice_labels[value_col], errors="coerce"))
    df = df[df["_v"].notna()]
    cols = [*keys, *labels, value_col, "n_subjects", "n_slices"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    per_subject = (df.groupby([*subject, *labels], sort=False, dropna=False)["_v"]
                   .agg(["mean", "size"]).reset_index())
    by = [*keys, *labels]
    if level == "pooled_slices":
        out = df.groupby(by, sort=False, dropna=False)["_v"].mean().rename(value_col)
    else:
        out = per_subject.groupby(by, sort=False, dropna=False)["mean"].mean().rename(value_col)
    counts = per_subject.groupby(by, sort=False, dropna=False).agg(
        n_subjects=("mean", "size"), n_slices=("size", "sum"))
    return out.to_frame().join(counts).reset_index()[cols]


def tissue_dice(labels: pd.DataFrame, keys: Sequence[str], value_col: str = "dice") -> pd.DataFrame:
    """Tissue-class Dice: the unweighted mean of the label values of each class, per ``keys``.

    ``labels`` is :func:`label_dice`'s output (one row per label). Returns ``keys``,
    ``tissue_class``, ``value_col`` and ``n_labels``.
    """
    keys = list(keys)
    _require(labels, [*keys, "tissue_class", value_col], "tissue_dice")
    if labels.empty:
        return pd.DataFrame(columns=[*keys, "tissue_class", value_col, "n_labels"])
    v = pd.to_numeric(labels[value_col], errors="coerce")
    return (labels.assign(_v=v).dropna(subset=["_v"])
            .groupby([*keys, "tissue_class"], sort=False, dropna=False)
            .agg(**{value_col: ("_v", "mean"), "n_labels": ("_v", "size")}).reset_index())


def mean_tissue_dice(labels: pd.DataFrame, keys: Sequence[str], value_col: str = "dice") -> pd.DataFrame:
    """The study's dataset Dice ("Mean Tissue"): the unweighted mean of the tissue-class means.

    ``labels`` is :func:`label_dice`'s output; ``keys`` must not include the label or tissue.
    Returns ``keys``, ``value_col``, ``n_tissues`` and ``n_labels``.
    """
    keys = list(keys)
    tissues = tissue_dice(labels, keys, value_col)
    if tissues.empty:
        return pd.DataFrame(columns=[*keys, value_col, "n_tissues", "n_labels"])
    return (tissues.groupby(keys, sort=False, dropna=False)
            .agg(**{value_col: (value_col, "mean"), "n_tissues": ("tissue_class", "size"),
                    "n_labels": ("n_labels", "sum")}).reset_index())


def dataset_mean_tissue(slice_labels: pd.DataFrame, keys: Sequence[str],
                        level: LabelLevel = DEFAULT_LABEL_LEVEL, value_col: str = "dice") -> pd.DataFrame:
    """:func:`label_dice` then :func:`mean_tissue_dice`: one Mean Tissue value per ``keys``."""
    return mean_tissue_dice(label_dice(slice_labels, keys, level, value_col), keys, value_col)


def other_level(level: LabelLevel) -> LabelLevel:
    """The variant reading of :func:`label_dice`'s ``level``."""
    _check_level(level)
    return "per_subject" if level == "pooled_slices" else "pooled_slices"


# ------------------------------------------------------------------------- subject level
def slice_table(slice_labels: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, condition, slice): mean Dice/IoU over the slice's labels."""
    keys = ["model_key", "model", "condition", "dataset", "subject_id", "slice_index"]
    return (slice_labels.groupby(keys, sort=False)
            .agg(dice=("dice", "mean"), iou=("iou", "mean"), n_labels=("label_value", "size"))
            .reset_index())


def subject_table(slice_labels: pd.DataFrame, volume_labels: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, condition, subject): mean slice Dice / IoU and mean 3D label Dice.

    ``dice_mean_slice`` (the block value of the statistics) is the mean over the subject's slices
    of each slice's label mean. ``dice_mean_label`` is the other reading of the study's "subject
    mean Dice": its code's per-volume export holds each label's mean over the subject's slices,
    and their mean over labels weighs every label once however many slices it spans.
    """
    keys = ["model_key", "model", "condition", "dataset", "subject_id"]
    per_slice = slice_table(slice_labels)
    subj = (per_slice.groupby(keys, sort=False)
            .agg(dice_mean_slice=("dice", "mean"), iou_mean_slice=("iou", "mean"), n_slices=("slice_index", "size"))
            .reset_index())
    per_label = slice_labels.groupby(keys + ["label_value"], sort=False)["dice"].mean().reset_index()
    label_mean = per_label.groupby(keys, sort=False).agg(dice_mean_label=("dice", "mean")).reset_index()
    subj = subj.merge(label_mean, on=keys, how="left")
    vol = volume_labels.groupby(keys, sort=False).agg(dice_3d=("dice_3d", "mean")).reset_index()
    if "hd95_mm" in slice_labels:
        hd = slice_labels.groupby(keys, sort=False).agg(hd95_mm_median=("hd95_mm", "median")).reset_index()
        subj = subj.merge(hd, on=keys, how="left")
    return add_arm(subj.merge(vol, on=keys, how="left"))


# -------------------------------------------------------------------------- dataset level
def dataset_table(subjects: pd.DataFrame, slice_labels: pd.DataFrame,
                  level: LabelLevel = DEFAULT_LABEL_LEVEL) -> pd.DataFrame:
    """One row per (model, condition, dataset): the study's dataset Dice and the subject summary.

    Parameters
    ----------
    subjects : :func:`subject_table`'s output (one row per arm and subject).
    slice_labels : the (slice, label) scores the subjects were built from.
    level : reading of a label's Dice used for ``dice_mean_tissue`` (see :func:`label_dice`).

    Returns
    -------
    DataFrame with model_key, model, condition, arm, dataset, n_subjects,
    ``dice_mean_tissue`` (the study's dataset Dice, reading ``level``),
    ``dice_mean_tissue_<other level>`` (the variant reading), ``iou_mean_tissue``,
    ``subject_dice_mean`` / ``subject_dice_sd`` / ``subject_dice_median`` (slice-mean subject
    Dice over subjects, figure 3's quantity) and ``dice_3d_mean``.
    """
    keys = ["model_key", "model", "condition", "dataset"]
    variant = other_level(level)
    subj = (subjects.groupby(RUN_KEYS, sort=False)
            .agg(n_subjects=("subject_id", "nunique"), subject_dice_mean=("dice_mean_slice", "mean"),
                 subject_dice_sd=("dice_mean_slice", "std"), subject_dice_median=("dice_mean_slice", "median"),
                 dice_3d_mean=("dice_3d", "mean"))
            .reset_index())
    study = dataset_mean_tissue(slice_labels, keys, level).rename(columns={"dice": "dice_mean_tissue"})
    alt = dataset_mean_tissue(slice_labels, keys, variant).rename(columns={"dice": f"dice_mean_tissue_{variant}"})
    iou = dataset_mean_tissue(slice_labels, keys, level, "iou").rename(columns={"iou": "iou_mean_tissue"})
    out = (subj.merge(study[[*keys, "dice_mean_tissue", "n_tissues", "n_labels"]], on=keys, how="left")
           .merge(alt[[*keys, f"dice_mean_tissue_{variant}"]], on=keys, how="left")
           .merge(iou[[*keys, "iou_mean_tissue"]], on=keys, how="left"))
    cols = [*RUN_KEYS, "n_subjects", "n_tissues", "n_labels", "dice_mean_tissue", f"dice_mean_tissue_{variant}",
            "iou_mean_tissue", "subject_dice_mean", "subject_dice_sd", "subject_dice_median", "dice_3d_mean"]
    return out[cols]


def grouped_table(slice_labels: pd.DataFrame, by: Literal["label_name", "tissue_class"],
                  level: LabelLevel = DEFAULT_LABEL_LEVEL) -> pd.DataFrame:
    """Per (model, condition, dataset, ``by``): the label or tissue-class Dice of the study.

    ``by="label_name"``: the label's Dice (:func:`label_dice`, reading ``level``);
    ``by="tissue_class"``: the unweighted mean of the class's label values. Columns:
    model_key, model, condition, dataset, ``by``, n_subjects, ``dice_mean`` (reading
    ``level``), ``dice_mean_<other level>`` (variant), ``dice_sd_subjects`` (SD over subjects
    of the subject-level value: the label's mean over the subject's slices, or for a tissue the
    mean of those over its labels), ``iou_mean``, and ``arm``.
    """
    if by not in ("label_name", "tissue_class"):
        raise ValueError(f"by must be 'label_name' or 'tissue_class', got {by!r}")
    keys = ["model_key", "model", "condition", "dataset"]
    variant = other_level(level)
    parts = {}
    for name, lvl, col in (("dice_mean", level, "dice"), (f"dice_mean_{variant}", variant, "dice"),
                           ("iou_mean", level, "iou")):
        labels = label_dice(slice_labels, keys, lvl, col)
        t = labels if by == "label_name" else tissue_dice(labels, keys, col)
        parts[name] = t.rename(columns={col: name})
    # subject-level values for the SD over subjects
    subject_keys = [*keys, "subject_id"]
    per_subject = label_dice(slice_labels, subject_keys, "pooled_slices", "dice")
    if by == "tissue_class":
        per_subject = tissue_dice(per_subject, subject_keys, "dice")
    sd = (per_subject.groupby([*keys, by], sort=False, dropna=False)
          .agg(n_subjects=("subject_id", "nunique"), dice_sd_subjects=("dice", "std")).reset_index())
    first = parts["dice_mean"]
    extra = [c for c in ("label_value", "tissue_class") if by == "label_name" and c in first]
    merge_on = [*keys, by, *extra]
    out = first[[*merge_on, "dice_mean"]]
    for name in (f"dice_mean_{variant}", "iou_mean"):
        out = out.merge(parts[name][[*merge_on, name]], on=merge_on, how="left")
    out = out.merge(sd, on=[*keys, by], how="left")
    cols = [*keys, by, *extra, "n_subjects", "dice_mean", f"dice_mean_{variant}", "dice_sd_subjects", "iou_mean"]
    return add_arm(out[cols])
