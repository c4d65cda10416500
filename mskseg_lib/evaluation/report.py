"""Tables of notebook 02: S3 (mean Dice per dataset and arm, published values beside them),
S4 (Friedman per dataset with BH), S5 (pairwise Wilcoxon), and the per-label table."""
from __future__ import annotations

import pandas as pd

from mskseg_lib.reference import published_table1

PUBLISHED_PREFIX = "published zero-shot · "


def table_s3(datasets: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per dataset: "mean ± SD (n)" per arm, the numeric means, and the study's
    published zero-shot means (SAM, SAM2, MedSAM) for the same dataset names."""
    published = published_table1() if published is None else published
    d = datasets.assign(text=datasets.apply(
        lambda r: f"{r['dice_mean']:.3f} ± {r['dice_sd']:.3f} (n={int(r['n_subjects'])})"
        if pd.notna(r["dice_sd"]) else f"{r['dice_mean']:.3f} (n={int(r['n_subjects'])})", axis=1))
    text = d.pivot(index="dataset", columns="arm", values="text")
    means = d.pivot(index="dataset", columns="arm", values="dice_mean").add_suffix(" · mean")
    zs = published[published["setting"] == "zero-shot"]
    pub = zs.pivot(index="dataset", columns="model", values="dice").add_prefix(PUBLISHED_PREFIX)
    notes = zs.groupby("dataset")["note"].first().rename("published note")
    out = text.join(means).join(pub, how="left").join(notes, how="left")
    out["published note"] = out["published note"].fillna("")
    missing = out[[c for c in out if c.startswith(PUBLISHED_PREFIX)]].isna().all(axis=1)
    out.loc[missing, "published note"] = "not in the study"
    return out.reset_index()


def table_s4(friedman: pd.DataFrame) -> pd.DataFrame:
    cols = ["dataset", "n_subjects", "n_arms", "arms", "statistic", "p_value", "p_bh", "kendall_w", "note"]
    return friedman[cols].rename(columns={"statistic": "chi2", "p_bh": "p_bh_across_datasets"})


def table_s5(pairwise: pd.DataFrame) -> pd.DataFrame:
    return pairwise.rename(columns={"p_bh": "p_bh_within_dataset"})


def label_table(labels: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and label: mean ± SD of subject Dice per arm (wide)."""
    wide = labels.pivot_table(index=["dataset", "label_name"], columns="arm", values="dice_mean")
    return wide.add_suffix(" · mean").reset_index()
