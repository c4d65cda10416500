"""Tables of the finetuning study: Table 1 (tiers 1-3), S6 (experiment definitions) and S7
onward (class-level Dice of each experiment), plus the result selection figure 4 shares.

Everything works on the engine's result tables (pandas DataFrames):

* ``experiments``: one row per experiment (id, ablation ``groups``, initial ``model_key``,
  strategy, training data, status, ...);
* ``subjects``: one row per (experiment_id, condition, dataset, subject) with its
  ``dice_mean_slice``; the zero-shot baseline of initial model ``m`` on the same evaluation
  slices has ``experiment_id == "zero_shot:<m>"``;
* ``slices``: one row per (experiment_id, condition, dataset, subject, slice, label).

Every mean ± SD is over subjects, as in the zero-shot tables: a subject's value is averaged
first (over its slices and labels, and over repeated runs of one setting), so a subject with
many slices weighs no more than one with few, and repeats do not inflate n. A subject is a
(dataset, subject_id) pair. Only one prompt condition is used (``gt_box`` by default).

The finetuned arm of Table 1 is, per initial model, the experiments of group
``initial_weights``. A model that has no finished experiment there keeps one row carrying
its status ("not run: checkpoint missing", "pending", ...), so the table shows what is absent.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mskseg_lib.plots.dataset_overview import dataset_order, short_dataset_name
from mskseg_lib.plots.style import TISSUE_ORDER, ordered
from mskseg_lib.plots.zero_shot import anatomy_of
from mskseg_lib.stats.comparisons import bh_correct

__all__ = [
    "CONDITION", "ZERO_SHOT_PREFIX", "FINISHED", "zero_shot_id", "split_list", "in_group",
    "trained_on", "order_datasets", "scores", "group_scores", "zero_shot_scores", "summarise",
    "mean_sd_text", "paired_wilcoxon", "table1_datasets", "table1_tissues", "table1_labels",
    "table_s6", "class_level_long", "class_level_tables",
]

CONDITION = "gt_box"
ZERO_SHOT_PREFIX = "zero_shot:"
FINISHED = "finished"
INITIAL_WEIGHTS = "initial_weights"
DICE_DIGITS = 4  # Dice, SD and differences: 4 decimals
P_DIGITS = 4  # p-values: 4 significant digits (decimals would turn 1e-5 into 0)
NO_EXPERIMENT = "not run: no initial_weights experiment"

SUMMARY_COLUMNS = ["n_subjects", "mean", "sd"]
ARM_COLUMNS = ["n_zero_shot", "zero_shot_mean", "zero_shot_sd",
               "n_finetuned", "finetuned_mean", "finetuned_sd", "difference"]
TEXT_COLUMNS = ["zero_shot", "finetuned"]
TIER1_COLUMNS = ["model_key", "model", "dataset", "anatomy", "in_training", "experiment_id",
                 "status", *ARM_COLUMNS, "n_paired", "wilcoxon_w", "p_value", "p_bh", "note",
                 *TEXT_COLUMNS]
S6_COLUMNS = ["experiment_id", "groups", "model", "strategy", "encoder", "box_shift_px",
              "train_subjects", "task", "mix_kind", "train_datasets", "eval_datasets",
              "n_train_subjects_max", "n_train_samples", "status", "epochs_run", "best_epoch",
              "stop_reason", "minutes"]
EXPERIMENT_COLUMNS = ["experiment_id", "model_key", "model", "groups"]


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
    names = list(dict.fromkeys(str(d) for d in datasets if d is not None and d == d))
    if not names:
        return []
    return dataset_order(pd.DataFrame({"dataset": names, "anatomy": [anatomy_of(d) for d in names]}))


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


def mean_sd_text(mean: Any, sd: Any, digits: int = 3) -> str:
    """``"0.812 ± 0.034"`` for display; the mean alone without an SD; ``"n/a"`` without a mean."""
    if mean is None or not np.isfinite(float(mean)):
        return "n/a"
    if sd is None or not np.isfinite(float(sd)):
        return f"{float(mean):.{digits}f}"
    return f"{float(mean):.{digits}f} ± {float(sd):.{digits}f}"


def paired_wilcoxon(finetuned: Sequence[float], zero_shot: Sequence[float]) -> tuple[float, float, str]:
    """Two-sided Wilcoxon signed-rank test of paired subject scores: (W, p, note).

    Not run (NaN, with the reason in ``note``) with fewer than two pairs or when every
    paired difference is zero, where the test has nothing to rank.
    """
    a, b = np.asarray(finetuned, dtype=float), np.asarray(zero_shot, dtype=float)
    if a.size < 2:
        return np.nan, np.nan, f"not run: needs >= 2 paired subjects, have {a.size}"
    if np.all(a == b):
        return np.nan, np.nan, "not run: all paired differences are zero"
    res = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue), ""


def _round_p(p: Any) -> float:
    p = float(p)
    return float(f"{p:.{P_DIGITS}g}") if np.isfinite(p) else np.nan


def _round_dice(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in df.columns if c.endswith(("_mean", "_sd")) or c == "difference"]
    return df.astype({c: float for c in cols}).round({c: DICE_DIGITS for c in cols})


# ------------------------------------------------------------- finetuned vs zero-shot arms
def _compare(table: pd.DataFrame, finetuned_ids: Sequence[str], model_key: str, keys: Sequence[str],
             condition: str, value_col: str) -> pd.DataFrame:
    """Per ``keys``: zero-shot and finetuned mean ± SD over subjects and their difference.

    The zero-shot arm is restricted to the datasets the finetuned arm was scored on, so both
    arms describe the same data.
    """
    ft = scores(table, finetuned_ids, condition, value_col)
    zs = scores(table, [zero_shot_id(model_key)], condition, value_col)
    zs = zs[zs["dataset"].isin(set(ft["dataset"]))]
    a = summarise(zs, keys).rename(columns={"n_subjects": "n_zero_shot", "mean": "zero_shot_mean",
                                            "sd": "zero_shot_sd"})
    b = summarise(ft, keys).rename(columns={"n_subjects": "n_finetuned", "mean": "finetuned_mean",
                                            "sd": "finetuned_sd"})
    out = b.merge(a, on=list(keys), how="outer", sort=False)
    out = out.reindex(columns=[*keys, *ARM_COLUMNS])
    out["difference"] = out["finetuned_mean"].astype(float) - out["zero_shot_mean"].astype(float)
    for c in ("n_zero_shot", "n_finetuned"):
        out[c] = out[c].fillna(0).astype(int)
    return out


def _with_text(df: pd.DataFrame) -> pd.DataFrame:
    """Add the display columns ``zero_shot`` and ``finetuned`` ("mean ± SD")."""
    return df.assign(
        zero_shot=[mean_sd_text(m, s) for m, s in zip(df["zero_shot_mean"], df["zero_shot_sd"])],
        finetuned=[mean_sd_text(m, s) for m, s in zip(df["finetuned_mean"], df["finetuned_sd"])])


def _initial_weight_arms(experiments: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """model_key -> its experiments of group ``initial_weights`` (all statuses), model order."""
    exps = in_group(experiments, INITIAL_WEIGHTS)
    if exps.empty:
        return {}
    return {str(k): g for k, g in exps.groupby("model_key", sort=False)}


def _finished_arms(experiments: pd.DataFrame) -> dict[str, tuple[str, list[str]]]:
    """model_key -> (display name, finished initial_weights experiment ids)."""
    out = {}
    for key, g in _initial_weight_arms(experiments).items():
        done = finished(g)
        if not done.empty:
            out[key] = (str(done["model"].iloc[0]) if "model" in done else key,
                        done["experiment_id"].astype(str).tolist())
    return out


# ---------------------------------------------------------------------- Table 1, tier 1
def _model_list(models: pd.DataFrame, experiments: pd.DataFrame) -> list[dict[str, str]]:
    """Models of ``models`` (in order), then any other initial model of ``initial_weights``."""
    rows = [{"model_key": str(r["model_key"]), "model": str(r.get("model", r["model_key"])),
             "status": str(r.get("status", ""))} for r in models.to_dict("records")]
    known = {r["model_key"] for r in rows}
    for key, g in _initial_weight_arms(experiments).items():
        if key not in known:
            rows.append({"model_key": key, "model": str(g["model"].iloc[0]) if "model" in g else key,
                         "status": ""})
    return rows


def _absent_status(model_status: str, arm: Optional[pd.DataFrame]) -> Optional[str]:
    """Why a model has no finetuned results, or None when it has a finished experiment.

    A model status other than "finished"/"available" (e.g. "not run: checkpoint missing")
    wins; otherwise the experiment's own status, or :data:`NO_EXPERIMENT` when there is none.
    """
    if model_status and model_status not in (FINISHED, "available"):
        return model_status
    if arm is None or arm.empty:
        return NO_EXPERIMENT
    if not finished(arm).empty:
        return None
    return str(arm["status"].iloc[0]) if "status" in arm else NO_EXPERIMENT


def _tier1_rows(subjects: pd.DataFrame, arm: pd.DataFrame, model: Mapping[str, str],
                condition: str, value_col: str) -> pd.DataFrame:
    """Tier-1 rows of one model with a finished experiment: one per evaluated dataset (those
    listed in ``eval_datasets`` and those with results), in figure order."""
    done = finished(arm)
    ids = done["experiment_id"].astype(str).tolist()
    ft = scores(subjects, ids, condition, value_col)
    zs = scores(subjects, [zero_shot_id(model["model_key"])], condition, value_col)
    cmp = _compare(subjects, ids, model["model_key"], ["dataset"], condition, value_col)
    cmp = cmp.set_index("dataset")
    listed = [d for v in done.get("eval_datasets", []) for d in split_list(v)]
    train = {d for v in done.get("train_datasets", []) for d in split_list(v)}
    rows = []
    for dataset in order_datasets([*listed, *ft["dataset"]]):
        pairs = _paired(ft[ft["dataset"] == dataset], zs[zs["dataset"] == dataset])
        w, p, note = paired_wilcoxon(pairs["ft"], pairs["zs"])
        if dataset in cmp.index:
            arms = cmp.loc[dataset, ARM_COLUMNS].to_dict()
        else:
            arms, note = {}, "no finetuned results for this dataset"
        rows.append({**model, "dataset": dataset, "anatomy": anatomy_of(dataset),
                     "in_training": dataset in train, "experiment_id": ", ".join(ids),
                     "status": FINISHED, **arms, "n_paired": len(pairs), "wilcoxon_w": w,
                     "p_value": p, "note": note})
    return pd.DataFrame(rows, columns=TIER1_COLUMNS)


def _paired(ft: pd.DataFrame, zs: pd.DataFrame) -> pd.DataFrame:
    """Subjects scored by both arms: columns ft, zs (subject means, finite in both)."""
    a = summarise(ft, ["dataset", "subject_id"])[["dataset", "subject_id", "mean"]]
    b = summarise(zs, ["dataset", "subject_id"])[["dataset", "subject_id", "mean"]]
    return (a.merge(b, on=["dataset", "subject_id"], suffixes=("_ft", "_zs"))
            .rename(columns={"mean_ft": "ft", "mean_zs": "zs"}).dropna(subset=["ft", "zs"]))


def table1_datasets(subjects: pd.DataFrame, experiments: pd.DataFrame, models: pd.DataFrame,
                    condition: str = CONDITION, value_col: str = "dice_mean_slice") -> pd.DataFrame:
    """Table 1, tier 1: per initial model and evaluated dataset, zero-shot vs finetuned Dice.

    The finetuned arm is the model's ``initial_weights`` experiment(s); the zero-shot arm is
    ``zero_shot:<model_key>`` on the same datasets. Columns: model_key, model, dataset,
    anatomy, in_training (False for an external set such as the held-out undersampled CUBE),
    experiment_id, status, n/mean/SD of each arm over subjects, difference (finetuned mean −
    zero-shot mean), n_paired, the paired two-sided Wilcoxon W and p over subjects scored by
    both arms, p_bh (Benjamini-Hochberg across the datasets of the model), note (why a test
    did not run) and "mean ± SD" display columns. A model without finished finetuning keeps
    one row with its status and no numbers.
    """
    arms = _initial_weight_arms(experiments)
    parts = []
    for model in _model_list(models, experiments):
        arm = arms.get(model["model_key"])
        absent = _absent_status(model.pop("status"), arm)
        if absent is not None:
            parts.append(pd.DataFrame([{**model, "status": absent}]))
            continue
        rows = _tier1_rows(subjects, arm, model, condition, value_col)
        rows["p_bh"] = bh_correct(rows["p_value"]) if len(rows) else []
        parts.append(rows)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TIER1_COLUMNS)
    out = out.reindex(columns=TIER1_COLUMNS)
    for c in ("n_zero_shot", "n_finetuned", "n_paired"):
        out[c] = out[c].astype("Int64")
    out["note"] = out["note"].fillna("")
    out = _with_text(_round_dice(out))
    for c in ("p_value", "p_bh"):
        out[c] = out[c].map(_round_p)
    return out


# ----------------------------------------------------------------- Table 1, tiers 2 and 3
def _tiered(slices: pd.DataFrame, experiments: pd.DataFrame, keys: list[str], condition: str) -> pd.DataFrame:
    """Per finished initial model and ``keys``: zero-shot vs finetuned slice-label Dice."""
    parts = []
    for key, (name, ids) in _finished_arms(experiments).items():
        cmp = _compare(slices, ids, key, keys, condition, "dice")
        if len(cmp):
            parts.append(cmp.assign(model_key=key, model=name))
    cols = ["model_key", "model", *keys, *ARM_COLUMNS]
    if not parts:
        return _with_text(pd.DataFrame(columns=cols))
    return _with_text(_round_dice(pd.concat(parts, ignore_index=True)[cols]))


def table1_tissues(slices: pd.DataFrame, experiments: pd.DataFrame,
                   condition: str = CONDITION) -> pd.DataFrame:
    """Table 1, tier 2: per tissue class and initial model, zero-shot vs finetuned Dice.

    A subject's Dice for a tissue class is the mean of its slice-label rows of that class
    (labels absent from the ground truth, NaN, are skipped); mean ± SD are then over subjects
    of all evaluated datasets. Rows: tissue classes in the project's order (cartilage, bone,
    muscle, nerve, fat, then others), models in experiment order within a class.
    """
    out = _tiered(slices, experiments, ["tissue_class"], condition)
    rank = {t: i for i, t in enumerate(ordered(out["tissue_class"], TISSUE_ORDER))}
    return (out.assign(_r=out["tissue_class"].map(rank)).sort_values("_r", kind="stable")
            .drop(columns="_r").reset_index(drop=True))


def table1_labels(slices: pd.DataFrame, experiments: pd.DataFrame, datasets: Sequence[str],
                  condition: str = CONDITION) -> pd.DataFrame:
    """Table 1, tier 3: per label of the given datasets and initial model, zero-shot vs
    finetuned Dice (a subject's label Dice is the mean over its slices; mean ± SD over
    subjects). Rows follow ``datasets`` as given, then label value, then model. A dataset that
    no finetuned arm was scored on has no rows."""
    datasets = [str(d) for d in datasets]
    sub = slices[slices["dataset"].isin(datasets)] if "dataset" in slices else slices
    keys = ["dataset", "label_value", "label_name", "tissue_class"]
    out = _tiered(sub, experiments, keys, condition)
    out = out.assign(_d=out["dataset"].map({d: i for i, d in enumerate(datasets)}),
                     _v=pd.to_numeric(out["label_value"], errors="coerce"))
    return out.sort_values(["_d", "_v"], kind="stable").drop(columns=["_d", "_v"]).reset_index(drop=True)


# ---------------------------------------------------------------------------- Table S6
def _short_list(value: Any) -> str:
    """Comma-separated dataset names shortened (``"Knee DESS 86, Thigh T1ax 50"``)."""
    return ", ".join(short_dataset_name(d) for d in split_list(value))


def table_s6(experiments: pd.DataFrame) -> pd.DataFrame:
    """Table S6: one row per experiment (in the engine's order) with its definition and run.

    Columns: experiment_id, groups (", "-separated), model, strategy, encoder, box_shift_px,
    train_subjects, task, mix_kind, train_datasets / eval_datasets (short names),
    n_train_subjects_max, n_train_samples, status, epochs_run, best_epoch, stop_reason,
    minutes (training time, 1 d.p.). Counts are nullable integers (empty for pending runs).
    """
    if experiments.empty:
        return pd.DataFrame(columns=S6_COLUMNS)
    e = experiments.reindex(columns=sorted(set(experiments.columns) | set(S6_COLUMNS) | {"train_seconds"}))
    out = pd.DataFrame({
        **{c: e[c] for c in S6_COLUMNS if c not in ("groups", "train_datasets", "eval_datasets", "minutes")},
        "groups": e["groups"].map(lambda g: ", ".join(split_list(g))),
        "train_datasets": e["train_datasets"].map(_short_list),
        "eval_datasets": e["eval_datasets"].map(_short_list),
        "minutes": (pd.to_numeric(e["train_seconds"], errors="coerce") / 60.0).round(1),
    })
    for c in ("box_shift_px", "n_train_subjects_max", "n_train_samples", "epochs_run", "best_epoch"):
        out[c] = pd.to_numeric(out[c], errors="coerce").round().astype("Int64")
    out["train_subjects"] = out["train_subjects"].map(lambda v: "" if v != v else str(v))
    return out[S6_COLUMNS].reset_index(drop=True)


# -------------------------------------------------------------- Tables S7 on: class level
def class_level_long(slices: pd.DataFrame, experiments: pd.DataFrame,
                     condition: str = CONDITION) -> pd.DataFrame:
    """Class-level Dice of every finished experiment, one long table (for CSV).

    Per experiment, evaluated dataset and tissue class: the experiment's mean ± SD over
    subjects next to the zero-shot of its initial model on the same datasets, and their
    difference. Experiments without slice results have no rows. Columns: experiment_id,
    model_key, model, groups, dataset, tissue_class, then the arm columns of Table 1.
    """
    cols = [*EXPERIMENT_COLUMNS, "dataset", "tissue_class", *ARM_COLUMNS, *TEXT_COLUMNS]
    parts = []
    for exp in finished(experiments).to_dict("records") if not experiments.empty else []:
        cmp = _compare(slices, [str(exp["experiment_id"])], str(exp["model_key"]),
                       ["dataset", "tissue_class"], condition, "dice")
        if cmp["n_finetuned"].sum() == 0:
            continue
        cmp = _sort_dataset_tissue(cmp)
        parts.append(cmp.assign(**{c: exp.get(c, "") for c in EXPERIMENT_COLUMNS}))
    if not parts:
        return pd.DataFrame(columns=cols)
    return _with_text(_round_dice(pd.concat(parts, ignore_index=True)))[cols]


def _sort_dataset_tissue(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in figure dataset order, then tissue class order."""
    d_rank = {d: i for i, d in enumerate(order_datasets(df["dataset"]))}
    t_rank = {t: i for i, t in enumerate(ordered(df["tissue_class"], TISSUE_ORDER))}
    return (df.assign(_d=df["dataset"].map(d_rank), _t=df["tissue_class"].map(t_rank))
            .sort_values(["_d", "_t"], kind="stable").drop(columns=["_d", "_t"]).reset_index(drop=True))


def class_level_tables(slices: pd.DataFrame, experiments: pd.DataFrame,
                       condition: str = CONDITION) -> dict[str, pd.DataFrame]:
    """Tables S7 onward: {experiment_id: its class-level table} in experiment order.

    Each table is the experiment's part of :func:`class_level_long` without the experiment
    columns: dataset, tissue_class, zero-shot and finetuned n/mean/SD, difference, display text.
    """
    long = class_level_long(slices, experiments, condition)
    keep = [c for c in long.columns if c not in EXPERIMENT_COLUMNS]
    return {str(k): g[keep].reset_index(drop=True)
            for k, g in long.groupby("experiment_id", sort=False)}
