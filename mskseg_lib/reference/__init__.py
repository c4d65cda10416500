"""Published numbers of the study, kept as package data for side-by-side tables.

Every loader returns a long table with the study's values as printed (see ``README.md`` for
where each number comes from in the text). They are facts to show beside regenerated numbers,
never targets.
"""
from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import numpy

# arm prefix in the CSV -> the zoo's display name
PUBLISHED_MODELS = {"sam": "SAM ViT-B", "sam2": "SAM2 hiera-b+", "medsam": "MedSAM ViT-B"}
# the study's three zero-shot arms as zoo keys -> display names (the models of S3-S5 and Table 1)
STUDY_MODELS = {"sam_vit_b": "SAM ViT-B", "sam2_hiera_base_plus": "SAM2 hiera-b+",
                "medsam_vit_b": "MedSAM ViT-B"}
_PREFIX_TO_KEY = {"sam": "sam_vit_b", "sam2": "sam2_hiera_base_plus", "medsam": "medsam_vit_b"}
SUSPECT_ROWS = {"Spine_2D_T1ax_Clinical_Anatomical_59":
                "published row repeats Knee_3D_DESS_86 value for value (probable copy error)"}
# Table 1, tier 2: the one dataset whose printed Mean Tissue is not the mean of its tissue columns
T1SAG_111 = "Spine_2D_T1sag_Clinical_Anatomical_111"
MEAN_TISSUE = "mean_tissue"


def published_values(published: pd.DataFrame, rows: pd.DataFrame, keys: list[str], model_key: str,
                     setting: str) -> "numpy.ndarray":
    """The published Dice of ``model_key`` under ``setting`` for each row of ``rows``, matched on
    ``keys`` (e.g. ``["dataset"]``, ``["dataset", "label_name"]``); NaN where the study has none.

    ``published`` is one of the long Table 1 loaders below (model_key, setting, dice, keys).
    """
    import numpy as np

    if rows.empty:
        return np.array([], dtype=float)
    p = published[(published["model_key"] == model_key) & (published["setting"] == setting)]
    p = p.drop_duplicates(keys).set_index(keys)["dice"]
    idx = (pd.Index(rows[keys[0]].astype(object)) if len(keys) == 1
           else pd.MultiIndex.from_frame(rows[keys].astype(object)))
    return p.reindex(idx).to_numpy(dtype=float)


def _read(name: str) -> pd.DataFrame:
    with resources.files(__name__).joinpath(name).open() as fh:
        return pd.read_csv(fh, keep_default_na=False, na_values=[""])


def published_table1() -> pd.DataFrame:
    """Table 1, tier 1 (dataset level), long: dataset, model_key, model (display name),
    setting (``zero-shot`` / ``finetuned``), dice, note (the copy-error flag of
    Spine_2D_T1ax_59, else empty)."""
    wide = _read("paper_table1_dice.csv")
    rows = []
    for _, r in wide.iterrows():
        for key, model in PUBLISHED_MODELS.items():
            for col, setting in ((f"{key}_base", "zero-shot"), (f"{key}_finetuned", "finetuned")):
                rows.append({"dataset": r["dataset"], "model_key": _PREFIX_TO_KEY[key], "model": model,
                             "setting": setting, "dice": float(r[col]),
                             "note": SUSPECT_ROWS.get(r["dataset"], "")})
    return pd.DataFrame(rows)


def published_table1_tissues() -> pd.DataFrame:
    """Table 1, tier 2 (dataset x tissue class), long: dataset, tissue_class (``mean_tissue``
    for the printed "Mean Tissue" column), experiment (as printed: SAM, SAM2, MedSAM, mskSAM2),
    model_key, setting (``zero-shot``; ``finetuned`` for mskSAM2, the all-MSK finetune of
    SAM2), dice, note (the Spine_2D_T1sag_111 inconsistency on its Mean Tissue rows)."""
    out = _read("paper_table1_tissues.csv")
    out["note"] = out["note"].fillna("")
    return out


def published_table1_labels() -> pd.DataFrame:
    """Table 1, tier 3 (label level of knee DESS, undersampled knee CUBE and thigh), long:
    dataset, label_name (the catalog's name; ``mean_tissue`` for the printed "Mean Tissue"),
    printed_label, experiment, model_key, setting (``zero-shot``, ``finetuned`` for mskSAM2,
    ``finetuned_muscle_mix`` for the thigh's mixed_Muscle_SAM), dice (4 decimals as printed)."""
    return _read("paper_table1_labels.csv")


def published_zero_shot_tests() -> pd.DataFrame:
    """The zero-shot test results printed in the text (Results, figure 3): dataset, test
    (``friedman`` across SAM, SAM2, MedSAM / ``wilcoxon`` for one pair), arms, arm_a, arm_b,
    p_value, p_printed (as printed), text_line (line of the study's text file), note."""
    out = _read("paper_zero_shot_tests.csv")
    for c in ("arms", "arm_a", "arm_b", "note"):
        out[c] = out[c].fillna("")
    return out


def published_video3d() -> pd.DataFrame:
    """The published anchor of SAM2's video predictor on 3D knee MRI (slices as frames).

    Columns: scheme (this project's key), study_scheme (as the study names it), dataset,
    structures, n_volumes, matrix, statistic, dice (NaN where only a qualitative finding is
    published), note.
    """
    with resources.files(__name__).joinpath("paper_video3d.csv").open() as fh:
        return pd.read_csv(fh)
