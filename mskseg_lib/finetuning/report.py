"""Tables of the finetuning study: Table 1 (tiers 1-3), S6-S9 and the class-level tables
S10-S33, plus the result selection figure 4 shares.

Everything works on the engine's result tables (pandas DataFrames):

* ``experiments``: one row per experiment (id, ablation ``groups``, initial ``model_key``,
  strategy, box shift, training data, status, ...);
* ``subjects``: one row per (experiment_id, condition, dataset, subject) with its
  ``dice_mean_slice``; the zero-shot baseline of initial model ``m`` on the same evaluation
  slices has ``experiment_id == "zero_shot:<m>"``;
* ``slices``: one row per (experiment_id, condition, dataset, subject, slice, label) with
  ``dice``, ``iou``, ``label_value``, ``label_name``, ``tissue_class``.

**Dice as the study reports it.** Table 1 and S8-S33 report the study's quantities computed by
:mod:`mskseg_lib.evaluation.aggregate`: a label's Dice (averaged over the test slices of the
dataset, ``pooled_slices``; the ``per_subject`` reading as a variant column), a tissue class's
Dice (the unweighted mean of its labels) and the dataset's "Mean Tissue" (the unweighted mean
of its tissue classes). Every value is per dataset, never pooled across datasets. The
slice-mean subject Dice (``dice_mean_slice``) is kept as a secondary summary (mean ± SD over
subjects) and is what the paired Wilcoxon tests compare, a subject being a block.

**Table 1's "Fine-tuned" arm** is, per initial model, the study's mskSAM: an experiment of
group ``initial_weights`` trained on ``all_msk`` (undersampled knee CUBE held out) with the
image encoder and mask decoder trained (``strategy: full``), no box shift and every training
subject. When a model has no such finished experiment, the closest finished experiment of the
group stands in and ``finetuned_arm`` says which requirement it misses; a model with none keeps
one row carrying its status ("not run: checkpoint missing", "pending", ...).

Published values (:mod:`mskseg_lib.reference`) sit beside regenerated ones in ``published_*``
columns, with the published inconsistencies in ``published_note``.

Statistical tests live in :mod:`mskseg_lib.stats` (a later stage): Table 1's paired Wilcoxon and
its Benjamini-Hochberg correction are passed in (``table1_datasets(..., paired_test=...,
p_adjust=...)``; :func:`mskseg_lib.stats.finetune_tests.table1_datasets` passes the study's).
Figure 4's subject summaries are :mod:`mskseg_lib.finetuning.figure4`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from mskseg_lib.data.catalog import DATASETS, TISSUE_CLASSES, anatomy_of, datasets_in_order, get_dataset, short_dataset_name
from mskseg_lib.evaluation.aggregate import (
    DEFAULT_LABEL_LEVEL,
    LabelLevel,
    label_dice,
    mean_tissue_dice,
    other_level,
    tissue_dice,
)
from mskseg_lib.evaluation.report import mean_sd_text
from mskseg_lib.reference import (
    MEAN_TISSUE,
    STUDY_MODELS,
    published_table1,
    published_table1_labels,
    published_table1_tissues,
    published_values,
)

__all__ = [
    "CONDITION", "ZERO_SHOT_PREFIX", "FINISHED", "MEAN_TISSUE", "zero_shot_id", "split_list", "in_group",
    "trained_on", "order_datasets", "scores", "group_scores", "zero_shot_scores", "summarise",
    "mean_sd_text", "PairedTest", "PAdjust", "table1_arm", "table1_datasets", "table1_tissues", "table1_labels",
    "table_s6", "table_s7", "table_s8", "table_s9", "class_level_numbers", "class_level_table",
    "TIER3_DATASETS",
]

CONDITION = "gt_box"
#: ``(finetuned, zero_shot) -> (statistic, p, note)``: a paired test of subject scores
PairedTest = Callable[[Sequence[float], Sequence[float]], tuple[float, float, str]]
#: p-values (NaN: not run) -> adjusted p-values, same order
PAdjust = Callable[[Sequence[float]], Sequence[float]]
ZERO_SHOT_PREFIX = "zero_shot:"
FINISHED = "finished"
INITIAL_WEIGHTS = "initial_weights"
ALL_MSK = "all_msk"
DICE_DIGITS = 4  # Dice, SD and differences: 4 decimals
P_DIGITS = 4  # p-values: 4 significant digits (decimals would turn 1e-5 into 0)
NO_EXPERIMENT = "not run: no initial_weights experiment"
SHIFT_COLUMNS = ("box_shift_grid_px", "box_shift_px")  # the grid's name, then the older one
# Table 1, tier 3: the study's label-level datasets
TIER3_DATASETS = ("Knee_3D_DESS_Research_Anatomical_86", "Knee_3D_CUBE_Undersampled_Research_Anatomical_50",
                  "Thigh_2D_T1ax_Clinical_Anatomical_50")
# S10-S33: the study gives 24 numbers for class-level tables; the project's mapping is one table
# per dataset in catalog order, Dice for S10-S21 and IoU for S22-S33
CLASS_LEVEL_FIRST = 10
CLASS_LEVEL_METRICS = ("dice", "iou")

SUMMARY_COLUMNS = ["n_subjects", "mean", "sd"]
VALUE_COLUMNS = ["n_zero_shot", "zero_shot_dice", "n_finetuned", "finetuned_dice", "difference"]
EXPERIMENT_COLUMNS = ["experiment_id", "model_key", "model", "groups"]
S6_COLUMNS = ["experiment_id", "groups", "model", "strategy", "encoder", "box_shift_grid_px",
              "train_subjects", "task", "mix_kind", "train_datasets", "eval_datasets",
              "n_train_subjects_max", "n_train_samples", "status", "epochs_run", "best_epoch",
              "stop_reason", "minutes"]


# ------------------------------------------------------------------------ selection helpers
def zero_shot_id(model_key: str) -> str:
    """Experiment id of the zero-shot baseline of an initial model: ``"zero_shot:<key>"``."""
    return f"{ZERO_SHOT_PREFIX}{model_key}"


def split_list(value: Any) -> list[str]:
    """A comma-separated cell (or a list/tuple) as a list of stripped, non-empty names."""
    if isinstance(value, (list, tuple, set, np.ndarray)):
        items = [str(v) for v in value]
    elif value is None or (isinstance(value, float) and np.isnan(value)):
        items = []
    else:
        items = str(value).split(",")
    return [s.strip() for s in items if s.strip()]


def in_group(experiments: pd.DataFrame, group: str) -> pd.DataFrame:
    """Experiments whose ``groups`` list ``group`` (an experiment may be in several groups).

    A table without a ``groups`` column (e.g. an empty ``pd.DataFrame()``) gives no rows.
    """
    if experiments.empty or "groups" not in experiments:
        return experiments.iloc[0:0]
    mask = experiments["groups"].map(lambda g: group in split_list(g)).astype(bool)
    return experiments[mask]


def finished(experiments: pd.DataFrame) -> pd.DataFrame:
    """Experiments with status ``finished`` (all of them when there is no status column)."""
    if "status" not in experiments:
        return experiments
    return experiments[experiments["status"].astype(str) == FINISHED]


def trained_on(experiment: Mapping[str, Any], dataset: str) -> bool:
    """Whether an experiment's training data include ``dataset``.

    The ablation panels compare in-domain results only; the engine also scores some
    experiments on data they never saw (the held-out undersampled knee CUBE of all-MSK), and
    those must not be pooled with in-domain runs. Without ``train_datasets`` the ``task``
    decides (a single-dataset task is its dataset).
    """
    names = split_list(experiment.get("train_datasets"))
    return dataset in names if names else str(experiment.get("task", "")) == dataset


def order_datasets(datasets: Iterable[str]) -> list[str]:
    """Distinct dataset names grouped by anatomy (knee, hip, spine, thigh, shoulder), then in
    order of first appearance: the order every figure of the project uses."""
    return datasets_in_order(datasets)


# ------------------------------------------------------------------------------ scores
def scores(table: pd.DataFrame, experiment_ids: Iterable[str], condition: str = CONDITION,
           value_col: str = "dice_mean_slice") -> pd.DataFrame:
    """Rows of ``subjects`` or ``slices`` for the given experiments under one condition, with
    the score in a column named ``value`` (coerced to float; the other columns are kept)."""
    ids = {str(i) for i in experiment_ids}
    needed = {"experiment_id", "condition", "dataset", "subject_id", value_col}
    if table.empty or not ids or not needed <= set(table.columns):
        return pd.DataFrame(columns=["experiment_id", "dataset", "subject_id", "value"])
    sel = table["experiment_id"].astype(str).isin(ids) & (table["condition"].astype(str) == condition)
    out = table[sel]
    return out.assign(value=pd.to_numeric(out[value_col], errors="coerce").astype(float))


def group_scores(subjects: pd.DataFrame, experiments: pd.DataFrame, group: str,
                 condition: str = CONDITION, value_col: str = "dice_mean_slice",
                 in_domain: bool = True) -> pd.DataFrame:
    """Subject scores of the finished experiments of ``group``, joined with their definitions.

    One row per (experiment, dataset, subject) with ``value`` and every column of
    ``experiments``. With ``in_domain`` only datasets the experiment was trained on are kept
    (see :func:`trained_on`).
    """
    exps = finished(in_group(experiments, group))
    s = scores(subjects, exps.get("experiment_id", []), condition, value_col)
    s = s[["experiment_id", "dataset", "subject_id", "value"]]
    if s.empty:
        return s.reindex(columns=[*s.columns, *(c for c in exps.columns if c != "experiment_id")])
    merged = s.merge(exps.drop_duplicates("experiment_id"), on="experiment_id", how="inner")
    if in_domain:
        merged = merged[[trained_on(r, d) for r, d in zip(merged.to_dict("records"), merged["dataset"])]]
    return merged.reset_index(drop=True)


def zero_shot_scores(subjects: pd.DataFrame, model_keys: Iterable[str], condition: str = CONDITION,
                     value_col: str = "dice_mean_slice") -> pd.DataFrame:
    """Zero-shot subject scores of the given initial models: columns model_key, dataset,
    subject_id, value (and the rest of ``subjects``)."""
    keys = list(dict.fromkeys(str(k) for k in model_keys))
    s = scores(subjects, [zero_shot_id(k) for k in keys], condition, value_col)
    return s.assign(model_key=s["experiment_id"].astype(str).str[len(ZERO_SHOT_PREFIX):])


def summarise(scores_df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean, SD (ddof=1) and count over subjects of ``value`` per ``keys``.

    Rows are first averaged per subject (``dataset``, ``subject_id``) within ``keys``: a
    subject's slices, labels or repeated runs count once. Subjects without a finite value
    are left out. Columns: ``keys``, n_subjects, mean, sd (NaN with one subject).
    """
    keys = list(keys)
    subject_keys = list(dict.fromkeys([*keys, "dataset", "subject_id"]))
    if scores_df.empty:
        return pd.DataFrame(columns=[*keys, *SUMMARY_COLUMNS])
    per_subject = (scores_df.groupby(subject_keys, sort=False, dropna=False)["value"].mean()
                   .dropna().reset_index())
    if per_subject.empty:
        return pd.DataFrame(columns=[*keys, *SUMMARY_COLUMNS])
    if not keys:
        v = per_subject["value"]
        return pd.DataFrame([{"n_subjects": int(v.size), "mean": v.mean(), "sd": v.std(ddof=1)}])
    return (per_subject.groupby(keys, sort=False, dropna=False)
            .agg(n_subjects=("value", "size"), mean=("value", "mean"), sd=("value", "std"))
            .reset_index())


def _round_p(p: Any) -> float:
    p = float(p)
    return float(f"{p:.{P_DIGITS}g}") if np.isfinite(p) else np.nan


def _round_dice(df: pd.DataFrame) -> pd.DataFrame:
    """Dice-valued columns (``*_dice*``, ``*_mean``, ``*_sd``, ``difference``) to 4 decimals."""
    cols = [c for c in df.columns if ("_dice" in c or c.endswith(("_mean", "_sd")) or c == "difference")
            and not c.startswith("published")]
    return df.astype({c: float for c in cols}).round({c: DICE_DIGITS for c in cols})



# ------------------------------------------------------------- the study's Dice per arm
UNIT_KEYS: dict[str, list[str]] = {"dataset": ["dataset"], "tissue": ["dataset", "tissue_class"],
                                   "label": ["dataset", "label_value", "label_name", "tissue_class"]}


def shift_of(experiment: Mapping[str, Any]) -> float:
    """An experiment's box shift (``box_shift_grid_px``, or the older ``box_shift_px``)."""
    for col in SHIFT_COLUMNS:
        v = experiment.get(col)
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if np.isfinite(v):
            return v
    return np.nan


def _study_values(sl: pd.DataFrame, unit: str, level: LabelLevel, value_col: str,
                  with_mean: bool) -> pd.DataFrame:
    """One arm's study Dice per dataset ("Mean Tissue"), per (dataset, tissue) or per
    (dataset, label); ``with_mean`` appends each dataset's Mean Tissue as a row of the unit
    (``tissue_class`` / ``label_name`` = ``mean_tissue``)."""
    keys = UNIT_KEYS[unit]
    if sl.empty:
        return pd.DataFrame(columns=[*keys, value_col])
    labels = label_dice(sl, ["dataset"], level, value_col)
    mean = mean_tissue_dice(labels, ["dataset"], value_col)[["dataset", value_col]]
    if unit == "dataset":
        return mean
    if unit == "tissue":
        out = tissue_dice(labels, ["dataset"], value_col)[[*keys, value_col]]
        mean = mean.assign(tissue_class=MEAN_TISSUE)
    else:
        out = labels[[*keys, value_col]]
        mean = mean.assign(label_value=np.nan, label_name=MEAN_TISSUE, tissue_class="")
    return pd.concat([out, mean[[*keys, value_col]]], ignore_index=True) if with_mean else out


def _n_subjects(sl: pd.DataFrame) -> pd.Series:
    """Subjects with a finite score, per dataset."""
    ok = sl[pd.to_numeric(sl["value"], errors="coerce").notna()] if len(sl) else sl
    if ok.empty:
        return pd.Series(dtype=int)
    return ok[["dataset", "subject_id"]].drop_duplicates().groupby("dataset").size()


def _compare(slices: pd.DataFrame, finetuned_ids: Sequence[str], model_key: str, unit: str,
             condition: str, level: LabelLevel, value_col: str = "dice", with_mean: bool = True) -> pd.DataFrame:
    """Zero-shot vs finetuned study Dice of one initial model, per ``unit`` (see
    :func:`_study_values`), in both readings of a label's Dice.

    The zero-shot arm is restricted to the datasets the finetuned arm was scored on, so both
    arms describe the same data. Columns: the unit's keys, n_zero_shot, zero_shot_dice,
    n_finetuned, finetuned_dice, difference, zero_shot_dice_<variant>, finetuned_dice_<variant>
    (``_dice`` reads ``_iou`` for ``value_col="iou"``).
    """
    variant = other_level(level)
    keys = UNIT_KEYS[unit]
    v = "dice" if value_col == "dice" else value_col
    cols = [*keys, "n_zero_shot", f"zero_shot_{v}", "n_finetuned", f"finetuned_{v}", "difference",
            f"zero_shot_{v}_{variant}", f"finetuned_{v}_{variant}"]
    ft = scores(slices, finetuned_ids, condition, value_col)
    zs = scores(slices, [zero_shot_id(model_key)], condition, value_col)
    zs = zs[zs["dataset"].isin(set(ft["dataset"]))]
    if ft.empty:
        return pd.DataFrame(columns=cols)
    out = None
    for arm, sl in (("finetuned", ft), ("zero_shot", zs)):
        a = _study_values(sl, unit, level, value_col, with_mean).rename(columns={value_col: f"{arm}_{v}"})
        b = _study_values(sl, unit, variant, value_col, with_mean).rename(columns={value_col: f"{arm}_{v}_{variant}"})
        a = a.merge(b, on=keys, how="outer", sort=False)
        a[f"n_{arm}"] = a["dataset"].map(_n_subjects(sl)).fillna(0).astype(int)
        out = a if out is None else out.merge(a, on=keys, how="left", sort=False)
    out["n_zero_shot"] = out["n_zero_shot"].fillna(0).astype(int)
    out["difference"] = out[f"finetuned_{v}"].astype(float) - out[f"zero_shot_{v}"].astype(float)
    return out[cols]


def _published_columns(df: pd.DataFrame, published: pd.DataFrame, keys: Sequence[str],
                       finetuned_models: Sequence[str]) -> pd.DataFrame:
    """Add ``published_zero_shot · <model>`` for the study's three models and
    ``published_finetuned · <model>`` for ``finetuned_models`` (zoo keys), looked up by
    ``keys`` in a long published table (model_key, setting, dice)."""
    for setting, models in (("zero-shot", list(STUDY_MODELS)), ("finetuned", list(finetuned_models))):
        for key in models:
            df[f"published_{setting.replace('-', '_')} · {STUDY_MODELS[key]}"] = published_values(
                published, df, list(keys), key, setting)
    return df


def _key_index(df: pd.DataFrame, keys: Sequence[str]) -> pd.Index:
    """The rows' ``keys`` as an index to look published values up with (one key: a flat index)."""
    keys = list(keys)
    return pd.Index(df[keys[0]].astype(object)) if len(keys) == 1 else pd.MultiIndex.from_frame(df[keys].astype(object))


def _published_note(df: pd.DataFrame, published: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """The published table's note for each row's keys ("" when none; "not in the study" for a
    dataset the study does not report at this tier)."""
    keys = list(keys)
    if df.empty:
        return pd.Series([], dtype=object)
    notes = published.assign(note=published.get("note", "")).drop_duplicates(keys).set_index(keys)["note"]
    idx = _key_index(df, keys)
    out = notes.reindex(idx).to_numpy(dtype=object)
    known = set(published["dataset"])
    return pd.Series([("" if n != n else n) if d in known else "dataset not in this tier of the study"
                      for n, d in zip(out, df["dataset"])], index=df.index, dtype=object)


# ------------------------------------------------------------------------ Table 1's arm
class Table1Arm:
    """The experiments standing for a model's Table 1 "Fine-tuned" arm and why.

    ``experiment_ids`` (finished runs of one setting; empty when none), ``status``
    (``finished`` or why there is none) and ``description`` ("study arm: ..." or
    "fallback: ..." naming each requirement the experiment misses).
    """

    def __init__(self, experiment_ids: list[str], status: str, description: str) -> None:
        self.experiment_ids, self.status, self.description = experiment_ids, status, description

    def __repr__(self) -> str:
        return f"Table1Arm({self.experiment_ids!r}, {self.status!r}, {self.description!r})"


STUDY_ARM = "study arm: all_msk, encoder and decoder trained, no box shift, all training subjects"


def _unmet(exp: Mapping[str, Any]) -> list[str]:
    """The study-arm requirements an experiment misses, most important first."""
    out = []
    if ALL_MSK not in (str(exp.get("mix_kind", "")), str(exp.get("task", ""))):
        out.append(f"trained on {exp.get('task', '?')}, not all_msk")
    if str(exp.get("strategy", "")) != "full":
        out.append(f"strategy {exp.get('strategy', '?')} (encoder frozen), not full")
    shift = shift_of(exp)
    if not (np.isfinite(shift) and shift == 0):
        out.append(f"box shift {shift:g}, not 0")
    if str(exp.get("train_subjects", "all")) != "all":
        out.append(f"{exp.get('train_subjects')} training subjects per dataset, not all")
    return out


def table1_arm(experiments: pd.DataFrame, model_key: str) -> Table1Arm:
    """Choose Table 1's finetuned arm of one initial model from the ``initial_weights`` group.

    The study's arm is mskSAM: trained on all_msk, encoder and decoder trained (``full``), no
    box shift, all training subjects. Among the model's finished experiments of the group the
    one meeting the most important requirements (in that order) is chosen, with its repeats;
    anything short of all four is labelled a fallback naming what it misses.
    """
    group = in_group(experiments, INITIAL_WEIGHTS)
    group = group[group["model_key"].astype(str) == str(model_key)] if not group.empty else group
    if group.empty:
        return Table1Arm([], NO_EXPERIMENT, "")
    done = finished(group)
    if done.empty:
        status = str(group["status"].iloc[0]) if "status" in group else NO_EXPERIMENT
        return Table1Arm([], status, "")
    records = done.to_dict("records")
    best = max(range(len(records)), key=lambda i: (_unmet_flags(records[i]), -i))
    setting = _setting(records[best])
    ids = [str(r["experiment_id"]) for r in records if _setting(r) == setting]
    unmet = _unmet(records[best])
    return Table1Arm(ids, FINISHED, STUDY_ARM if not unmet else "fallback: " + "; ".join(unmet))


def _unmet_flags(exp: Mapping[str, Any]) -> tuple[bool, bool, bool, bool]:
    """(all_msk, full, no shift, all subjects) as booleans: compared lexicographically."""
    shift = shift_of(exp)
    return (ALL_MSK in (str(exp.get("mix_kind", "")), str(exp.get("task", ""))),
            str(exp.get("strategy", "")) == "full", bool(np.isfinite(shift) and shift == 0),
            str(exp.get("train_subjects", "all")) == "all")


def _setting(exp: Mapping[str, Any]) -> tuple:
    """Training setting of an experiment without its repeat number."""
    return (str(exp.get("task")), str(exp.get("model_key")), str(exp.get("strategy")), shift_of(exp),
            str(exp.get("train_subjects")))


def _model_list(models: pd.DataFrame, experiments: pd.DataFrame) -> list[dict[str, str]]:
    """Models of ``models`` (in order), then any other initial model of ``initial_weights``."""
    rows = [{"model_key": str(r["model_key"]), "model": str(r.get("model", r["model_key"])),
             "status": str(r.get("status", ""))} for r in models.to_dict("records")]
    known = {r["model_key"] for r in rows}
    group = in_group(experiments, INITIAL_WEIGHTS)
    for key, g in (group.groupby("model_key", sort=False) if not group.empty else []):
        if str(key) not in known:
            rows.append({"model_key": str(key), "model": str(g["model"].iloc[0]) if "model" in g else str(key),
                         "status": ""})
    return rows


def _absent_status(model_status: str, arm: Table1Arm) -> Optional[str]:
    """Why a model has no finetuned results, or None when its arm has finished runs.

    A model status other than "finished"/"available" (e.g. "not run: checkpoint missing")
    wins; otherwise the arm's own status.
    """
    if model_status and model_status not in (FINISHED, "available"):
        return model_status
    return None if arm.experiment_ids else arm.status


# ---------------------------------------------------------------------- Table 1, tier 1
TIER1_COLUMNS = ["model_key", "model", "dataset", "anatomy", "in_training", "experiment_id", "finetuned_arm",
                 "status", "n_zero_shot", "zero_shot_dice", "n_finetuned", "finetuned_dice", "difference",
                 "zero_shot_subject_mean", "zero_shot_subject_sd", "finetuned_subject_mean",
                 "finetuned_subject_sd", "n_paired", "wilcoxon_w", "p_value", "p_bh", "note"]


def _paired(ft: pd.DataFrame, zs: pd.DataFrame) -> pd.DataFrame:
    """Subjects scored by both arms: columns ft, zs (subject means, finite in both)."""
    a = summarise(ft, ["dataset", "subject_id"])[["dataset", "subject_id", "mean"]]
    b = summarise(zs, ["dataset", "subject_id"])[["dataset", "subject_id", "mean"]]
    return (a.merge(b, on=["dataset", "subject_id"], suffixes=("_ft", "_zs"))
            .rename(columns={"mean_ft": "ft", "mean_zs": "zs"}).dropna(subset=["ft", "zs"]))


def _tier1_rows(subjects: pd.DataFrame, slices: pd.DataFrame, experiments: pd.DataFrame, arm: Table1Arm,
                model: Mapping[str, str], condition: str, level: LabelLevel,
                paired_test: Optional[PairedTest]) -> pd.DataFrame:
    """Tier-1 rows of one model with a finished arm: one per evaluated dataset (those listed in
    ``eval_datasets`` and those with results), in figure order."""
    ids = arm.experiment_ids
    done = experiments[experiments["experiment_id"].astype(str).isin(ids)]
    variant = other_level(level)
    cmp = _compare(slices, ids, model["model_key"], "dataset", condition, level).set_index("dataset")
    ft = scores(subjects, ids, condition, "dice_mean_slice")
    zs = scores(subjects, [zero_shot_id(model["model_key"])], condition, "dice_mean_slice")
    s_ft = summarise(ft, ["dataset"]).set_index("dataset")
    s_zs = summarise(zs[zs["dataset"].isin(set(ft["dataset"]))], ["dataset"]).set_index("dataset")
    listed = [d for v in done.get("eval_datasets", []) for d in split_list(v)]
    train = {d for v in done.get("train_datasets", []) for d in split_list(v)}
    rows = []
    for dataset in order_datasets([*listed, *ft["dataset"], *cmp.index]):
        pairs = _paired(ft[ft["dataset"] == dataset], zs[zs["dataset"] == dataset])
        w, p, note = paired_test(pairs["ft"], pairs["zs"]) if paired_test else (np.nan, np.nan, "")
        values: dict[str, Any] = {}
        if dataset in cmp.index:
            values = cmp.loc[dataset].to_dict()
        elif dataset in s_ft.index:
            note = "; ".join(n for n in (note, "no slice results, so no study Dice") if n)
        else:
            note = "no finetuned results for this dataset"
        for arm_name, s in (("zero_shot", s_zs), ("finetuned", s_ft)):
            if dataset in s.index:
                values[f"{arm_name}_subject_mean"] = s.at[dataset, "mean"]
                values[f"{arm_name}_subject_sd"] = s.at[dataset, "sd"]
        rows.append({**model, "dataset": dataset, "anatomy": anatomy_of(dataset),
                     "in_training": dataset in train, "experiment_id": ", ".join(ids),
                     "finetuned_arm": arm.description, "status": FINISHED, **values,
                     "n_paired": len(pairs), "wilcoxon_w": w, "p_value": p, "note": note})
    cols = [*TIER1_COLUMNS, f"zero_shot_dice_{variant}", f"finetuned_dice_{variant}"]
    return pd.DataFrame(rows).reindex(columns=cols)


def _tier1_text(df: pd.DataFrame) -> pd.DataFrame:
    """Display columns ``zero_shot`` / ``finetuned``: "0.812 (subjects 0.798 ± 0.034)"."""
    def text(dice: Any, mean: Any, sd: Any) -> str:
        if dice is None or not np.isfinite(float(dice)):
            return "n/a"
        return f"{float(dice):.3f} (subjects {mean_sd_text(mean, sd)})"
    return df.assign(
        zero_shot=[text(*r) for r in zip(df["zero_shot_dice"], df["zero_shot_subject_mean"], df["zero_shot_subject_sd"])],
        finetuned=[text(*r) for r in zip(df["finetuned_dice"], df["finetuned_subject_mean"], df["finetuned_subject_sd"])])


def table1_datasets(subjects: pd.DataFrame, slices: pd.DataFrame, experiments: pd.DataFrame,
                    models: pd.DataFrame, condition: str = CONDITION, level: LabelLevel = DEFAULT_LABEL_LEVEL,
                    published: Optional[pd.DataFrame] = None, paired_test: Optional[PairedTest] = None,
                    p_adjust: Optional[PAdjust] = None) -> pd.DataFrame:
    """Table 1, tier 1: per initial model and evaluated dataset, zero-shot vs finetuned Dice.

    Parameters
    ----------
    subjects, slices, experiments : the grid's result tables (module docstring).
    models : one row per initial model (model_key, model, status), e.g. the run's models table.
    condition : the prompt condition scored (exact boxes).
    level : reading of a label's Dice (``pooled_slices`` as the study, or ``per_subject``).
    published : :func:`mskseg_lib.reference.published_table1` (default: loaded).
    paired_test : the test of paired subject scores (finetuned vs zero-shot) per dataset;
        None leaves ``wilcoxon_w`` / ``p_value`` empty. The study's, a two-sided Wilcoxon
        signed-rank test, is :func:`mskseg_lib.stats.finetune_tests.paired_wilcoxon`.
    p_adjust : the correction across a model's datasets (``p_bh``); None leaves it empty. The
        study's is Benjamini-Hochberg (:func:`mskseg_lib.stats.comparisons.bh_correct`).
        :func:`mskseg_lib.stats.finetune_tests.table1_datasets` is this table with both.

    Returns
    -------
    One row per (model, dataset) with model_key, model, dataset, anatomy, in_training (False
    for the held-out undersampled CUBE), experiment_id and ``finetuned_arm`` (:func:`table1_arm`),
    status; ``zero_shot_dice`` / ``finetuned_dice`` (the study's dataset Dice, Mean Tissue) and
    their difference; n and mean ± SD over subjects of the slice-mean subject Dice
    (secondary); the paired two-sided Wilcoxon W and p over subjects scored by both arms and
    ``p_bh`` (BH across the model's datasets); note; the variant reading's Dice; the
    published zero-shot and finetuned Dice of SAM ViT-B, SAM2 hiera-b+ and MedSAM ViT-B;
    ``published_note``; "Dice (subjects mean ± SD)" display columns. A model without a
    finished arm keeps one row with its status and no numbers.
    """
    published = published_table1() if published is None else published
    variant = other_level(level)
    parts = []
    for model in _model_list(models, experiments):
        status = model.pop("status")
        arm = table1_arm(experiments, model["model_key"]) if not experiments.empty else Table1Arm([], NO_EXPERIMENT, "")
        absent = _absent_status(status, arm)
        if absent is not None:
            parts.append(pd.DataFrame([{**model, "status": absent, "finetuned_arm": arm.description}]))
            continue
        rows = _tier1_rows(subjects, slices, experiments, arm, model, condition, level, paired_test)
        rows["p_bh"] = p_adjust(rows["p_value"]) if len(rows) and p_adjust else np.nan
        parts.append(rows)
    cols = [*TIER1_COLUMNS, f"zero_shot_dice_{variant}", f"finetuned_dice_{variant}"]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    out = out.reindex(columns=cols)
    for c in ("n_zero_shot", "n_finetuned", "n_paired"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("Int64")
    for c in ("note", "finetuned_arm"):
        out[c] = out[c].fillna("")
    out = _round_dice(out)
    for c in ("p_value", "p_bh"):
        out[c] = out[c].map(_round_p)
    out = _published_columns(out, published, ["dataset"], list(STUDY_MODELS))
    out["published_note"] = _published_note(out, published, ["dataset"]).where(out["dataset"].notna(), "")
    return _tier1_text(out)


# ----------------------------------------------------------------- Table 1, tiers 2 and 3
def _multi_tissue(dataset: str, data: pd.DataFrame) -> bool:
    """Whether a dataset has labels of two or more tissue classes (the catalog's, else the data's)."""
    try:
        return len({lab.tissue_class for lab in get_dataset(dataset).labels}) > 1
    except KeyError:
        return data.loc[data["dataset"] == dataset, "tissue_class"].nunique() > 1


def _arms_for_table1(experiments: pd.DataFrame) -> list[tuple[str, str, Table1Arm]]:
    """(model_key, model, arm) of each initial model of ``initial_weights`` with a finished arm."""
    group = in_group(experiments, INITIAL_WEIGHTS)
    out = []
    for key, g in (group.groupby("model_key", sort=False) if not group.empty else []):
        arm = table1_arm(experiments, str(key))
        if arm.experiment_ids:
            out.append((str(key), str(g["model"].iloc[0]) if "model" in g else str(key), arm))
    return out


def _tier(slices: pd.DataFrame, experiments: pd.DataFrame, unit: str, datasets: Optional[Sequence[str]],
          condition: str, level: LabelLevel, published: pd.DataFrame, key: str) -> pd.DataFrame:
    variant = other_level(level)
    keys = UNIT_KEYS[unit]
    cols = ["model_key", "model", "finetuned_arm", *keys, "n_zero_shot", "zero_shot_dice", "n_finetuned",
            "finetuned_dice", "difference", f"zero_shot_dice_{variant}", f"finetuned_dice_{variant}"]
    parts = []
    for model_key, model, arm in _arms_for_table1(experiments):
        cmp = _compare(slices, arm.experiment_ids, model_key, unit, condition, level)
        if datasets is not None:
            cmp = cmp[cmp["dataset"].isin(set(datasets))]
        else:
            cmp = cmp[[_multi_tissue(d, slices) for d in cmp["dataset"]]]
        if len(cmp):
            parts.append(cmp.assign(model_key=model_key, model=model, finetuned_arm=arm.description))
    out = pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)
    out = _round_dice(out)
    out = _published_columns(out, published, ["dataset", key], ["sam2_hiera_base_plus"])
    out["published_note"] = _published_note(out, published, ["dataset", key])
    return out


def _sort_rows(df: pd.DataFrame, datasets: Optional[Sequence[str]], by: str) -> pd.DataFrame:
    """Datasets (given order, else figure order), then tissue/label order with the Mean Tissue
    row last, then model in experiment order."""
    if df.empty:
        return df.reset_index(drop=True)
    order = list(datasets) if datasets is not None else order_datasets(df["dataset"])
    d_rank = {d: i for i, d in enumerate(order)}
    if by == "tissue_class":
        seen = list(dict.fromkeys(t for t in df[by] if t != MEAN_TISSUE and t is not None and t == t))
        tissues = [t for t in TISSUE_CLASSES if t in seen] + [t for t in seen if t not in TISSUE_CLASSES]
        rank = {t: i for i, t in enumerate(tissues)}
        second = df[by].map(lambda t: rank.get(t, len(rank)))
    else:
        second = pd.to_numeric(df["label_value"], errors="coerce").fillna(np.inf)
    return (df.assign(_d=df["dataset"].map(d_rank), _s=second).sort_values(["_d", "_s"], kind="stable")
            .drop(columns=["_d", "_s"]).reset_index(drop=True))


def table1_tissues(slices: pd.DataFrame, experiments: pd.DataFrame, datasets: Optional[Sequence[str]] = None,
                   condition: str = CONDITION, level: LabelLevel = DEFAULT_LABEL_LEVEL,
                   published: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Table 1, tier 2: per dataset x tissue class (never pooled across datasets) and initial
    model, zero-shot vs finetuned Dice, each dataset's Mean Tissue as its last row.

    A tissue class's Dice is the unweighted mean of its labels' Dice (reading ``level``). By
    default only datasets with two or more tissue classes are listed, as in the study; pass
    ``datasets`` to choose. Published tier-2 values of SAM, SAM2, MedSAM (zero-shot) and
    mskSAM2 (SAM2 finetuned) sit beside, with the Spine_2D_T1sag_111 inconsistency in
    ``published_note``.
    """
    published = published_table1_tissues() if published is None else published
    out = _tier(slices, experiments, "tissue", datasets, condition, level, published, "tissue_class")
    return _sort_rows(out, datasets, "tissue_class")


def table1_labels(slices: pd.DataFrame, experiments: pd.DataFrame, datasets: Sequence[str] = TIER3_DATASETS,
                  condition: str = CONDITION, level: LabelLevel = DEFAULT_LABEL_LEVEL,
                  published: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Table 1, tier 3: per label of ``datasets`` (the study's: knee DESS, undersampled knee
    CUBE, thigh) and initial model, zero-shot vs finetuned label Dice, each dataset's Mean
    Tissue as its last row, the study's printed label values beside. Rows follow ``datasets``
    as given, then label value. A dataset no finetuned arm was scored on has no rows."""
    published = published_table1_labels() if published is None else published
    datasets = [str(d) for d in datasets]
    out = _tier(slices, experiments, "label", datasets, condition, level, published, "label_name")
    return _sort_rows(out, datasets, "label_name")


# ---------------------------------------------------------------------------- Table S6
def _short_list(value: Any) -> str:
    """Comma-separated dataset names shortened (``"Knee DESS 86, Thigh T1ax 50"``)."""
    return ", ".join(short_dataset_name(d) for d in split_list(value))


def table_s6(experiments: pd.DataFrame) -> pd.DataFrame:
    """Table S6: one row per experiment (in the engine's order) with its definition and run.

    Columns: experiment_id, groups (", "-separated), model, strategy, encoder,
    box_shift_grid_px (from ``box_shift_px`` in older tables), train_subjects, task, mix_kind,
    train_datasets / eval_datasets (short names), n_train_subjects_max, n_train_samples,
    status, epochs_run, best_epoch, stop_reason, minutes (training time, 1 d.p.). Counts are
    nullable integers (empty for pending runs).
    """
    if experiments.empty:
        return pd.DataFrame(columns=S6_COLUMNS)
    e = experiments.reindex(columns=sorted(set(experiments.columns) | set(S6_COLUMNS) | {"train_seconds"}))
    e["box_shift_grid_px"] = [shift_of(r) for r in experiments.to_dict("records")]
    out = pd.DataFrame({
        **{c: e[c] for c in S6_COLUMNS if c not in ("groups", "train_datasets", "eval_datasets", "minutes")},
        "groups": e["groups"].map(lambda g: ", ".join(split_list(g))),
        "train_datasets": e["train_datasets"].map(_short_list),
        "eval_datasets": e["eval_datasets"].map(_short_list),
        "minutes": (pd.to_numeric(e["train_seconds"], errors="coerce") / 60.0).round(1),
    })
    for c in ("box_shift_grid_px", "n_train_subjects_max", "n_train_samples", "epochs_run", "best_epoch"):
        out[c] = pd.to_numeric(out[c], errors="coerce").round().astype("Int64")
    out["train_subjects"] = out["train_subjects"].map(lambda v: "" if v != v else str(v))
    return out[S6_COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------------------- Table S7
# the study's training settings (Methods, "Training Hyperparameters and Regularization" and
# "Bounding Box Prompt Shift Augmentation"): profile key -> (what, study value)
STUDY_TRAINING: dict[str, tuple[str, Any]] = {
    "lr": ("learning rate (AdamW)", 1e-4),
    "weight_decay": ("AdamW weight decay", 0.01),
    "batch_size": ("batch size", 2),
    "grad_accum_steps": ("gradient accumulation steps", 4),
    "grad_clip_norm": ("gradient clipping, max norm", 1.0),
    "early_stopping": ("early stopping on validation loss", True),
    "patience": ("early stopping patience (epochs)", 10),
    "min_delta": ("early stopping minimum improvement", 1e-4),
    "mixed_precision": ("mixed precision (CUDA AMP)", True),
}
STUDY_FIXED: tuple[tuple[str, str, str], ...] = (
    ("optimizer", "AdamW", "AdamW"),
    ("scheduler", "CosineAnnealingWarmRestarts", "CosineAnnealingWarmRestarts"),
    ("loss", "Dice + BCE with logits", "Dice loss + BCEWithLogitsLoss"),
)
STUDY_DEFAULTS: dict[str, tuple[str, Any]] = {
    "strategy": ("finetuning strategy", "full (encoder + decoder) or partial (decoder only)"),
    "box_shift_grid_px": ("box shift augmentation", "0 or 20"),
    "box_shift_px": ("box shift augmentation", "0 or 20"),
    "train_subjects": ("training subjects per dataset", "5, 10, 20, 40 or all"),
    "model": ("initial weights", "SAM ViT-B (ablations); SAM, SAM2, MedSAM (initial weights)"),
}


def table_s7(training: Mapping[str, Any], defaults: Mapping[str, Any]) -> pd.DataFrame:
    """S7: the finetuning configuration, the profile's value beside the study's.

    ``training`` and ``defaults`` are the profile's ``finetune.training`` and
    ``finetune.defaults``. Columns: section, setting (profile key), meaning, value,
    study_value ("" where the study does not state one). Settings fixed in the engine
    (optimizer, scheduler, loss) are listed with section ``engine``.
    """
    rows = [{"section": "engine", "setting": s, "meaning": s, "value": v, "study_value": sv}
            for s, v, sv in STUDY_FIXED]
    for section, mapping, known in (("training", training, STUDY_TRAINING), ("defaults", defaults, STUDY_DEFAULTS)):
        for key, value in mapping.items():
            meaning, study = known.get(key, (key, ""))
            rows.append({"section": section, "setting": key, "meaning": meaning, "value": _text(value),
                         "study_value": _text(study)})
    return pd.DataFrame(rows, columns=["section", "setting", "meaning", "value", "study_value"])


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


# ---------------------------------------------------------------------------- Table S8
def table_s8(slices: pd.DataFrame, experiments: pd.DataFrame, condition: str = CONDITION,
             level: LabelLevel = DEFAULT_LABEL_LEVEL) -> pd.DataFrame:
    """S8: tissue-specific performance of every finished experiment.

    Per experiment, evaluated dataset and tissue class (each dataset's Mean Tissue last): the
    experiment's study Dice next to the zero-shot of its initial model on the same datasets,
    their difference and the variant reading. Columns: experiment_id, model_key, model,
    groups, strategy, box_shift_grid_px, train_subjects, task, dataset, in_training,
    tissue_class, then the value columns of Table 1. Experiments without slice results have
    no rows.
    """
    variant = other_level(level)
    meta = ["experiment_id", "model_key", "model", "groups", "strategy", "box_shift_grid_px", "train_subjects", "task"]
    cols = [*meta, "dataset", "in_training", "tissue_class", "n_zero_shot", "zero_shot_dice", "n_finetuned",
            "finetuned_dice", "difference", f"zero_shot_dice_{variant}", f"finetuned_dice_{variant}"]
    parts = []
    for exp in finished(experiments).to_dict("records") if not experiments.empty else []:
        cmp = _compare(slices, [str(exp["experiment_id"])], str(exp["model_key"]), "tissue", condition, level)
        if cmp.empty or cmp["n_finetuned"].sum() == 0:
            continue
        cmp = _sort_rows(cmp, None, "tissue_class")
        info = {c: exp.get(c, "") for c in meta}
        info["box_shift_grid_px"] = shift_of(exp)
        parts.append(cmp.assign(**info, in_training=[trained_on(exp, d) for d in cmp["dataset"]]))
    if not parts:
        return pd.DataFrame(columns=cols)
    return _round_dice(pd.concat(parts, ignore_index=True)[cols])


# ---------------------------------------------------------------------------- Table S9
def table_s9(subjects: pd.DataFrame, slices: pd.DataFrame, experiments: pd.DataFrame,
             condition: str = CONDITION, level: LabelLevel = DEFAULT_LABEL_LEVEL) -> pd.DataFrame:
    """S9: initial weights x finetuning strategy in the mskSAM configuration.

    Every finished setting of group ``initial_weights`` (both strategies; repeats pooled), per
    evaluated dataset: the study's dataset Dice zero-shot vs finetuned, difference, the
    subject mean ± SD of the slice-mean subject Dice, and whether the setting is Table 1's
    arm of its model. Rows: model, then strategy (full first), then dataset in figure order.
    """
    variant = other_level(level)
    cols = ["model_key", "model", "strategy", "encoder", "box_shift_grid_px", "train_subjects", "task",
            "is_table1_arm", "experiment_id", "dataset", "in_training", "n_zero_shot", "zero_shot_dice",
            "n_finetuned", "finetuned_dice", "difference", f"zero_shot_dice_{variant}",
            f"finetuned_dice_{variant}", "finetuned_subject_mean", "finetuned_subject_sd"]
    done = finished(in_group(experiments, INITIAL_WEIGHTS))
    if done.empty:
        return pd.DataFrame(columns=cols)
    settings: dict[tuple, list[dict]] = {}
    for r in done.to_dict("records"):
        settings.setdefault(_setting(r), []).append(r)
    arms = {k: set(table1_arm(experiments, k).experiment_ids) for k in done["model_key"].astype(str).unique()}
    parts = []
    for runs in settings.values():
        first, ids = runs[0], [str(r["experiment_id"]) for r in runs]
        cmp = _compare(slices, ids, str(first["model_key"]), "dataset", condition, level)
        if cmp.empty:
            continue
        s = summarise(scores(subjects, ids, condition, "dice_mean_slice"), ["dataset"]).set_index("dataset")
        cmp["finetuned_subject_mean"] = cmp["dataset"].map(s["mean"]) if len(s) else np.nan
        cmp["finetuned_subject_sd"] = cmp["dataset"].map(s["sd"]) if len(s) else np.nan
        parts.append(cmp.assign(
            model_key=str(first["model_key"]), model=first.get("model", first["model_key"]),
            strategy=first.get("strategy", ""), encoder=first.get("encoder", ""),
            box_shift_grid_px=shift_of(first), train_subjects=first.get("train_subjects", ""),
            task=first.get("task", ""), is_table1_arm=set(ids) <= arms.get(str(first["model_key"]), set()),
            experiment_id=", ".join(ids), in_training=[trained_on(first, d) for d in cmp["dataset"]]))
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    d_rank = {d: i for i, d in enumerate(order_datasets(out["dataset"]))}
    m_rank = {m: i for i, m in enumerate(dict.fromkeys(done["model_key"].astype(str)))}
    out = out.assign(_m=out["model_key"].map(m_rank), _s=(out["strategy"] != "full").astype(int),
                     _d=out["dataset"].map(d_rank))
    out = out.sort_values(["_m", "_s", "_d"], kind="stable").reset_index(drop=True)
    return _round_dice(out[cols])


# -------------------------------------------------------------- Tables S10-S33: class level
def class_level_numbers(datasets: Sequence[str] = tuple(DATASETS)) -> pd.DataFrame:
    """The project's mapping of the study's class-level tables S10-S33 (24 numbers).

    The study names the range only ("class-level performance metrics for each segmentation
    task and experiment"). Here: one table per dataset in catalog order (12 datasets), the
    label-level Dice of every experiment scored on it in S10-S21 and the same for IoU in
    S22-S33 (the study's evaluation records both per label). Columns: number, table (e.g.
    ``S10``), dataset, metric.
    """
    rows = []
    for j, metric in enumerate(CLASS_LEVEL_METRICS):
        for i, dataset in enumerate(datasets):
            n = CLASS_LEVEL_FIRST + j * len(datasets) + i
            rows.append({"number": n, "table": f"S{n}", "dataset": dataset, "metric": metric})
    return pd.DataFrame(rows)


def class_level_table(slices: pd.DataFrame, experiments: pd.DataFrame, dataset: str, metric: str = "dice",
                      condition: str = CONDITION, level: LabelLevel = DEFAULT_LABEL_LEVEL) -> pd.DataFrame:
    """One class-level table: every finished experiment scored on ``dataset`` and the zero-shot
    baselines of their initial models, one row each, one column per label (the label's
    ``metric``, reading ``level``, in catalog label order) and ``mean_tissue`` last.

    Columns: setting (zero-shot / finetuned), experiment_id, model, groups, strategy,
    box_shift_grid_px, train_subjects, task, n_subjects, the labels, mean_tissue, note. A
    dataset no experiment was scored on gets one row whose note says so.
    """
    if metric not in CLASS_LEVEL_METRICS:
        raise ValueError(f"metric must be one of {CLASS_LEVEL_METRICS}, got {metric!r}")
    meta = ["setting", "experiment_id", "model", "groups", "strategy", "box_shift_grid_px", "train_subjects",
            "task", "n_subjects"]
    try:
        names = [lab.name for lab in get_dataset(dataset).labels]
    except KeyError:
        names = []
    exps = finished(experiments) if not experiments.empty else experiments
    sl = scores(slices, [str(e) for e in exps.get("experiment_id", [])] +
                [zero_shot_id(k) for k in dict.fromkeys(exps.get("model_key", []))], condition, metric)
    sl = sl[sl["dataset"] == dataset] if len(sl) else sl
    if sl.empty:
        return pd.DataFrame([{"setting": "", "experiment_id": "", "dataset": dataset,
                              "note": f"no experiment was scored on {dataset} under {condition}"}],
                            columns=[*meta, *names, MEAN_TISSUE, "note"])
    labels = label_dice(sl, ["experiment_id"], level, metric)
    wide = labels.pivot_table(index="experiment_id", columns="label_name", values=metric, sort=False)
    names += [n for n in wide.columns if n not in names]
    mean = mean_tissue_dice(labels, ["experiment_id"], metric).set_index("experiment_id")[metric]
    n_subj = sl[sl["value"].notna()].groupby("experiment_id")["subject_id"].nunique()
    info = exps.drop_duplicates("experiment_id").set_index("experiment_id") if len(exps) else pd.DataFrame()
    rows = []
    for eid in wide.index:
        eid = str(eid)
        if eid.startswith(ZERO_SHOT_PREFIX):
            key = eid[len(ZERO_SHOT_PREFIX):]
            model = sl.loc[sl["experiment_id"] == eid, "model"].iloc[0] if "model" in sl else key
            row = {"setting": "zero-shot", "experiment_id": eid, "model": model}
        else:
            e = info.loc[eid].to_dict() if eid in info.index else {}
            row = {"setting": "finetuned", "experiment_id": eid, "model": e.get("model", ""),
                   "groups": e.get("groups", ""), "strategy": e.get("strategy", ""),
                   "box_shift_grid_px": shift_of(e), "train_subjects": e.get("train_subjects", ""),
                   "task": e.get("task", "")}
        row.update({"n_subjects": int(n_subj.get(eid, 0)), **wide.loc[eid].to_dict(), MEAN_TISSUE: mean.get(eid)})
        rows.append(row)
    out = pd.DataFrame(rows).reindex(columns=[*meta, *names, MEAN_TISSUE, "note"])
    out["note"] = out["note"].fillna("")
    rank = {str(e): i for i, e in enumerate(exps.get("experiment_id", []))}
    out = out.assign(_z=(out["setting"] != "zero-shot").astype(int),
                     _e=out["experiment_id"].map(lambda e: rank.get(e, -1)))
    out = out.sort_values(["_z", "_e"], kind="stable").drop(columns=["_z", "_e"]).reset_index(drop=True)
    return out.round({c: DICE_DIGITS for c in [*names, MEAN_TISSUE]})
