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

No profile is needed: ``prepare_all(sources, prepared_dir, PrepareSettings())`` takes the raw
manifest (a table or a CSV path, see :mod:`.sources`), the output folder and the settings (the
study's by default); :mod:`mskseg_lib.from_profile.data` builds all three from a profile.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mskseg_lib.atomic import replace_folder, save_csv, save_parquet, write_guard, write_json
from mskseg_lib.data import raw_io
from mskseg_lib.data.boxes import slice_boxes
from mskseg_lib.data.cards import PREPARE_KEYS
from mskseg_lib.data.catalog import DatasetSpec, get_dataset
from mskseg_lib.data.dicom_io import read_dicom_series
from mskseg_lib.data.bad_inputs import ON_BAD_INPUT
from mskseg_lib.data.errors import DataError, SettingsError
from mskseg_lib.data.preprocess import (
    STUDY_CLIP_PERCENTILES,
    check_resize_mode,
    clean_mask_volume,
    clip_to_uint8,
    display_slice,
    resize_slice,
)
from mskseg_lib.data.slice_store import stack_path, subject_dir
from mskseg_lib.data.sources import ManifestProblem, read_manifest
from mskseg_lib.data.splits import stratified_split
from mskseg_lib.data.summary import dataset_summary
from mskseg_lib.data.tables import SLICES_PARQUET, SUBJECTS_PARQUET
from mskseg_lib.data.volume import Volume, check_finite, check_labels, check_same_grid, to_canonical
from mskseg_lib.data.yolo_export import export_yolo
from mskseg_lib.provenance import fingerprint

log = logging.getLogger(__name__)
SUBJECT_FIELDS = ("sex", "age_years", "weight_kg", "height_m", "bmi", "vendor", "field_strength_t", "te_ms",
                  "tr_ms", "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm")
NUMERIC_SUBJECT_FIELDS = ("age_years", "weight_kg", "height_m", "bmi", "field_strength_t", "te_ms", "tr_ms",
                          "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm")
PER_DATASET_KEYS = PREPARE_KEYS  # what a card's prepare: and the profile's per_dataset may override
SKIPPED_COLUMNS = ["row", "dataset", "subject_id", "file", "problem"]
# version 2: the study's spline resize, truncating uint8 conversion and the resize mode
FINGERPRINT_VERSION = 2


# ----------------------------------------------------------------------------- settings
def _check_clip(where: str, lo_hi: Sequence[float]) -> None:
    lo_hi = list(lo_hi)
    if len(lo_hi) != 2 or not 0 <= float(lo_hi[0]) < float(lo_hi[1]) <= 100:
        raise SettingsError(f"{where} must be [low, high] with 0 <= low < high <= 100, got {lo_hi}")


@dataclass(frozen=True)
class PrepareSettings:
    """How raw subjects become model-ready data; the defaults are the study's.

    * ``slice_sizes_px``: square model inputs stored per subject (256 LiteMedSAM, 1024 SAM/SAM2);
    * ``clip_percentiles``: intensity clipping, percentiles (0-100) of the non-zero voxels;
    * ``resize_mode``: ``"stretch"`` (the study's: straight to the square) or ``"pad"``;
    * ``min_component_px`` / ``min_component_voxels``: connected components smaller than this
      (pixels per slice / voxels per volume, per label) are removed;
    * ``drop_labels``: dataset -> label names removed before anything else;
    * ``per_dataset``: dataset -> overrides of ``min_component_px``, ``min_component_voxels``,
      ``clip_percentiles``; they win over the dataset card's own ``prepare:`` overrides, which win
      over the values above;
    * ``split_fractions``, ``stratify_by``, ``seed``: the subject split within each dataset;
    * ``on_bad_input``: ``"raise"`` (stop: one error listing every bad manifest row, or the
      first subject that cannot be prepared) or ``"skip"`` (record each bad row or subject in
      ``skipped.csv``, whatever the error type, and go on);
    * ``yolo_export`` / ``yolo_image_size_px``: the detection export (a stored slice size).

    Numbers are kept as given (a profile's ``[1, 99]`` stays integers), because each subject's
    record fingerprints them.
    """

    slice_sizes_px: tuple[int, ...] = (256, 1024)
    clip_percentiles: tuple[float, float] = STUDY_CLIP_PERCENTILES
    resize_mode: str = "stretch"
    min_component_px: int = 100
    min_component_voxels: int = 1000
    drop_labels: Mapping[str, Sequence[str]] = field(default_factory=dict)
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    stratify_by: tuple[str, ...] = ("sex",)
    seed: int = 0
    on_bad_input: str = "raise"
    yolo_export: bool = True
    yolo_image_size_px: int = 1024

    def __post_init__(self) -> None:
        try:
            check_resize_mode(self.resize_mode)
        except ValueError as exc:
            raise SettingsError(f"resize_mode: {exc}") from None
        _check_clip("clip_percentiles", self.clip_percentiles)
        if not self.slice_sizes_px or any(int(s) <= 0 for s in self.slice_sizes_px):
            raise SettingsError(f"slice_sizes_px must be positive sizes, got {list(self.slice_sizes_px)}")
        if self.on_bad_input not in ON_BAD_INPUT:
            raise SettingsError(f"on_bad_input must be one of {list(ON_BAD_INPUT)}, got {self.on_bad_input!r}")
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise SettingsError(f"split_fractions must be three fractions (train, val, test) summing to 1, "
                                f"got {list(self.split_fractions)}")
        if self.yolo_export and int(self.yolo_image_size_px) not in [int(s) for s in self.slice_sizes_px]:
            raise SettingsError(f"yolo_image_size_px={self.yolo_image_size_px} must be one of slice_sizes_px "
                                f"{list(self.slice_sizes_px)}")
        for dataset, per in self.per_dataset.items():
            unknown = set(per or {}) - set(PER_DATASET_KEYS)
            if unknown:
                raise SettingsError(f"per_dataset.{dataset}: unknown keys {sorted(unknown)} "
                                    f"(known: {list(PER_DATASET_KEYS)})")
            if "clip_percentiles" in (per or {}):
                _check_clip(f"per_dataset.{dataset}.clip_percentiles", per["clip_percentiles"])

    def for_dataset(self, dataset: str) -> dict[str, Any]:
        """The settings one subject of ``dataset`` is prepared with (``per_dataset`` applied);
        stored in its ``record.json`` and part of its fingerprint."""
        try:
            card = dict(get_dataset(dataset).prepare)
        except KeyError:  # a name no card declares: read_manifest reports it
            card = {}
        per = {**card, **(self.per_dataset.get(dataset, {}) or {})}
        return {
            "min_component_px": int(per.get("min_component_px", self.min_component_px)),
            "min_component_voxels": int(per.get("min_component_voxels", self.min_component_voxels)),
            "clip_percentiles": list(per.get("clip_percentiles", self.clip_percentiles)),
            "drop_labels": list(self.drop_labels.get(dataset, []) or []),
            "slice_sizes_px": [int(s) for s in self.slice_sizes_px],
            "resize_mode": self.resize_mode,
        }

    def clip_percentiles_for(self, dataset: str) -> tuple[float, float]:
        """The intensity clipping of ``dataset`` (a ``per_dataset`` override honoured): what any
        stage that slices a raw volume itself must use to see the prepared intensities."""
        lo, hi = self.for_dataset(dataset)["clip_percentiles"]
        return float(lo), float(hi)


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


def _fingerprint(row: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    return fingerprint({"row": dict(row), "settings": dict(settings), "version": FINGERPRINT_VERSION})


# ----------------------------------------------------------------------------- reading
def read_subject(row: Mapping[str, Any], spec: DatasetSpec) -> tuple[Volume, Volume]:
    """Image and mask volumes of one manifest row, validated, in their stored orientation."""
    img_path = Path(row["image_path"])
    if row["image_format"] == "dicom":
        series_uid = row.get("series_uid")
        image = read_dicom_series(img_path, series_uid if isinstance(series_uid, str) and series_uid else None)
    else:
        image = raw_io.read_image(row["image_format"], img_path)
    if image.data.ndim != 3:
        raise DataError(img_path, f"image must be 3D, got shape {image.data.shape}")
    check_finite(image)
    mask = raw_io.read_mask(row["mask_format"], Path(row["mask_path"]), spec.label_values())
    check_same_grid(image, mask, what="mask")
    check_labels(mask, spec.label_values().values())
    return image, mask


def _subject_fields(row: Mapping[str, Any], image: Volume, spacing_ras: tuple[float, float, float],
                    axis: int) -> dict:
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
def _canonical_subject(row: Mapping[str, Any], spec: DatasetSpec, settings: Mapping[str, Any]) -> tuple[Volume, np.ndarray]:
    """Steps 1-3: the validated image in canonical RAS and its cleaned int16 label volume."""
    image, mask = read_subject(row, spec)
    image, mask = to_canonical(image), to_canonical(mask)
    labels = mask.data.astype(np.int16)
    for name in settings["drop_labels"]:
        labels[labels == spec.label_values()[name]] = 0
    labels = clean_mask_volume(labels, spec.slice_axis_canonical, settings["min_component_voxels"],
                               settings["min_component_px"])
    if not labels.any():
        raise DataError(Path(row["mask_path"]), "mask is empty after dropping labels and removing small components")
    return image, labels


def _write_volumes(folder: Path, row: Mapping[str, Any], image: Volume, labels: np.ndarray) -> dict:
    """Canonical image, mask and relaxation maps as NIfTI in ``folder``; returns the maps' references."""
    raw_io.write_nifti(folder / "image.nii.gz", image.data.astype(np.float32), image.affine)
    raw_io.write_nifti(folder / "mask.nii.gz", labels.astype(np.uint8 if labels.max() < 256 else np.int16), image.affine)
    maps = json.loads(row["maps"]) if isinstance(row.get("maps"), str) and row["maps"] else {}
    for key, ref in maps.items():
        vol = to_canonical(raw_io.read_array(ref["format"], Path(ref["path"]), ref["key"]))
        check_same_grid(image, vol, what=key)
        raw_io.write_nifti(folder / f"{key}.nii.gz", vol.data.astype(np.float32), vol.affine)
    return maps


def _write_slices(folder: Path, ids: Mapping[str, str], img8: np.ndarray, labels: np.ndarray, axis: int,
                  spacing: tuple[float, float, float], settings: Mapping[str, Any]) -> list[dict]:
    """Step 5: every labelled slice in display orientation, resized to each model size and stored
    as one uint8 stack per size in ``folder``; returns the slice-table rows."""
    sizes, mode = settings["slice_sizes_px"], settings["resize_mode"]
    in_plane_axes = [a for a in range(3) if a != axis]  # display rows follow the 2nd, cols the 1st
    rows, images, masks = [], {s: [] for s in sizes}, {s: [] for s in sizes}
    for k in range(labels.shape[axis]):
        lab2d = display_slice(labels, axis, k)
        if not lab2d.any():
            continue
        img2d = display_slice(img8, axis, k)
        boxes, inst, counts = slice_boxes(lab2d)
        for size in sizes:
            images[size].append(resize_slice(img2d, size, resize_mode=mode))
            masks[size].append(resize_slice(lab2d.astype(np.uint8), size, is_mask=True, resize_mode=mode))
        rows.append({
            **ids, "slice_index": k, "store_index": len(rows), "rows_px": lab2d.shape[0], "cols_px": lab2d.shape[1],
            "resize_mode": mode,
            "pixel_spacing_row_mm": spacing[in_plane_axes[1]], "pixel_spacing_col_mm": spacing[in_plane_axes[0]],
            "slice_thickness_mm": spacing[axis],
            "labels_present": json.dumps(sorted(boxes)),
            "boxes_json": json.dumps({str(v): b for v, b in boxes.items()}),
            "instance_boxes_json": json.dumps({str(v): b for v, b in inst.items()}),
            "voxel_counts_json": json.dumps({str(v): c for v, c in counts.items()}),
        })
    for size in sizes:
        np.save(stack_path(folder, size, "image"), np.stack(images[size]))
        np.save(stack_path(folder, size, "mask"), np.stack(masks[size]))
    return rows


def _subject_row(row: Mapping[str, Any], spec: DatasetSpec, image: Volume, labels: np.ndarray,
                 spacing: tuple[float, float, float], n_processed: int, maps: Mapping[str, Any],
                 settings: Mapping[str, Any]) -> dict:
    """The subjects-table row of one prepared subject."""
    axis = spec.slice_axis_canonical
    in_plane_axes = [a for a in range(3) if a != axis]
    values, counts = np.unique(labels, return_counts=True)
    return {
        "dataset": spec.name, "subject_id": row["subject_id"], "source": row.get("source") or "manifest",
        "anatomy": spec.anatomy, "plane": spec.plane, "acquisition": spec.acquisition,
        "sequence": spec.sequence_name, "protocol_type": spec.protocol_type, "task": spec.task,
        **_subject_fields(row, image, spacing, axis),
        "rows_px": int(image.data.shape[in_plane_axes[1]]), "cols_px": int(image.data.shape[in_plane_axes[0]]),
        "n_slices": int(labels.shape[axis]), "n_processed_slices": n_processed, "slice_axis": axis,
        "resize_mode": settings["resize_mode"], "clip_percentiles": json.dumps(settings["clip_percentiles"]),
        "labels_present": json.dumps(sorted(int(v) for v in values if v)),
        "label_names": json.dumps({str(v): n for v, n in spec.label_names().items()}),
        "voxel_counts_json": json.dumps({str(int(v)): int(c) for v, c in zip(values, counts) if v}),
        "voxel_volume_mm3": float(np.prod(spacing)), "raw_image_path": row["image_path"],
        "raw_mask_path": row["mask_path"], "maps": json.dumps(sorted(maps)),
    }


def prepare_subject(row: Mapping[str, Any], prepared_dir: Path,
                    settings: PrepareSettings = PrepareSettings()) -> dict:
    """Prepare one raw subject into ``<prepared_dir>/subjects/<dataset>/<subject_id>``. Idempotent.

    Parameters
    ----------
    row : mapping
        One raw-manifest row (``sources.MANIFEST_COLUMNS``: dataset, subject_id, formats and
        absolute paths of image, mask and maps, optional demographics and protocol).
    prepared_dir : Path
        Output root.
    settings : PrepareSettings
        Preparation settings (the study's by default).

    Returns
    -------
    dict
        The subject's record: ``fingerprint``, ``subject`` (its subjects-table row), ``slices``
        (its slice-table rows), ``seconds`` and ``settings``. An existing record with the same
        fingerprint is returned without redoing anything.

    Raises
    ------
    DataError
        The raw files are unusable (the error names the file and the problem); nothing is left
        half-written.
    """
    spec = get_dataset(row["dataset"])
    per_subject = settings.for_dataset(spec.name)
    final = subject_dir(prepared_dir, spec.name, row["subject_id"])
    fp = _fingerprint(row, per_subject)
    record_path = final / "record.json"
    if record_path.exists():
        rec = json.loads(record_path.read_text())
        if rec.get("fingerprint") == fp:
            return rec
    t0 = time.perf_counter()
    image, labels = _canonical_subject(row, spec, per_subject)
    img8 = clip_to_uint8(image.data, tuple(per_subject["clip_percentiles"]))
    spacing = tuple(float(s) for s in np.linalg.norm(image.affine[:3, :3], axis=0))
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with write_guard(final, tmp):
            tmp.mkdir(parents=True)
            maps = _write_volumes(tmp, row, image, labels)
            ids = {"dataset": spec.name, "subject_id": row["subject_id"]}
            slice_rows = _write_slices(tmp, ids, img8, labels, spec.slice_axis_canonical, spacing, per_subject)
            subject = _subject_row(row, spec, image, labels, spacing, len(slice_rows), maps, per_subject)
            record = {"fingerprint": fp, "subject": subject, "slices": slice_rows,
                      "seconds": round(time.perf_counter() - t0, 3), "settings": per_subject}
            (tmp / "record.json").write_text(json.dumps(record, default=_json_default))
            replace_folder(tmp, final)
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
def assign_splits(subjects: pd.DataFrame, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                  stratify_by: Sequence[str] = ("sex",), seed: int = 0) -> pd.Series:
    """Stratified train/val/test split of subjects (``fractions``), separately within each dataset."""
    parts = [stratified_split(g, list(fractions), list(stratify_by), seed=seed)
             for _, g in subjects.groupby("dataset", sort=False)]
    return pd.concat(parts).reindex(subjects.index)


def _subjects_table(records: list[dict], prepared_dir: Path, settings: PrepareSettings) -> pd.DataFrame:
    """The subjects table: record rows, split, paths of the stacks and NIfTIs, typed columns."""
    subjects = pd.DataFrame([r["subject"] for r in records])
    subjects["split"] = assign_splits(subjects, settings.split_fractions, settings.stratify_by, settings.seed)
    folders = [subject_dir(prepared_dir, d, s) for d, s in zip(subjects.dataset, subjects.subject_id)]
    for size in settings.slice_sizes_px:
        for kind in ("image", "mask"):
            subjects[f"slices_{size}_{kind}"] = [str(stack_path(f, size, kind)) for f in folders]
    subjects["image_nifti"] = [str(f / "image.nii.gz") for f in folders]
    subjects["mask_nifti"] = [str(f / "mask.nii.gz") for f in folders]
    for col in NUMERIC_SUBJECT_FIELDS:
        subjects[col] = pd.to_numeric(subjects[col], errors="coerce")
    subjects["sex"] = subjects["sex"].where(subjects["sex"].isin(["F", "M"]), None)
    return subjects


def _prepare_each(sources: pd.DataFrame, prepared_dir: Path, settings: PrepareSettings,
                  progress: bool) -> tuple[list[dict], list[dict]]:
    """Every subject prepared (or reused): (records, skipped rows) with ``on_bad_input`` applied.

    Under ``"skip"`` a subject whose reading or preparing fails is recorded whatever the error
    type (a ``DataError`` as its file and problem; anything else, such as a ``ValueError`` or
    ``OSError``, as its type and message, logged with the traceback so a bug is never silent).
    ``KeyboardInterrupt`` and ``SystemExit`` always stop the run.
    """
    records, skipped = [], []
    for row in tqdm(sources.to_dict("records"), desc="prepare", unit="subject", disable=not progress):
        try:
            records.append(prepare_subject(row, prepared_dir, settings))
        except Exception as err:  # noqa: BLE001 - recorded with its type below, never swallowed
            if settings.on_bad_input != "skip":
                raise
            if isinstance(err, DataError):
                file, problem = str(err.path), err.problem
                log.warning("skipped %s/%s: %s", row["dataset"], row["subject_id"], err)
            else:
                file, problem = str(row.get("image_path")), f"{type(err).__name__}: {err}"
                log.warning("skipped %s/%s: %s", row["dataset"], row["subject_id"], problem, exc_info=True)
            skipped.append({"row": None, "dataset": row["dataset"], "subject_id": row["subject_id"],
                            "file": file, "problem": problem})
    return records, skipped


def _note_row(note: str | ManifestProblem) -> dict:
    """A ``notes`` entry as a skipped.csv row."""
    if isinstance(note, ManifestProblem):
        return {"row": note.row, "dataset": note.dataset, "subject_id": note.subject_id,
                "file": note.file, "problem": note.line()}
    return {"row": None, "dataset": None, "subject_id": None, "file": note.split(":")[0], "problem": note}


# ----------------------------------------------------------------------------- everything
def prepare_all(sources: pd.DataFrame | str | Path, prepared_dir: Path,
                settings: PrepareSettings = PrepareSettings(), *,
                notes: Sequence[str | ManifestProblem] = (),
                progress: bool = True) -> Prepared:
    """Prepare every raw subject; write the tables, the dataset summary and the YOLO export.

    Parameters
    ----------
    sources : DataFrame, or path of a manifest CSV
        The raw manifest (:func:`.sources.collect_sources`, :func:`.sources.read_manifest`):
        one row per subject with absolute paths. A path is read with
        ``settings.on_bad_input`` applied to its bad rows.
    prepared_dir : Path
        Output root: ``subjects/``, ``subjects.parquet``, ``slices.parquet``,
        ``dataset_summary.csv``, ``skipped.csv``, ``yolo/``, ``prepare_run.json``.
    settings : PrepareSettings
        The study's settings by default.
    notes : sequence of str or ManifestProblem
        Problems found while collecting the sources (``"<path>: <problem>"``, or bad manifest
        rows left out under ``on_bad_input="skip"``), recorded in ``skipped.csv``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Prepared
        The paths written, the number of subjects and slices, and the wall seconds.

    Raises
    ------
    DataError
        Under ``"raise"``, the first bad input; under ``"skip"``, when no subject could be
        prepared (``skipped.csv``, columns ``row, dataset, subject_id, file, problem``, is
        written first and the error points at it). Subjects prepared before are never removed.
    """
    t0 = time.perf_counter()
    root = Path(prepared_dir)
    notes = list(notes)
    if not isinstance(sources, pd.DataFrame):
        manifest_problems: list[ManifestProblem] = []
        sources = read_manifest(Path(sources), settings.on_bad_input, manifest_problems)
        notes.extend(manifest_problems)
    records, bad = _prepare_each(sources, root, settings, progress)
    skipped = [_note_row(n) for n in notes] + bad
    skipped_csv = root / "skipped.csv"
    if not records:
        save_csv(pd.DataFrame(skipped, columns=SKIPPED_COLUMNS), skipped_csv)
        raise DataError(skipped_csv, f"nothing could be prepared: all {len(skipped)} problem(s) are listed in "
                                     "this file" if skipped else "nothing could be prepared: no subjects given")
    subjects = _subjects_table(records, root, settings)
    slices = pd.DataFrame([s for r in records for s in r["slices"]])
    slices = slices.merge(subjects[["dataset", "subject_id", "split"]], on=["dataset", "subject_id"], how="left")
    paths = {
        "subjects": save_parquet(subjects, root / SUBJECTS_PARQUET),
        "slices": save_parquet(slices, root / SLICES_PARQUET),
        "summary": save_csv(dataset_summary(subjects), root / "dataset_summary.csv"),
        "skipped": save_csv(pd.DataFrame(skipped, columns=SKIPPED_COLUMNS), skipped_csv),
    }
    yolo_dir = None
    if settings.yolo_export:
        yolo_dir = export_yolo(root, slices, root / "yolo", settings.yolo_image_size_px)
    seconds = time.perf_counter() - t0
    write_json(root / "prepare_run.json", {"seconds": round(seconds, 2), "subjects": len(subjects),
                                           "slices": len(slices), "skipped": len(skipped),
                                           "seconds_per_subject_total": round(sum(r["seconds"] for r in records), 2)})
    log.info("prepared %d subjects, %d slices in %.1f s -> %s", len(subjects), len(slices), seconds, root)
    return Prepared(root, paths["subjects"], paths["slices"], paths["summary"], paths["skipped"], yolo_dir,
                    len(subjects), len(slices), seconds)

