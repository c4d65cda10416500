"""Reading the prepared metadata tables (written by ``prepare``)."""
from __future__ import annotations

import json

import pandas as pd

from mskseg_lib.data.errors import DataError
from mskseg_lib.data.prepare import prepared_dir


def load_tables(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Subject and slice tables of a profile; a clear error if ``prepare`` has not run."""
    root = prepared_dir(cfg)
    paths = [root / "subjects.parquet", root / "slices.parquet"]
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
