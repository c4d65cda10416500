"""Published numbers of the study, kept as package data for side-by-side tables."""
from __future__ import annotations

from importlib import resources

import pandas as pd

# arm prefix in the CSV -> the zoo's display name
PUBLISHED_MODELS = {"sam": "SAM ViT-B", "sam2": "SAM2 hiera-b+", "medsam": "MedSAM ViT-B"}
SUSPECT_ROWS = {"Spine_2D_T1ax_Clinical_Anatomical_59": "printed identical to Knee_3D_DESS_86 (probable copy error)"}


def published_table1() -> pd.DataFrame:
    """Long table: dataset, model (display name), setting (zero-shot / finetuned), dice, note."""
    with resources.files(__name__).joinpath("paper_table1_dice.csv").open() as fh:
        wide = pd.read_csv(fh)
    rows = []
    for _, r in wide.iterrows():
        for key, model in PUBLISHED_MODELS.items():
            for col, setting in ((f"{key}_base", "zero-shot"), (f"{key}_finetuned", "finetuned")):
                rows.append({"dataset": r["dataset"], "model": model, "setting": setting, "dice": float(r[col]),
                             "note": SUSPECT_ROWS.get(r["dataset"], "")})
    return pd.DataFrame(rows)


def published_video3d() -> pd.DataFrame:
    """The published anchor of SAM2's video predictor on 3D knee MRI (slices as frames).

    Columns: scheme (this project's key), study_scheme (as the study names it), dataset,
    structures, n_volumes, matrix, statistic, dice (NaN where only a qualitative finding is
    published), note.
    """
    with resources.files(__name__).joinpath("paper_video3d.csv").open() as fh:
        return pd.read_csv(fh)
