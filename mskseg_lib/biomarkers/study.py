"""Notebook 05's measurements: every biomarker of every subject from manual and predicted masks.

For each prepared subject the manual mask is measured, and so is each predicted label volume
(same grid, same relaxation maps), with :func:`.cohort_truth.measure_for_truth`: thickness
(femoral, tibial, patellar), T2 and T1rho per compartment, disc height, and the volume of every
label. Where the synthetic cohort knows the truth it is put beside them.

Which finetuned model predicts a dataset: among finished experiments trained on it, the one with
the best validation Dice during training (``history``), so the choice never looks at the test
subjects whose biomarkers are then compared.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from mskseg_lib.biomarkers.cohort_truth import (SubjectArrays, is_axial_disc_dataset, load_prepared_subject,
                                                 measure_for_truth)
from mskseg_lib.data.catalog import get_dataset

UNITS = {"thickness_mm": "mm", "volume_cm3": "cm3", "t2_ms": "ms", "t1rho_ms": "ms", "disc_height_mm": "mm"}
LONG_COLUMNS = ["dataset", "subject_id", "source", "biomarker", "structure", "value", "reason"]


def measure_subject(subject: Mapping, labels: np.ndarray | None = None, source: str = "manual",
                    arrays: SubjectArrays | None = None) -> pd.DataFrame:
    """Every biomarker of one prepared subject, from its manual mask or from ``labels`` (a
    predicted label volume on the mask's grid); long table (:data:`LONG_COLUMNS`).

    ``arrays`` (the subject's loaded mask and maps) saves reading them again per source.
    """
    arrays = arrays if arrays is not None else load_prepared_subject(subject)
    volume = arrays.labels
    if labels is not None:
        if labels.shape != volume.shape:
            raise ValueError(f"{subject['dataset']}/{subject['subject_id']}: predicted volume {labels.shape} is not "
                             f"on the mask's grid {volume.shape}")
        volume = labels.astype(np.int16)
    spec = get_dataset(str(subject["dataset"]))
    measured = measure_for_truth(volume, arrays.spacing_mm, arrays.label_values, arrays.slice_axis, arrays.maps,
                                 through_slices=is_axial_disc_dataset(spec))
    measured = measured.rename(columns={"measured": "value"})
    measured.insert(0, "source", source)
    measured.insert(0, "subject_id", str(subject["subject_id"]))
    measured.insert(0, "dataset", str(subject["dataset"]))
    return measured[LONG_COLUMNS]


def truth_rows(truth: Mapping[str, Mapping], subjects: pd.DataFrame) -> pd.DataFrame:
    """The cohort's true values of these subjects as ``source == "truth"`` rows."""
    rows = []
    for s in subjects.itertuples():
        entry = truth.get(f"{s.dataset}/{s.subject_id}") or {}
        for biomarker in UNITS:
            for structure, value in (entry.get(biomarker) or {}).items():
                rows.append({"dataset": s.dataset, "subject_id": s.subject_id, "source": "truth",
                             "biomarker": biomarker, "structure": structure, "value": float(value), "reason": ""})
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def measure_all(subjects: pd.DataFrame, predictors: Mapping[str, Callable[[Mapping], np.ndarray | None]],
                progress: bool = True) -> pd.DataFrame:
    """Manual and predicted biomarkers of every subject. ``predictors`` maps a source name to a
    function returning the subject's predicted label volume (``None``: no prediction, skipped)."""
    from tqdm.auto import tqdm

    parts = []
    for s in tqdm(subjects.to_dict("records"), desc="biomarkers", disable=not progress):
        arrays = load_prepared_subject(s)  # mask and maps read once, shared by every source
        parts.append(measure_subject(s, arrays=arrays))
        for source, predict in predictors.items():
            volume = predict(s)
            if volume is not None:
                parts.append(measure_subject(s, volume, source, arrays=arrays))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LONG_COLUMNS)


def paired(long: pd.DataFrame, predicted: str, with_truth: bool = True) -> pd.DataFrame:
    """One row per (dataset, subject, biomarker, structure): ``manual``, ``predicted`` (the
    named source) and ``truth``; ``subject`` is ``dataset/subject_id`` (unique across datasets)."""
    keys = ["dataset", "subject_id", "biomarker", "structure"]
    wide = long.pivot_table(index=keys, columns="source", values="value", aggfunc="first", dropna=False)
    out = pd.DataFrame(index=wide.index)
    out["manual"] = wide["manual"] if "manual" in wide else np.nan
    out["predicted"] = wide[predicted] if predicted in wide else np.nan
    if with_truth:
        out["truth"] = wide["truth"] if "truth" in wide else np.nan
    out = out.reset_index()
    out = out[out["manual"].notna() | out["predicted"].notna()]
    out.insert(0, "subject", out["dataset"] + "/" + out["subject_id"])
    return out.reset_index(drop=True)


def best_experiment_per_dataset(experiments: pd.DataFrame, history: pd.DataFrame,
                                datasets: Sequence[str]) -> dict[str, str]:
    """Dataset -> the finished experiment trained on it with the highest validation Dice."""
    finished = experiments[experiments["status"] == "finished"]
    if finished.empty or history.empty:
        return {}
    best_val = history.groupby("experiment_id")["val_dice"].max()
    out = {}
    for d in datasets:
        trained = finished[finished["train_datasets"].astype(str).str.split(",").apply(lambda names: d in names)]
        scores = best_val.reindex(trained["experiment_id"]).dropna()
        if not scores.empty:
            out[d] = str(scores.idxmax())
    return out


def safe_structure(name: str) -> str:
    """A structure name usable in a table file name."""
    import re

    return re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_")
