"""Reading the prepared metadata tables (written by ``prepare``)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mskseg_lib.data.errors import DataError

SUBJECTS_PARQUET = "subjects.parquet"
SLICES_PARQUET = "slices.parquet"


def load_tables(prepared_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The subjects and slices tables that ``prepare_all`` wrote to ``prepared_dir``.

    Parameters
    ----------
    prepared_dir : Path
        The prepared folder (holding ``subjects.parquet`` and ``slices.parquet``).

    Returns
    -------
    subjects, slices : DataFrame
        One row per prepared subject (demographics, protocol, split, paths of its NIfTIs and
        slice stacks) and one row per processed slice (spacing, labels, boxes, pixel counts).

    Raises
    ------
    DataError
        A table is missing (``prepare`` has not run) or was written by an older version.
    """
    root = Path(prepared_dir)
    paths = [root / SUBJECTS_PARQUET, root / SLICES_PARQUET]
    for p in paths:
        if not p.exists():
            raise DataError(p, "prepared table missing: run `mskseg prepare --profile NAME` (or notebook 01) first")
    subjects, slices = pd.read_parquet(paths[0]), pd.read_parquet(paths[1])
    if "resize_mode" not in slices.columns:  # written before the study's straight resize became the default
        raise DataError(paths[1], "prepared with an older version (padded slices, no resize_mode column): "
                                  "run `mskseg prepare --profile NAME` (or notebook 01) again")
    return subjects, slices


def slice_boxes_of(row: pd.Series, instances: bool = False) -> dict[int, list]:
    """Boxes of one slice-table row, keyed by label value (instance lists if ``instances``)."""
    raw = row["instance_boxes_json" if instances else "boxes_json"]
    return {int(k): v for k, v in json.loads(raw).items()}
