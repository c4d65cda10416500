"""``prepare``: raw subjects -> canonical NIfTI, model-ready slices, metadata tables, YOLO export.

Per subject (``prepare_subject``):

1. read the image (DICOM series, NIfTI, NPZ, HDF5, MATLAB) and mask (multi-class or one file
   per label), checking: readable files, finite intensities, same grid, known label values,
   non-empty mask. Each problem is a ``DataError`` naming the file;
2. reorient both to canonical RAS (spacing and orientation live in the affine and are kept);
3. drop configured labels; remove components under ``min_component_voxels`` in 3D and under
   ``min_component_px`` per slice;
4. clip intensities to percentiles of non-zero voxels (the study's 1st-99th by default), scale
   to uint8;
5. every slice with a label (a *processed* slice) is rotated to display orientation, resized to
   each model size (``prepare.resize``: straight to the square with a cubic spline, the
   study's, or aspect kept and padded) and stored as one uint8 stack per subject and size
   (``slice_store``); its boxes (per label and per instance, original-slice pixels), pixel
   counts and the resize mode go to the slice table, so readers rebuild the geometry
   (``preprocess.geometry_of``) without the profile.

Each subject is written to a temporary folder and renamed when complete, with ``record.json``
last, so a crash never leaves half-written output and a rerun skips finished subjects (unless
the preparation settings, including the clip percentiles and the resize mode, changed). Splits,
tables and the YOLO export are then rebuilt from the records, which is cheap.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mskseg_lib.atomic import save_csv, save_parquet, write_json
from mskseg_lib.config import resolve_path
from mskseg_lib.data import raw_io
from mskseg_lib.data.boxes import slice_boxes
from mskseg_lib.data.catalog import DatasetSpec, get_dataset
from mskseg_lib.data.dicom_io import read_dicom_series
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.preprocess import check_resize_mode, clean_mask_volume, clip_to_uint8, resize_slice, to_display
from mskseg_lib.data.sources import collect_sources
from mskseg_lib.data.splits import stratified_split
from mskseg_lib.data.volume import Volume, check_finite, check_labels, check_same_grid, to_canonical

log = logging.getLogger(__name__)
SUBJECT_FIELDS = ("sex", "age_years", "weight_kg", "height_m", "bmi", "vendor", "field_strength_t", "te_ms",
                  "tr_ms", "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm")


@dataclass(frozen=True)
class Prepared:
    """Paths of a finished ``prepare`` run."""

    root: Path
    subjects_parquet: Path
    slices_parquet: Path
    summary_csv: Path
    skipped_csv: Path
    yolo_dir: Path | None
    n_subjects: int
    n_slices: int
    seconds: float


def prepared_dir(cfg: dict) -> Path:
    return resolve_path(cfg, "data_root") / "prepared"


def subject_dir(cfg: dict, dataset: str, subject_id: str) -> Path:
    return prepared_dir(cfg) / "subjects" / dataset / subject_id


def _settings(cfg: dict, dataset: str) -> dict:
    p = cfg["prepare"]
    per = p["per_dataset"].get(dataset, {}) or {}
    unknown = set(per) - {"min_component_px", "min_component_voxels", "clip_percentiles"}
    if unknown:
        raise DataError(Path("params"), f"prepare.per_dataset.{dataset}: unknown keys {sorted(unknown)}")
    lo_hi = list(per.get("clip_percentiles", p["clip_percentiles"]))
    if len(lo_hi) != 2 or not 0 <= float(lo_hi[0]) < float(lo_hi[1]) <= 100:
        raise DataError(Path("params"), f"prepare.per_dataset.{dataset}.clip_percentiles must be [low, high] "
                                        f"with 0 <= low < high <= 100, got {lo_hi}")
    return {
        "min_component_px": int(per.get("min_component_px", p["min_component_px"])),
        "min_component_voxels": int(per.get("min_component_voxels", p["min_component_voxels"])),
        "clip_percentiles": list(per.get("clip_percentiles", p["clip_percentiles"])),
        "drop_labels": list(p["drop_labels"].get(dataset, []) or []),
        "slice_sizes_px": [int(s) for s in p["slice_sizes_px"]],
        "resize_mode": check_resize_mode(str(p["resize"])),
    }


def clip_percentiles_for(cfg: dict, dataset: str) -> tuple[float, float]:
    """The intensity clipping ``prepare`` uses for ``dataset`` (a ``per_dataset`` override honoured)."""
    lo, hi = _settings(cfg, dataset)["clip_percentiles"]
    return float(lo), float(hi)


def resize_mode_for(cfg: dict) -> str:
    """``prepare.resize`` of a profile: ``"stretch"`` (the study's) or ``"pad"``."""
    return check_resize_mode(str(cfg["prepare"]["resize"]))


def _fingerprint(row: dict, settings: dict) -> str:
    # version 2: the study's spline resize, truncating uint8 conversion and the resize mode
    blob = json.dumps({"row": row, "settings": settings, "version": 2}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- reading
def read_subject(row: dict, spec: DatasetSpec) -> tuple[Volume, Volume]:
    """Image and mask volumes of one manifest row, validated, in their stored orientation."""
    img_path = Path(row["image_path"])
    if row["image_format"] == "dicom":
        image = read_dicom_series(img_path)
    else:
        image = raw_io.read_image(row["image_format"], img_path)
    if image.data.ndim != 3:
        raise DataError(img_path, f"image must be 3D, got shape {image.data.shape}")
    check_finite(image)
    mask = raw_io.read_mask(row["mask_format"], Path(row["mask_path"]), spec.label_values())
    check_same_grid(image, mask, what="mask")
    check_labels(mask, spec.label_values().values())
    return image, mask


def _subject_fields(row: dict, image: Volume, spacing_ras: tuple[float, float, float], axis: int) -> dict:
    """Demographics and protocol: manifest values, else DICOM header values, else the affine."""
    header = image.header or {}
    out = {}
    for key in SUBJECT_FIELDS:
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            value = header.get("manufacturer" if key == "vendor" else key)
        if isinstance(value, (list, tuple)):  # DICOM PixelSpacing is (row, col)
            value = float(np.mean([float(v) for v in value]))
        out[key] = value
    in_plane = [spacing_ras[a] for a in range(3) if a != axis]
    if out["pixel_spacing_mm"] is None:
        out["pixel_spacing_mm"] = float(np.mean(in_plane))
    if out["slice_thickness_mm"] is None:
        out["slice_thickness_mm"] = float(spacing_ras[axis])
    if out["bmi"] is None and out["weight_kg"] is not None and out["height_m"]:
        out["bmi"] = round(float(out["weight_kg"]) / float(out["height_m"]) ** 2, 1)
    return out


# ----------------------------------------------------------------------------- one subject
def prepare_subject(row: dict, cfg: dict) -> dict:
    """Prepare one raw subject; returns its record (subject row + slice rows). Idempotent."""
    spec = get_dataset(row["dataset"])
    settings = _settings(cfg, spec.name)
    final = subject_dir(cfg, spec.name, row["subject_id"])
    fp = _fingerprint(row, settings)
    record_path = final / "record.json"
    if record_path.exists():
        rec = json.loads(record_path.read_text())
        if rec.get("fingerprint") == fp:
            return rec
    t0 = time.perf_counter()
    image, mask = read_subject(row, spec)
    image, mask = to_canonical(image), to_canonical(mask)
    axis = spec.slice_axis_canonical
    labels = mask.data.astype(np.int16)
    names = spec.label_names()
    for name in settings["drop_labels"]:
        labels[labels == spec.label_values()[name]] = 0
    labels = clean_mask_volume(labels, axis, settings["min_component_voxels"], settings["min_component_px"])
    if not labels.any():
        raise DataError(Path(row["mask_path"]), "mask is empty after dropping labels and removing small components")
    img8 = clip_to_uint8(image.data, tuple(settings["clip_percentiles"]))
    spacing = tuple(float(s) for s in np.linalg.norm(image.affine[:3, :3], axis=0))
    in_plane_axes = [a for a in range(3) if a != axis]  # display rows follow the 2nd, cols the 1st
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        raw_io.write_nifti(tmp / "image.nii.gz", image.data.astype(np.float32), image.affine)
        raw_io.write_nifti(tmp / "mask.nii.gz", labels.astype(np.uint8 if labels.max() < 256 else np.int16), image.affine)
        maps = json.loads(row["maps"]) if isinstance(row.get("maps"), str) and row["maps"] else {}
        for key, ref in maps.items():
            vol = to_canonical(raw_io.read_array(ref["format"], Path(ref["path"]), ref["key"]))
            check_same_grid(image, vol, what=key)
            raw_io.write_nifti(tmp / f"{key}.nii.gz", vol.data.astype(np.float32), vol.affine)
        slice_rows, stacks_img, stacks_msk = [], {s: [] for s in settings["slice_sizes_px"]}, {s: [] for s in settings["slice_sizes_px"]}
        lab_moved = np.moveaxis(labels, axis, 0)
        img_moved = np.moveaxis(img8, axis, 0)
        for k in range(lab_moved.shape[0]):
            if not lab_moved[k].any():
                continue
            lab2d = to_display(lab_moved[k])
            img2d = to_display(img_moved[k])
            boxes, inst, counts = slice_boxes(lab2d)
            mode = settings["resize_mode"]
            for size in settings["slice_sizes_px"]:
                stacks_img[size].append(resize_slice(img2d, size, resize_mode=mode))
                stacks_msk[size].append(resize_slice(lab2d.astype(np.uint8), size, is_mask=True, resize_mode=mode))
            slice_rows.append({
                "dataset": spec.name, "subject_id": row["subject_id"], "slice_index": k,
                "store_index": len(slice_rows), "rows_px": lab2d.shape[0], "cols_px": lab2d.shape[1],
                "resize_mode": settings["resize_mode"],
                "pixel_spacing_row_mm": spacing[in_plane_axes[1]], "pixel_spacing_col_mm": spacing[in_plane_axes[0]],
                "slice_thickness_mm": spacing[axis],
                "labels_present": json.dumps(sorted(boxes)),
                "boxes_json": json.dumps({str(v): b for v, b in boxes.items()}),
                "instance_boxes_json": json.dumps({str(v): b for v, b in inst.items()}),
                "voxel_counts_json": json.dumps({str(v): c for v, c in counts.items()}),
            })
        for size in settings["slice_sizes_px"]:
            np.save(tmp / f"slices_{size}_image.npy", np.stack(stacks_img[size]))
            np.save(tmp / f"slices_{size}_mask.npy", np.stack(stacks_msk[size]))
        fields = _subject_fields(row, image, spacing, axis)
        subject = {
            "dataset": spec.name, "subject_id": row["subject_id"], "source": row.get("source") or "manifest",
            "anatomy": spec.anatomy, "plane": spec.plane, "acquisition": spec.acquisition,
            "sequence": spec.sequence_name, "protocol_type": spec.protocol_type, "task": spec.task, **fields,
            "rows_px": int(image.data.shape[in_plane_axes[1]]), "cols_px": int(image.data.shape[in_plane_axes[0]]),
            "n_slices": int(labels.shape[axis]), "n_processed_slices": len(slice_rows), "slice_axis": axis,
            "resize_mode": settings["resize_mode"], "clip_percentiles": json.dumps(settings["clip_percentiles"]),
            "labels_present": json.dumps(sorted(int(v) for v in np.unique(labels) if v)),
            "label_names": json.dumps({str(v): n for v, n in names.items()}),
            "voxel_counts_json": json.dumps({str(int(v)): int(c) for v, c in zip(*np.unique(labels, return_counts=True)) if v}),
            "voxel_volume_mm3": float(np.prod(spacing)), "raw_image_path": row["image_path"],
            "raw_mask_path": row["mask_path"], "maps": json.dumps(sorted(maps)),
        }
        record = {"fingerprint": fp, "subject": subject, "slices": slice_rows,
                  "seconds": round(time.perf_counter() - t0, 3), "settings": settings}
        (tmp / "record.json").write_text(json.dumps(record, default=_json_default))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return str(obj)


# ----------------------------------------------------------------------------- tables
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


def assign_splits(subjects: pd.DataFrame, cfg: dict) -> pd.Series:
    """Stratified 70/15/15 (profile) split of subjects, separately within each dataset."""
    p = cfg["prepare"]
    parts = [stratified_split(g, p["split_fractions"], p["stratify_by"], seed=cfg["seed"])
             for _, g in subjects.groupby("dataset", sort=False)]
    return pd.concat(parts).reindex(subjects.index)


# ----------------------------------------------------------------------------- everything
def prepare_all(cfg: dict, progress: bool = True) -> Prepared:
    """Prepare every subject of the profile's sources; write tables, summary, YOLO export."""
    t0 = time.perf_counter()
    root = prepared_dir(cfg)
    notes: list[str] = []
    sources = collect_sources(cfg, notes)
    skipped = [{"dataset": None, "subject_id": None, "file": n.split(":")[0], "problem": n} for n in notes]
    records = []
    for row in tqdm(sources.to_dict("records"), desc="prepare", unit="subject", disable=not progress):
        try:
            records.append(prepare_subject(row, cfg))
        except DataError as err:
            if cfg["prepare"]["on_bad_input"] != "skip":
                raise
            log.warning("skipped %s/%s: %s", row["dataset"], row["subject_id"], err)
            skipped.append({"dataset": row["dataset"], "subject_id": row["subject_id"],
                            "file": str(err.path), "problem": err.problem})
    if not records:
        raise DataError(root, "no subject could be prepared (see the errors above)")
    subjects = pd.DataFrame([r["subject"] for r in records])
    subjects["split"] = assign_splits(subjects, cfg)
    for size in cfg["prepare"]["slice_sizes_px"]:
        for kind in ("image", "mask"):
            subjects[f"slices_{size}_{kind}"] = [
                str(subject_dir(cfg, d, s) / f"slices_{size}_{kind}.npy") for d, s in zip(subjects.dataset, subjects.subject_id)]
    subjects["image_nifti"] = [str(subject_dir(cfg, d, s) / "image.nii.gz") for d, s in zip(subjects.dataset, subjects.subject_id)]
    subjects["mask_nifti"] = [str(subject_dir(cfg, d, s) / "mask.nii.gz") for d, s in zip(subjects.dataset, subjects.subject_id)]
    slices = pd.DataFrame([s for r in records for s in r["slices"]])
    slices = slices.merge(subjects[["dataset", "subject_id", "split"]], on=["dataset", "subject_id"], how="left")
    for col in ("age_years", "weight_kg", "height_m", "bmi", "field_strength_t", "te_ms", "tr_ms",
                "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm"):
        subjects[col] = pd.to_numeric(subjects[col], errors="coerce")
    subjects["sex"] = subjects["sex"].where(subjects["sex"].isin(["F", "M"]), None)
    paths = {
        "subjects": save_parquet(subjects, root / "subjects.parquet"),
        "slices": save_parquet(slices, root / "slices.parquet"),
        "summary": save_csv(dataset_summary(subjects), root / "dataset_summary.csv"),
        "skipped": save_csv(pd.DataFrame(skipped, columns=["dataset", "subject_id", "file", "problem"]), root / "skipped.csv"),
    }
    yolo_dir = None
    if cfg["prepare"]["yolo_export"]:
        from mskseg_lib.data.yolo_export import export_yolo

        yolo_dir = export_yolo(cfg, subjects, slices, root / "yolo")
    seconds = time.perf_counter() - t0
    write_json(root / "prepare_run.json", {"seconds": round(seconds, 2), "subjects": len(subjects),
                                           "slices": len(slices), "skipped": len(skipped),
                                           "seconds_per_subject_total": round(sum(r["seconds"] for r in records), 2)})
    return Prepared(root, paths["subjects"], paths["slices"], paths["summary"], paths["skipped"], yolo_dir,
                    len(subjects), len(slices), seconds)
