"""Tables of notebook 02: the study's S3-S5 and the project's extra zero-shot analyses.

* S3: the study's dataset Dice ("Mean Tissue", :mod:`mskseg_lib.evaluation.aggregate`) per
  dataset and model under exact boxes, the slice-mean subject Dice beside it, and the
  published zero-shot values of SAM ViT-B, SAM2 hiera-b+ and MedSAM ViT-B.
* S4, S5: the tests of :mod:`mskseg_lib.stats.zero_shot_tests` (the study's Friedman and
  gated Wilcoxon tests, and the project's extra analyses) with the p-values printed in the
  study's text beside them.

Where a study model did not run (no checkpoint under ``fixture`` and ``default``), S4 and S5
keep one row per dataset saying which models are missing and why.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from mskseg_lib.evaluation.aggregate import DEFAULT_LABEL_LEVEL, LabelLevel, other_level
from mskseg_lib.reference import (
    MEAN_TISSUE,
    STUDY_MODELS,
    published_table1,
    published_table1_labels,
    published_table1_tissues,
    published_values,
    published_zero_shot_tests,
)

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


def mean_sd_text(mean: Any, sd: Any, digits: int = 3) -> str:
    """``"0.812 ± 0.034"`` for display; the mean alone without an SD; ``"n/a"`` without a mean."""
    if mean is None or not np.isfinite(float(mean)):
        return "n/a"
    if sd is None or not np.isfinite(float(sd)):
        return f"{float(mean):.{digits}f}"
    return f"{float(mean):.{digits}f} ± {float(sd):.{digits}f}"


def _mean_sd_n(mean: Any, sd: Any, n: Any) -> str:
    text = mean_sd_text(mean, sd)
    return text if text == "n/a" else f"{text} (n={int(n)})"


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
    """S5 (:func:`mskseg_lib.stats.zero_shot_tests.study_wilcoxon`'s table) with the printed Wilcoxon p beside its pairs."""
    published = _published_tests() if published is None else published
    out = pairwise.rename(columns={"p_bh": "p_bh_within_dataset", "statistic": "W"})
    pub = published[published["test"] == "wilcoxon"]
    key = {(r.dataset, frozenset((r.arm_a, r.arm_b))): r for r in pub.itertuples()}
    hits = [key.get((d, frozenset((a, b)))) for d, a, b in zip(out["dataset"], out["arm_a"], out["arm_b"])]
    out["published_p"] = [h.p_value if h is not None else np.nan for h in hits]
    out["published_note"] = [f"{h.p_printed}; {h.note}" if h is not None else "" for h in hits]
    return out


# ----------------------------------------------------------------- label / tissue tables
def _published_beside(wide: pd.DataFrame, key: str, published: pd.DataFrame) -> pd.DataFrame:
    """Add ``published_zero_shot · <model>`` columns for (dataset, ``key``) pairs the study has."""
    for model_key, name in STUDY_MODELS.items():
        wide[PUBLISHED_PREFIX + name] = published_values(published, wide, ["dataset", key], model_key, "zero-shot")
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


__all__ = ["EXACT_CONDITION", "MEAN_TISSUE", "PUBLISHED_PREFIX", "exact_condition", "mean_sd_text", "table_s3",
           "dice_all_arms", "table_s4", "table_s5", "label_table", "tissue_table"]
