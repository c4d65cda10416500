"""Same seed, same data: two fresh preparations of a profile give identical tables and arrays;
another seed gives another cohort. (The whole-run version: ``test_kill_resume.py`` compares a
killed-and-resumed run with an uninterrupted one, stage by stage, value by value.)"""
from __future__ import annotations

import copy
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from mskseg_lib.from_profile import data as fp_data


def _prepared(cfg: dict, base: Path, seed: int) -> Path:
    cfg = copy.deepcopy(cfg)
    cfg["seed"] = seed
    cfg["paths"] = {k: str(base / k) for k in cfg["paths"]}
    fp_data.prepare(cfg, progress=False)
    return base / "data_root"


def _arrays(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): np.asarray(nib.load(str(p)).dataobj) for p in sorted(root.rglob("*.nii.gz"))}


def test_same_seed_same_cohort_and_tables_other_seed_other_cohort(tiny_cfg, tmp_path):
    a = _prepared(tiny_cfg, tmp_path / "a", 7)
    b = _prepared(tiny_cfg, tmp_path / "b", 7)
    c = _prepared(tiny_cfg, tmp_path / "c", 8)
    tables = ["prepared/subjects.parquet", "prepared/slices.parquet"]
    for name in tables:
        ta, tb = pd.read_parquet(a / name), pd.read_parquet(b / name)
        for frame, root in ((ta, a), (tb, b)):  # the folders differ by name only
            for col in frame.select_dtypes(include="object").columns:
                frame[col] = frame[col].astype(str).str.replace(str(root), "<root>", regex=False)
        pd.testing.assert_frame_equal(ta, tb)
    arr_a, arr_b, arr_c = _arrays(a), _arrays(b), _arrays(c)
    assert arr_a.keys() == arr_b.keys() and len(arr_a) > 0
    assert all(np.array_equal(arr_a[k], arr_b[k]) for k in arr_a)
    subjects_a = pd.read_parquet(a / "prepared/subjects.parquet")
    subjects_c = pd.read_parquet(c / "prepared/subjects.parquet")
    assert not np.allclose(subjects_a["age_years"].to_numpy(), subjects_c["age_years"].to_numpy())
    shared = [k for k in arr_a if k in arr_c and arr_a[k].shape == arr_c[k].shape]
    assert not all(np.array_equal(arr_a[k], arr_c[k]) for k in shared)
