"""Descriptive tables of a prepared cohort: the dataset summary and the study's tables S0-S2.

Each function takes the prepared ``subjects`` table (:func:`mskseg_lib.data.tables.load_tables`)
or ``catalog.labels_table()`` and returns a DataFrame; nothing is read or written. Missing
values are expected (real data lack ages, weights or timings): summaries are over the known
values and every table counts what is missing.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from mskseg_lib.data.catalog import dataset_order
from mskseg_lib.data.splits import SPLITS

__all__ = ["dataset_summary", "normalize_sex", "numeric_column", "table_s0_datasets", "table_s1_demographics",
           "table_s2_acquisition"]


def dataset_summary(subjects: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: subjects, split counts, slices, processed slices, mean age/weight, sex counts."""
    rows = []
    for name, g in subjects.groupby("dataset", sort=False):
        rows.append({
            "dataset": name, "anatomy": g["anatomy"].iloc[0], "subjects": len(g),
            "train": int((g["split"] == "train").sum()), "val": int((g["split"] == "val").sum()),
            "test": int((g["split"] == "test").sum()), "slices": int(g["n_slices"].sum()),
            "processed_slices": int(g["n_processed_slices"].sum()),
            "mean_age_years": round(float(pd.to_numeric(g["age_years"]).mean()), 1),
            "mean_weight_kg": round(float(pd.to_numeric(g["weight_kg"]).mean()), 1),
            "n_female": int((g["sex"] == "F").sum()), "n_male": int((g["sex"] == "M").sum()),
            "n_sex_unknown": int(g["sex"].isna().sum()),
        })
    return pd.DataFrame(rows)


def normalize_sex(values: Iterable[Any]) -> pd.Series:
    """``"F"``/``"female"`` -> F, ``"M"``/``"male"`` -> M, anything else (None, NaN, "") -> unknown."""
    def one(v: Any) -> str:
        s = str(v).strip().upper() if isinstance(v, str) else ""
        if s in {"F", "FEMALE"}:
            return "F"
        if s in {"M", "MALE"}:
            return "M"
        return "unknown"

    return pd.Series([one(v) for v in values], index=getattr(values, "index", None), dtype=object)


def numeric_column(df: pd.DataFrame, column: str) -> pd.Series:
    """``df[column]`` as floats (unparseable values NaN); an absent column is all NaN."""
    if column not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def _mean_sd(values: pd.Series, digits: int = 1) -> str:
    v = values.dropna()
    if len(v) == 0:
        return "n/a"
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _fmt(x: float) -> str:
    """Up to 3 significant digits, no trailing zeros: 1500 -> "1500", 0.546875 -> "0.547"."""
    return np.format_float_positional(float(x), precision=3, unique=True, fractional=False,
                                      trim="-")


def _median_range(values: pd.Series) -> str:
    v = values.dropna()
    if len(v) == 0:
        return "n/a"
    lo, hi, med = v.min(), v.max(), v.median()
    if lo == hi:
        return _fmt(med)
    return f"{_fmt(med)} [{_fmt(lo)}–{_fmt(hi)}]"


def _distinct(values: Iterable[Any], fmt=str, max_items: int = 4, by_value: bool = False) -> str:
    """Distinct values, most frequent first (or in ascending order with ``by_value``)."""
    vals = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))
            and v != ""]
    if not vals:
        return "n/a"
    if by_value:
        items = list(dict.fromkeys(fmt(v) for v in sorted(vals)))
    else:
        counts = pd.Series([fmt(v) for v in vals]).value_counts(sort=False)
        items = sorted(counts.index, key=lambda k: (-counts[k], k))
    shown = items[:max_items]
    return ", ".join(shown) + (", …" if len(items) > max_items else "")


def table_s0_datasets(subjects: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Table S0: one row per dataset of ``subjects`` (anatomy order).

    Columns: dataset, anatomy, plane, acquisition, labels (names in label-value order,
    comma-separated), n_labels, task. A dataset absent from ``labels`` gets "" and 0.
    """
    rows = []
    first = subjects.drop_duplicates("dataset").set_index("dataset")
    for dataset in dataset_order(subjects):
        lab = labels[labels["dataset"] == dataset].sort_values("label_value")
        rows.append({
            "dataset": dataset,
            "anatomy": first.at[dataset, "anatomy"],
            "plane": first.at[dataset, "plane"],
            "acquisition": first.at[dataset, "acquisition"],
            "labels": ", ".join(lab["label_name"].astype(str)),
            "n_labels": int(len(lab)),
            "task": first.at[dataset, "task"],
        })
    return pd.DataFrame(rows, columns=["dataset", "anatomy", "plane", "acquisition", "labels",
                                       "n_labels", "task"])


_S1_VARS = (("age_years", "age_years"), ("weight_kg", "weight_kg"), ("bmi", "bmi"))


def _s1_row(name: str, anatomy: str, g: pd.DataFrame, numeric: bool) -> dict[str, Any]:
    split = g["split"].value_counts() if "split" in g else pd.Series(dtype=int)
    sex = normalize_sex(g["sex"]).value_counts()
    row: dict[str, Any] = {"dataset": name, "anatomy": anatomy, "n_subjects": int(len(g))}
    for s in SPLITS:
        row[f"n_{s}"] = int(split.get(s, 0))
    for out, column in _S1_VARS:
        v = numeric_column(g, column)
        if numeric:
            row[f"{out}_mean"] = float(v.mean()) if v.notna().any() else np.nan
            row[f"{out}_sd"] = float(v.std(ddof=1)) if v.notna().sum() > 1 else np.nan
        else:
            row[out] = _mean_sd(v)
    row["n_female"] = int(sex.get("F", 0))
    row["n_male"] = int(sex.get("M", 0))
    row["n_sex_unknown"] = int(sex.get("unknown", 0))
    row["n_age_missing"] = int(numeric_column(g, "age_years").isna().sum())
    row["n_weight_missing"] = int(numeric_column(g, "weight_kg").isna().sum())
    return row


def table_s1_demographics(subjects: pd.DataFrame, numeric: bool = False,
                          total: bool = True) -> pd.DataFrame:
    """Table S1: demographics per dataset (anatomy order), plus an "All datasets" row.

    Columns: dataset, anatomy, n_subjects, n_train, n_val, n_test, age_years, weight_kg, bmi
    ("mean ± SD" over known values; one value alone is shown without SD; none -> "n/a"),
    n_female, n_male, n_sex_unknown, n_age_missing, n_weight_missing. With ``numeric=True``
    each "mean ± SD" column becomes two float columns ``<var>_mean`` and ``<var>_sd``.
    """
    rows = [_s1_row(d, subjects.loc[subjects["dataset"] == d, "anatomy"].iloc[0],
                    subjects[subjects["dataset"] == d], numeric)
            for d in dataset_order(subjects)]
    if total and len(subjects):
        rows.append(_s1_row("All datasets", "all", subjects, numeric))
    return pd.DataFrame(rows)


def table_s2_acquisition(subjects: pd.DataFrame) -> pd.DataFrame:
    """Table S2: acquisition per dataset (anatomy order), summarised over its subjects.

    Columns: dataset, vendor (distinct values, most frequent first), field_strength_t,
    te_ms, tr_ms, flip_angle_deg, slice_thickness_mm, pixel_spacing_mm ("median [min–max]"
    over known values, a single number when constant, "n/a" when all unknown), matrix
    ("rows x cols", distinct), acquisition (2D/3D), protocol_type.
    """
    rows = []
    for dataset in dataset_order(subjects):
        g = subjects[subjects["dataset"] == dataset]
        fs = numeric_column(g, "field_strength_t").dropna()
        matrix = [f"{int(r)} x {int(c)}" for r, c in zip(numeric_column(g, "rows_px"), numeric_column(g, "cols_px"))
                  if np.isfinite(r) and np.isfinite(c)]
        rows.append({
            "dataset": dataset,
            "vendor": _distinct(g["vendor"].tolist() if "vendor" in g else []),
            "field_strength_t": _distinct(fs.tolist(), fmt=_fmt, by_value=True),
            "te_ms": _median_range(numeric_column(g, "te_ms")),
            "tr_ms": _median_range(numeric_column(g, "tr_ms")),
            "flip_angle_deg": _median_range(numeric_column(g, "flip_angle_deg")),
            "slice_thickness_mm": _median_range(numeric_column(g, "slice_thickness_mm")),
            "pixel_spacing_mm": _median_range(numeric_column(g, "pixel_spacing_mm")),
            "matrix": _distinct(matrix, max_items=3),
            "acquisition": _distinct(g["acquisition"].tolist()),
            "protocol_type": _distinct(g["protocol_type"].tolist()),
        })
    return pd.DataFrame(rows)
