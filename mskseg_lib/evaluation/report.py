"""Tables of notebook 02: the study's S3-S5 and the project's extra zero-shot analyses.

* S3: the study's dataset Dice ("Mean Tissue", :mod:`mskseg_lib.evaluation.aggregate`) per
  dataset and model under exact boxes, the slice-mean subject Dice beside it, and the
  published zero-shot values of SAM ViT-B, SAM2 hiera-b+ and MedSAM ViT-B.
* S4: the study's Friedman test: the three study models with exact boxes, subjects as blocks,
  BH across datasets; the p-values printed in the study's text beside it.
* S5: the study's post-hoc Wilcoxon signed-rank tests, run where the BH-adjusted Friedman p
  is below 0.05, BH within dataset; the other readings of the text as labelled variant columns.
* Extra analyses (never mixed into S4/S5): Friedman and Wilcoxon across each model's prompt
  conditions (exact vs shifted boxes), and across every model that ran with exact boxes when
  that set differs from the study's (e.g. LiteMedSAM added).

Where a study model did not run (no checkpoint under ``fixture`` and ``default``), S4 and S5
keep one row per dataset saying which models are missing and why.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from mskseg_lib.evaluation.aggregate import DEFAULT_LABEL_LEVEL, LabelLevel, other_level
from mskseg_lib.reference import (MEAN_TISSUE, STUDY_MODELS, published_table1, published_table1_labels,
                                  published_table1_tissues, published_zero_shot_tests)
from mskseg_lib.stats.comparisons import friedman_by_group, gated_wilcoxon

EXACT_CONDITION = "gt_box"  # the study's prompt condition: boxes from the ground truth, unshifted
PUBLISHED_PREFIX = "published_zero_shot · "
VALUE_COL = "dice_mean_slice"  # subjects' value in the tests: the study's subject mean Dice
ALPHA = 0.05


def exact_condition(conditions: Sequence[Mapping[str, Any]]) -> str:
    """Name of the exact-box condition of a profile's ``conditions`` list: the first entry
    whose settings other than ``name`` are all zero (whatever the shift setting is called)."""
    for c in conditions:
        if all(not float(v) for k, v in c.items() if k != "name" and isinstance(v, (int, float))):
            return str(c["name"])
    names = [str(c.get("name")) for c in conditions]
    raise ValueError(f"zero_shot.conditions has no exact-box condition (all shifted): {names}")


def _model_order(models: Sequence[str]) -> list[str]:
    """Display names: the study's three in the study's order, then the others as given."""
    names = list(dict.fromkeys(str(m) for m in models))
    study = [m for m in STUDY_MODELS.values() if m in names]
    return study + [m for m in names if m not in study]


def _why_missing(models: Optional[pd.DataFrame], name: str) -> str:
    """Status of a study model from the run's models table ("not run: checkpoint missing")."""
    if models is None or models.empty or "model" not in models:
        return "no scores"
    hit = models[models["model"].astype(str) == name]
    if hit.empty:
        return "not requested by the profile (zero_shot.models)"
    status = str(hit["status"].iloc[0])
    return "available but no scores" if status == "available" else status


# ---------------------------------------------------------------------------------- S3
def table_s3(datasets: pd.DataFrame, condition: str = EXACT_CONDITION,
             published: Optional[pd.DataFrame] = None,
             level: LabelLevel = DEFAULT_LABEL_LEVEL) -> pd.DataFrame:
    """S3: one row per dataset, the exact-box results of every model that ran, published beside.

    Parameters
    ----------
    datasets : :func:`mskseg_lib.evaluation.aggregate.dataset_table`'s output.
    condition : the exact-box condition (other conditions are left to the extra tables).
    published : :func:`mskseg_lib.reference.published_table1` (default: loaded).
    level : reading of a label's Dice that ``datasets["dice_mean_tissue"]`` used.

    Returns
    -------
    Columns per model (study models first): ``<model> · mean tissue`` (the study's dataset
    Dice), ``<model> · mean tissue (<variant reading>)``, ``<model> · subject mean ± SD (n)``;
    then ``published_zero_shot · <study model>`` and ``published_note`` ("not in the study"
    for datasets the study does not have; the copy-error flag of Spine_2D_T1ax_59).
    """
    published = published_table1() if published is None else published
    variant = other_level(level)
    d = datasets[datasets["condition"].astype(str) == condition]
    out = pd.DataFrame(index=pd.Index(list(dict.fromkeys(datasets["dataset"])), name="dataset"))
    for model in _model_order(d["model"]):
        m = d[d["model"].astype(str) == model].set_index("dataset")
        out[f"{model} · mean tissue"] = m["dice_mean_tissue"].astype(float)
        out[f"{model} · mean tissue ({variant})"] = m[f"dice_mean_tissue_{variant}"].astype(float)
        out[f"{model} · subject mean ± SD (n)"] = [
            _mean_sd_n(r["subject_dice_mean"], r["subject_dice_sd"], r["n_subjects"]) for _, r in m.iterrows()
        ] if len(m) else []
    zs = published[published["setting"] == "zero-shot"]
    pub = zs.pivot(index="dataset", columns="model", values="dice")
    for model in STUDY_MODELS.values():
        out[PUBLISHED_PREFIX + model] = pub[model].reindex(out.index) if model in pub else np.nan
    notes = zs.groupby("dataset")["note"].first()
    out["published_note"] = notes.reindex(out.index).fillna("not in the study")
    return out.reset_index()


def _mean_sd_n(mean: Any, sd: Any, n: Any) -> str:
    if not np.isfinite(float(mean)):
        return "n/a"
    if sd is None or not np.isfinite(float(sd)):
        return f"{float(mean):.3f} (n={int(n)})"
    return f"{float(mean):.3f} ± {float(sd):.3f} (n={int(n)})"


def dice_all_arms(datasets: pd.DataFrame, condition: str = EXACT_CONDITION,
                  level: LabelLevel = DEFAULT_LABEL_LEVEL) -> pd.DataFrame:
    """Every arm's dataset Dice (extra table): exact and shifted boxes, every model, long.

    ``in_study_design`` is True for the study's three models under exact boxes, the arms of S3
    and S4; other rows are the project's extra analyses.
    """
    variant = other_level(level)
    cols = ["dataset", "model", "condition", "arm", "n_subjects", "dice_mean_tissue",
            f"dice_mean_tissue_{variant}", "iou_mean_tissue", "subject_dice_mean", "subject_dice_sd",
            "subject_dice_median", "dice_3d_mean"]
    out = datasets[cols].copy()
    out["in_study_design"] = (out["model"].isin(STUDY_MODELS.values())
                              & (out["condition"].astype(str) == condition))
    return out


# ---------------------------------------------------------------------------- S4 and S5
def _study_scores(subjects: pd.DataFrame, condition: str) -> pd.DataFrame:
    sel = subjects["model"].isin(STUDY_MODELS.values()) & (subjects["condition"].astype(str) == condition)
    return subjects[sel]


def study_friedman(subjects: pd.DataFrame, models: Optional[pd.DataFrame] = None,
                   condition: str = EXACT_CONDITION, value_col: str = VALUE_COL) -> pd.DataFrame:
    """The study's Friedman test per dataset: SAM ViT-B, SAM2 hiera-b+, MedSAM ViT-B under
    ``condition`` (exact boxes), subjects as blocks, BH across datasets.

    Every dataset of ``subjects`` keeps a row. Where a study model has no scores the row says
    which and why (from ``models``, the run's models table: e.g. "not run: checkpoint missing")
    and which models did run, so the table is never empty.
    """
    datasets = list(dict.fromkeys(subjects["dataset"]))
    arms = list(STUDY_MODELS.values())
    out = friedman_by_group(_study_scores(subjects, condition), arm_col="model", value_col=value_col,
                            arms=arms, groups=datasets)
    ran = [m for m in _model_order(subjects["model"]) if m not in arms]
    for i, row in out.iterrows():
        if not str(row["note"]).startswith("not run: no scores for"):
            continue
        have = set(subjects.loc[subjects["dataset"] == row["dataset"], "model"].astype(str))
        missing = [m for m in arms if m not in have or m in str(row["note"])]
        reasons = "; ".join(f"{m}: {_why_missing(models, m)}" for m in missing)
        extra = [m for m in ran if m in have]
        out.at[i, "note"] = (f"not run: the study's test needs {', '.join(arms)} with {condition}; "
                             f"missing {reasons}" + (f" (ran: {', '.join(extra)}, an extra model: "
                                                     "see the extra analyses)" if extra else ""))
    return out


def study_wilcoxon(subjects: pd.DataFrame, friedman: pd.DataFrame, condition: str = EXACT_CONDITION,
                   value_col: str = VALUE_COL, alpha: float = ALPHA) -> pd.DataFrame:
    """The study's post-hoc tests with the default reading and the variants as columns.

    Default: pairs of the study models tested where the BH-adjusted Friedman p < ``alpha``,
    BH within dataset (``p_bh``). Variants: ``variant_raw_gate_p_value`` /
    ``variant_raw_gate_p_bh`` (gate on the raw Friedman p, BH within dataset) and
    ``variant_bh_all_pairs_p_bh`` (adjusted gate, BH over every pair tested in the table).
    """
    data = _study_scores(subjects, condition)
    kw = dict(arm_col="model", value_col=value_col, arms=list(STUDY_MODELS.values()), alpha=alpha)
    default = gated_wilcoxon(data, friedman, **kw)
    raw = gated_wilcoxon(data, friedman, gate="p_value", **kw)
    pooled = gated_wilcoxon(data, friedman, correction="all", **kw)
    default["variant_raw_gate_p_value"] = raw["p_value"].to_numpy()
    default["variant_raw_gate_p_bh"] = raw["p_bh"].to_numpy()
    default["variant_bh_all_pairs_p_bh"] = pooled["p_bh"].to_numpy()
    for i, row in default.iterrows():  # carry the Friedman's reason for a test that could not run
        if not np.isfinite(row["friedman_p"]):
            note = str(friedman.loc[friedman["dataset"] == row["dataset"], "note"].squeeze())
            inner = note[len("not run: "):] if note.startswith("not run: ") else note
            default.at[i, "note"] = f"not run: no Friedman test ({inner})" if note else row["note"]
    return default


def _published_tests() -> pd.DataFrame:
    return published_zero_shot_tests()


def table_s4(friedman: pd.DataFrame, published: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """S4 with the study's printed Friedman p-values beside the regenerated ones."""
    published = _published_tests() if published is None else published
    cols = ["dataset", "n_subjects", "n_arms", "arms", "statistic", "p_value", "p_bh", "kendall_w", "note"]
    out = friedman[cols].rename(columns={"statistic": "chi2", "p_bh": "p_bh_across_datasets"})
    fr = published[published["test"] == "friedman"].set_index("dataset")
    out["published_p"] = out["dataset"].map(fr["p_value"]).astype(float)
    out["published_p_printed"] = out["dataset"].map(fr["p_printed"]).fillna("")
    out["published_note"] = out["dataset"].map(fr["note"]).fillna("")
    return out


def table_s5(pairwise: pd.DataFrame, published: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """S5 (:func:`study_wilcoxon`'s table) with the printed Wilcoxon p beside its pairs."""
    published = _published_tests() if published is None else published
    out = pairwise.rename(columns={"p_bh": "p_bh_within_dataset", "statistic": "W"})
    pub = published[published["test"] == "wilcoxon"]
    key = {(r.dataset, frozenset((r.arm_a, r.arm_b))): r for r in pub.itertuples()}
    hits = [key.get((d, frozenset((a, b)))) for d, a, b in zip(out["dataset"], out["arm_a"], out["arm_b"])]
    out["published_p"] = [h.p_value if h is not None else np.nan for h in hits]
    out["published_note"] = [f"{h.p_printed}; {h.note}" if h is not None else "" for h in hits]
    return out


# ------------------------------------------------------------------------ extra analyses
def extra_tests(subjects: pd.DataFrame, conditions: Sequence[str], condition: str = EXACT_CONDITION,
                value_col: str = VALUE_COL, alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The project's extra zero-shot tests, each labelled in an ``analysis`` column.

    * ``prompt conditions · <model>``: per model that ran, Friedman across its prompt
      ``conditions`` (exact and shifted boxes; subjects as blocks, BH across datasets) and the
      gated Wilcoxon pairs (same readings as S5);
    * ``all models · <condition>``: Friedman across every model that ran under exact boxes,
      when that set is not the study's three (e.g. with LiteMedSAM); with fewer than three such
      models one row says so.

    Returns (friedman, wilcoxon), both with ``analysis`` first.
    """
    fr_parts, wx_parts = [], []
    datasets = list(dict.fromkeys(subjects["dataset"]))
    for model in _model_order(subjects["model"]):
        data = subjects[subjects["model"].astype(str) == model]
        arms = [c for c in conditions if c in set(data["condition"].astype(str))]
        label = f"prompt conditions · {model}"
        fr = friedman_by_group(data, arm_col="condition", value_col=value_col, arms=arms, groups=datasets)
        wx = gated_wilcoxon(data, fr, arm_col="condition", value_col=value_col, arms=arms, alpha=alpha)
        fr_parts.append(fr.assign(analysis=label))
        wx_parts.append(wx.assign(analysis=label))
    exact = subjects[subjects["condition"].astype(str) == condition]
    models = _model_order(exact["model"])
    label = f"all models · {condition}"
    if set(models) != set(STUDY_MODELS.values()):
        if len(models) >= 3:
            fr = friedman_by_group(exact, arm_col="model", value_col=value_col, arms=models, groups=datasets)
            wx = gated_wilcoxon(exact, fr, arm_col="model", value_col=value_col, arms=models, alpha=alpha)
            fr_parts.append(fr.assign(analysis=label))
            wx_parts.append(wx.assign(analysis=label))
        else:
            fr_parts.append(pd.DataFrame([{
                "analysis": label, "dataset": "all", "n_subjects": 0, "n_arms": len(models),
                "arms": ",".join(models), "note": f"not run: needs >= 3 models with {condition}, "
                                                  f"have {len(models)} ({', '.join(models) or 'none'})"}]))
    fr = pd.concat(fr_parts, ignore_index=True) if fr_parts else pd.DataFrame(columns=["analysis", "dataset"])
    wx = pd.concat(wx_parts, ignore_index=True) if wx_parts else pd.DataFrame(columns=["analysis", "dataset"])
    return (fr[["analysis", *[c for c in fr.columns if c != "analysis"]]],
            wx[["analysis", *[c for c in wx.columns if c != "analysis"]]])


# ----------------------------------------------------------------- label / tissue tables
def _published_beside(wide: pd.DataFrame, key: str, published: pd.DataFrame) -> pd.DataFrame:
    """Add ``published_zero_shot · <model>`` columns for (dataset, ``key``) pairs the study has."""
    zs = published[published["setting"] == "zero-shot"]
    names = {k: v for k, v in STUDY_MODELS.items()}
    for model_key, name in names.items():
        m = zs[zs["model_key"] == model_key].set_index(["dataset", key])["dice"]
        idx = pd.MultiIndex.from_frame(wide[["dataset", key]])
        wide[PUBLISHED_PREFIX + name] = m.reindex(idx).to_numpy(dtype=float)
    return wide


def label_table(labels: pd.DataFrame, published: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Per dataset and label: the label Dice (study reading) per arm, wide, with the study's
    tier-3 zero-shot label values beside it where it prints them."""
    published = published_table1_labels() if published is None else published
    wide = labels.pivot_table(index=["dataset", "label_name"], columns="arm", values="dice_mean", sort=False)
    wide = wide.add_suffix(" · dice").reset_index()
    return _published_beside(wide, "label_name", published)


def tissue_table(tissues: pd.DataFrame, published: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Per dataset and tissue class: the tissue Dice (mean of its labels) per arm, wide, with
    the study's tier-2 zero-shot tissue values beside it where it prints them."""
    published = published_table1_tissues() if published is None else published
    wide = tissues.pivot_table(index=["dataset", "tissue_class"], columns="arm", values="dice_mean", sort=False)
    wide = wide.add_suffix(" · dice").reset_index()
    wide = _published_beside(wide, "tissue_class", published)
    notes = published.drop_duplicates(["dataset", "tissue_class"]).set_index(["dataset", "tissue_class"])["note"]
    idx = pd.MultiIndex.from_frame(wide[["dataset", "tissue_class"]])
    wide["published_note"] = notes.reindex(idx).fillna("").to_numpy()
    return wide


__all__ = ["EXACT_CONDITION", "MEAN_TISSUE", "PUBLISHED_PREFIX", "exact_condition", "table_s3", "dice_all_arms",
           "study_friedman", "study_wilcoxon", "table_s4", "table_s5", "extra_tests", "label_table",
           "tissue_table"]
