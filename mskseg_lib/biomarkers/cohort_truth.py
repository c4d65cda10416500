"""Line measured biomarkers up with the synthetic cohort's ground truth (``truth.json``).

The cohort (:mod:`mskseg_lib.data.cohort`) stores per subject the true cartilage thickness
(``femoral``/``tibial``/``patellar``: the anatomy's constant shell and slab thickness), tissue
volumes per label (from a supersampled rendering), mean T2 / T1rho per compartment (``fc_lat``,
``fc_med``, ``tc_lat``, ``tc_med``: the map's exact mean) and disc heights (per lumbar level, or
one ``disc`` for the axial stacks). This module measures the same quantities on a label volume
and returns one comparison row per value.

Which labels measure what is the dataset card's ``biomarkers`` section
(:meth:`mskseg_lib.data.cards.DatasetSpec.biomarker_structures`); for the study's cards:

* thickness: ``femoral`` = every label whose name ends in ``femoral_cartilage`` (lateral and
  medial together), likewise ``tibial``; ``patellar`` = ``patellar_cartilage``. Knee datasets are
  sagittal, where all three cartilage normals lie in the slice plane, so the 2D per-slice
  thickness is the true thickness. Caveat of the truth: ``tibial`` is the slab's nominal
  thickness, but the meniscus, painted after the slab, replaces its outer ring from below, so the
  label tapers to nothing at its rim and its mean thickness is lower by construction (7-10 % at
  full matrix, up to 35 % when a few thick slices cut mostly rim);
* volume: each label by name;
* T2 / T1rho: the label that is exactly one compartment (``lateral_femoral_cartilage`` ->
  ``fc_lat``...), from the map given;
* disc height: ``disc_<level>`` labels in-plane (sagittal), or ``disc`` along the slice axis
  (axial stacks: the card's ``disc_height_through_slices``).

Any other card measures volume for every label and the other biomarkers for the structures it
declares.

Definitions beside the project's measure (:data:`VARIANT_OF`, each compared with the truth of
the biomarker it is a variant of): ``thickness_study_text_mm`` and ``thickness_study_code_mm``
(the study's medial-axis EDT, :mod:`.thickness_study`), ``t2_voxel_weighted_ms`` and
``t1rho_voxel_weighted_ms`` (the voxel-weighted mean; ``t2_ms``/``t1rho_ms`` are the study's
mean of slice means, plus a ``total`` over compartments) and ``disc_height_study_mm`` (the
study's pixel-centre rectangle, sagittal discs only).

A truth value with no label to measure it (MAPSS sets have a true patellar thickness but no
patellar label) gets NaN with the reason. The raw cohort files are in acquisition layout, with
the slices on the last array axis (:mod:`mskseg_lib.data.grids`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mskseg_lib.biomarkers.common import check_label_volume, check_spacing
from mskseg_lib.biomarkers.disc_height import disc_height, disc_height_through_slices
from mskseg_lib.biomarkers.relaxometry import relaxation_time
from mskseg_lib.biomarkers.thickness import cartilage_thickness
from mskseg_lib.biomarkers.thickness_study import CODE as THICKNESS_CODE
from mskseg_lib.biomarkers.thickness_study import TEXT as THICKNESS_TEXT
from mskseg_lib.biomarkers.thickness_study import study_thickness
from mskseg_lib.biomarkers.volume import tissue_volume
from mskseg_lib.data import raw_io
from mskseg_lib.data.errors import DataError

COMPARISON_COLUMNS = ["biomarker", "structure", "measured", "truth", "error", "relative_error", "reason"]
MAP_BIOMARKERS = ("t2_ms", "t1rho_ms")
PRIMARY_BIOMARKERS = ("thickness_mm", "volume_cm3", *MAP_BIOMARKERS, "disc_height_mm")
# variant biomarker -> (the biomarker whose truth it estimates, the definition's label)
VARIANT_OF = {THICKNESS_TEXT: ("thickness_mm", "study_text"), THICKNESS_CODE: ("thickness_mm", "study_code"),
              "t2_voxel_weighted_ms": ("t2_ms", "voxel_weighted"),
              "t1rho_voxel_weighted_ms": ("t1rho_ms", "voxel_weighted"),
              "disc_height_study_mm": ("disc_height_mm", "study")}
NO_LABEL = "no label in this dataset measures it"
NO_MAP = "no map given"
RAW_SLICE_AXIS = 2  # the cohort writes volumes in acquisition layout: slices along the last axis


def _rows(biomarker: str, per_subject: pd.DataFrame, column: str) -> list[dict]:
    return [{"biomarker": biomarker, "structure": r["structure"], "measured": float(r[column]), "reason": r["reason"]}
            for _, r in per_subject.iterrows()]


def measure_for_truth(label_volume: np.ndarray, spacing_mm: Sequence[float],
                      structures: Mapping[str, Mapping[str, tuple[int, ...]]], slice_axis: int = RAW_SLICE_AXIS,
                      maps: Mapping[str, np.ndarray] | None = None, through_slices: bool = False) -> pd.DataFrame:
    """Measure every biomarker a dataset's card declares, in every definition.

    Parameters
    ----------
    label_volume : (X, Y, Z) int ndarray
        Label volume (0 = background).
    spacing_mm : sequence of 3 float
        Voxel spacing in mm per array axis.
    structures : mapping
        Biomarker column -> {structure: label values}, as the dataset's card gives them
        (:meth:`mskseg_lib.data.cards.DatasetSpec.biomarker_structures`): ``volume_cm3`` per label,
        ``thickness_mm``, ``t2_ms``, ``t1rho_ms``, ``disc_height_mm`` where the card declares them.
    slice_axis : int
        The acquisition plane's axis.
    maps : mapping, optional
        ``{"t2_ms": map, "t1rho_ms": map}`` on the label grid, in ms (either may be missing).
    through_slices : bool
        Measure disc height along the slice axis (axial disc stacks).

    Returns
    -------
    DataFrame
        Long table ``biomarker`` (the definition's column: ``thickness_mm``, its study variants,
        ``t2_ms``...), ``structure`` (the truth's key), ``measured`` (in the biomarker's unit: mm, ms,
        cm3) and ``reason`` (why a value is NaN, else "").
    """
    vol = check_label_volume(label_volume)
    spacing = check_spacing(spacing_mm)
    groups = {key: dict(structures.get(key) or {}) for key in PRIMARY_BIOMARKERS}
    rows: list[dict] = []
    if groups["thickness_mm"]:
        res = cartilage_thickness(vol, spacing, groups["thickness_mm"], slice_axis)
        rows += _rows("thickness_mm", res.per_subject, "thickness_mm")
        res = study_thickness(vol, spacing, groups["thickness_mm"], slice_axis)
        rows += _rows(THICKNESS_TEXT, res.per_subject, THICKNESS_TEXT) + _rows(THICKNESS_CODE, res.per_subject,
                                                                                 THICKNESS_CODE)
    res = tissue_volume(vol, spacing, groups["volume_cm3"], slice_axis)
    rows += _rows("volume_cm3", res.per_subject[res.per_subject["structure"] != "total"], "volume_cm3")
    for key in MAP_BIOMARKERS:
        if not groups[key]:
            continue
        if maps is None or key not in maps:
            rows += [{"biomarker": key, "structure": s, "measured": np.nan, "reason": NO_MAP} for s in groups[key]]
            continue
        res = relaxation_time(vol, maps[key], spacing, groups[key], slice_axis, quantity=key[:-3])
        rows += _rows(key, res.per_subject, key)
        rows += _rows(f"{key[:-3]}_voxel_weighted_ms", res.per_subject, f"{key[:-3]}_voxel_weighted_ms")
    if groups["disc_height_mm"]:
        fn = disc_height_through_slices if through_slices else disc_height
        res = fn(vol, spacing, groups["disc_height_mm"], slice_axis)
        rows += _rows("disc_height_mm", res.per_subject, "disc_height_mm")
        if not through_slices:
            rows += _rows("disc_height_study_mm", res.per_subject, "disc_height_study_mm")
    return pd.DataFrame(rows, columns=["biomarker", "structure", "measured", "reason"])


def compare_with_truth(measured: pd.DataFrame, truth: Mapping) -> pd.DataFrame:
    """Line measured values up with the cohort's truth.

    Parameters
    ----------
    measured : DataFrame
        :func:`measure_for_truth`'s table.
    truth : mapping
        The subject's ``truth.json`` entry (biomarker -> {structure: value}).

    Returns
    -------
    DataFrame
        One row per truth value (and per finite measured value without a truth): ``measured``,
        ``truth``, ``error = measured - truth``, ``relative_error = error / truth``, ``reason``. A
        variant definition (:data:`VARIANT_OF`) is compared with its biomarker's truth.
    """
    got = {(r.biomarker, r.structure): (r.measured, r.reason) for r in measured.itertuples()}
    rows = []
    variants = {primary: [v for v, (p, _) in VARIANT_OF.items() if p == primary] for primary in PRIMARY_BIOMARKERS}
    for biomarker in PRIMARY_BIOMARKERS:
        for structure, true_value in (truth.get(biomarker) or {}).items():
            value, reason = got.pop((biomarker, structure), (np.nan, NO_LABEL))
            rows.append({"biomarker": biomarker, "structure": structure, "measured": float(value),
                         "truth": float(true_value), "reason": reason})
            for variant in variants[biomarker]:  # only where that definition was measured
                if (variant, structure) in got:
                    value, reason = got.pop((variant, structure))
                    rows.append({"biomarker": variant, "structure": structure, "measured": float(value),
                                 "truth": float(true_value), "reason": reason})
    rows += [{"biomarker": b, "structure": s, "measured": float(v), "truth": np.nan, "reason": r or "no truth value"}
             for (b, s), (v, r) in got.items() if np.isfinite(v)]  # nothing measured, nothing to compare
    df = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    df["error"] = df["measured"] - df["truth"]
    df["relative_error"] = df["error"] / df["truth"]
    return df


# ----------------------------------------------------------------------------- loading subjects
@dataclass
class SubjectArrays:
    """A subject's label volume with its spacing, slice axis, label names and maps (ms)."""

    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    slice_axis: int
    label_values: dict[str, int]
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def load_raw_subject(manifest_row: Mapping, dataset_spec) -> SubjectArrays:
    """The raw cohort mask (and maps) of one manifest row, in acquisition layout.

    No reorientation, no resizing, no small-component removal: the arrays the truth was made from.

    Parameters
    ----------
    manifest_row : mapping
        A raw-manifest row with absolute paths (:func:`mskseg_lib.data.sources.read_manifest`).
    dataset_spec : DatasetSpec
        Its catalog entry (label values, slice axis).

    Returns
    -------
    SubjectArrays
        Labels, spacing (mm), slice axis, label values and maps (ms).
    """
    from mskseg_lib.data import raw_io

    values = dataset_spec.label_values()
    mask = raw_io.read_mask(manifest_row["mask_format"], Path(manifest_row["mask_path"]), values)
    maps: dict[str, np.ndarray] = {}
    refs = manifest_row.get("maps")
    refs = json.loads(refs) if isinstance(refs, str) and refs.strip() else (refs or {})
    for key, ref in refs.items():
        maps[key] = np.asarray(raw_io.read_array(ref["format"], Path(ref["path"]), ref["key"]).data, dtype=np.float32)
    return SubjectArrays(np.asarray(mask.data), mask.spacing_mm, RAW_SLICE_AXIS, values, maps)


def load_prepared_subject(subject_row: Mapping) -> SubjectArrays:
    """A prepared subject's canonical NIfTI mask and maps, with the table's slice axis and labels.

    ``prepare`` removed small components, so values can differ slightly from the raw mask's.

    Parameters
    ----------
    subject_row : mapping
        A row of ``subjects.parquet`` (``mask_nifti``, ``slice_axis``, ``label_names``, ``maps``).

    Returns
    -------
    SubjectArrays
        Labels, spacing (mm), slice axis, label values and maps (ms).

    Raises
    ------
    DataError
        Naming the mask or map that is missing, unreadable, not 3D or not on the mask's grid.
    """
    mask_path = Path(subject_row["mask_nifti"])
    img = raw_io.read_array("nifti", mask_path, "mask")
    if img.data.ndim != 3:
        raise DataError(mask_path, f"mask has shape {img.data.shape}; expected a 3D label volume")
    spacing = tuple(float(s) for s in np.linalg.norm(img.affine[:3, :3], axis=0))
    names = json.loads(subject_row["label_names"])
    maps = {}
    for key in json.loads(subject_row["maps"] or "[]"):
        map_path = mask_path.parent / f"{key}.nii.gz"
        maps[key] = np.asarray(raw_io.read_array("nifti", map_path, key).data, dtype=np.float32)
        if maps[key].shape != img.data.shape:
            raise DataError(map_path, f"map has shape {maps[key].shape}, the mask {img.data.shape}: not on its grid")
    return SubjectArrays(np.asarray(img.data).astype(np.int16), spacing, int(subject_row["slice_axis"]),
                         {str(n): int(v) for v, n in names.items()}, maps)


def compare_subject(subject: SubjectArrays, truth: Mapping, dataset_spec) -> pd.DataFrame:
    """Measure one subject and line it up with its truth entry (see :func:`compare_with_truth`).

    Parameters
    ----------
    subject : SubjectArrays
        The subject's labels, spacing, slice axis, label values and maps.
    truth : mapping
        Its ``truth.json`` entry.
    dataset_spec : DatasetSpec
        Its card: which labels measure which biomarker, and the disc height's direction.

    Returns
    -------
    DataFrame
        :func:`compare_with_truth`'s table.
    """
    measured = measure_for_truth(subject.labels, subject.spacing_mm,
                                 dataset_spec.biomarker_structures(subject.label_values), subject.slice_axis,
                                 subject.maps, dataset_spec.disc_height_through_slices)
    return compare_with_truth(measured, truth)


__all__ = ["measure_for_truth", "compare_with_truth", "SubjectArrays", "load_raw_subject",
           "load_prepared_subject", "compare_subject", "COMPARISON_COLUMNS",
           "PRIMARY_BIOMARKERS", "VARIANT_OF"]
