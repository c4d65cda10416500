"""Where raw subjects come from: the synthetic cohort, site manifests, the real spine fixture.

Every source becomes rows of one *raw manifest* (columns in ``cohort.MANIFEST_COLUMNS``) with
absolute paths, so ``prepare`` has one code path for all data. A site manifest is a CSV with
at least ``dataset, subject_id, image_format, image_path, mask_format, mask_path``; relative
paths are taken from the CSV's folder; demographic and protocol columns are optional (DICOM
headers fill them). ``collect_sources`` joins the synthetic cohort's manifest and any number of
:class:`RawSource` entries (site manifests, real spine folders) into one table.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from mskseg_lib.data.catalog import REAL_SPINE
from mskseg_lib.data.cohort import MANIFEST_COLUMNS
from mskseg_lib.data.errors import DataError, SettingsError

REQUIRED = ("dataset", "subject_id", "image_format", "image_path", "mask_format", "mask_path")
SOURCE_KINDS = ("real_spine", "manifest")


@dataclass(frozen=True)
class RawSource:
    """Raw data besides the synthetic cohort: a site manifest CSV (``kind="manifest"``) or a
    folder of real spine volumes (``kind="real_spine"``), at an absolute ``path``."""

    kind: str
    path: Path

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise SettingsError(f"unknown source type {self.kind!r} (use {' or '.join(SOURCE_KINDS)})")


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


def collect_sources(cohort_manifest: Path | None = None, sources: Sequence[RawSource] = (),
                    notes: list[str] | None = None) -> pd.DataFrame:
    """All raw subjects: the cohort's manifest (if any) plus each source, as one raw manifest.

    Parameters
    ----------
    cohort_manifest : Path or None
        ``manifest.csv`` of a generated synthetic cohort (:func:`.cohort.generate_cohort`).
    sources : sequence of RawSource
        Site manifests and real spine folders, in order.
    notes : list of str, optional
        A source whose file or folder is absent is left out with a note appended here (and
        recorded by ``prepare_all`` in skipped.csv), never silently.

    Returns
    -------
    DataFrame
        One row per subject, columns ``MANIFEST_COLUMNS``, absolute paths.
    """
    notes = [] if notes is None else notes
    frames = [read_manifest(Path(cohort_manifest))] if cohort_manifest is not None else []
    for src in sources:
        path = Path(src.path)
        if src.kind == "real_spine":
            if not path.is_dir():
                notes.append(f"{path}: real spine fixture not found; its subjects are not prepared")
                continue
            frames.append(real_spine_manifest(path))
        else:
            if not path.exists():
                notes.append(f"{path}: manifest not found; its subjects are not prepared")
                continue
            frames.append(read_manifest(path))
    if not frames:
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    return pd.concat(frames, ignore_index=True)[MANIFEST_COLUMNS]


__all__ = ["RawSource", "collect_sources", "read_manifest", "real_spine_manifest"]
