"""Where raw subjects come from: the synthetic cohort, site manifests, the real spine fixture.

Every source becomes rows of one *raw manifest* (columns in ``cohort.MANIFEST_COLUMNS``) with
absolute paths, so ``prepare`` has one code path for all data. A site manifest is a CSV with
at least ``dataset, subject_id, image_format, image_path, mask_format, mask_path``; relative
paths are taken from the CSV's folder; demographic and protocol columns are optional (DICOM
headers fill them).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from mskseg_lib.config import project_root
from mskseg_lib.data.catalog import REAL_SPINE
from mskseg_lib.data.cohort import MANIFEST_COLUMNS, cohort_dir, generate_cohort
from mskseg_lib.data.errors import DataError

REQUIRED = ("dataset", "subject_id", "image_format", "image_path", "mask_format", "mask_path")


def _absolute(df: pd.DataFrame, base: Path) -> pd.DataFrame:
    df = df.copy()
    for col in ("image_path", "mask_path"):
        df[col] = [str(p if Path(p).is_absolute() else (base / p)) for p in df[col]]

    def maps_abs(m: object) -> str:
        if not isinstance(m, str) or not m.strip():
            return ""
        d = json.loads(m)
        for v in d.values():
            v["path"] = str(v["path"] if Path(v["path"]).is_absolute() else base / v["path"])
        return json.dumps(d)

    df["maps"] = df["maps"].map(maps_abs) if "maps" in df else ""
    return df


def read_manifest(path: Path) -> pd.DataFrame:
    """A raw manifest CSV with paths made absolute; clear errors for missing columns."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "manifest file not found")
    try:
        df = pd.read_csv(path, dtype={"subject_id": str})
    except Exception as exc:  # pandas raises many types for broken CSV
        raise DataError(path, f"not a readable CSV manifest ({exc})") from exc
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(path, f"manifest lacks columns {missing} (has {list(df.columns)})")
    for col in MANIFEST_COLUMNS:
        if col not in df.columns:
            df[col] = None
    if "source" not in df or df["source"].isna().all():
        df["source"] = "manifest"
    return _absolute(df, path.parent)


def real_spine_manifest(root: Path) -> pd.DataFrame:
    """Rows for ``vb3_NN_image.nii.gz`` / ``vb3_NN_labels.nii.gz`` pairs in the fixture folder."""
    rows = []
    for image in sorted(Path(root).glob("*_image.nii.gz")):
        m = re.match(r"(.+)_image\.nii\.gz$", image.name)
        labels = image.with_name(f"{m.group(1)}_labels.nii.gz")
        rows.append({"dataset": REAL_SPINE.name, "subject_id": m.group(1), "source": "real",
                     "image_format": "nifti", "image_path": str(image), "mask_format": "nifti",
                     "mask_path": str(labels), "maps": "", "field_strength_t": 3.0,
                     "vendor": REAL_SPINE.protocol.vendor})
    df = pd.DataFrame(rows)
    for col in MANIFEST_COLUMNS:
        if col not in df.columns:
            df[col] = None
    return df


def collect_sources(cfg: dict, notes: list[str] | None = None) -> pd.DataFrame:
    """All raw subjects of a profile: the cohort (generated if needed) plus ``sources``.

    A source whose folder is absent is left out with a note appended to ``notes`` (and
    recorded by ``prepare`` in skipped.csv), never silently.
    """
    notes = [] if notes is None else notes
    frames = []
    if cfg["cohort"]["enabled"]:
        manifest = generate_cohort(cfg)
        frames.append(read_manifest(manifest))
    for src in cfg["sources"]:
        kind = src.get("type")
        if kind == "real_spine":
            root = Path(src["root"]).expanduser()
            root = root if root.is_absolute() else project_root() / root
            if not root.is_dir():
                notes.append(f"{root}: real spine fixture not found; its subjects are not prepared")
                continue
            frames.append(real_spine_manifest(root))
        elif kind == "manifest":
            path = Path(src["path"]).expanduser()
            path = path if path.is_absolute() else project_root() / path
            if not path.exists():
                notes.append(f"{path}: manifest not found; its subjects are not prepared")
                continue
            frames.append(read_manifest(path))
        else:
            raise DataError(Path("params"), f"unknown source type {kind!r} in 'sources' (use real_spine or manifest)")
    if not frames:
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    return pd.concat(frames, ignore_index=True)[MANIFEST_COLUMNS]


__all__ = ["collect_sources", "read_manifest", "real_spine_manifest", "cohort_dir"]
