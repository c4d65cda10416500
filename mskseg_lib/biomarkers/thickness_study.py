"""Cartilage thickness as the study defines it: the distance transform at the medial axis.

Two labelled variants of the study's measure, shown beside the validated chord method of
:mod:`.thickness` (which stays the project's thickness, ``thickness_mm``):

* ``study_text`` (``thickness_study_text_mm``): the study's text. Per slice, the medial axis
  (``skimage.morphology.medial_axis``) of the mask; at each medial point the Euclidean distance
  transform, i.e. the distance to the nearest background pixel, "scaled according to the voxel
  dimensions": the EDT is computed in mm with the slice's in-plane pixel spacing
  (``distance_transform_edt(sampling=pixel spacing)``; on square pixels that is the EDT in pixels
  times the pixel size). The text calls these distances the thickness and never doubles them, so
  the value is the medial *radius* r, not the diameter 2r (``thickness_2edt_mm`` of
  :mod:`.thickness` keeps 2r for comparison).
* ``study_code`` (``thickness_study_code_mm``): the study's code
  (``src/finetuning/engine/metrics/cartilage_thickness.py``): the same medial axis and EDT, in
  *pixels*, multiplied by the **slice thickness** (the spacing along the slice axis), also not
  doubled.

Both: per slice, the mean over the medial points with a positive value; per subject, the mean of
the slice means (slices where the structure is absent do not count), as the study's code
aggregates. Both take the EDT of the slice as it is (the field of view's edge is not background),
as the code does.

Known answers (an axis-aligned slab n pixels thick that spans the slice, pixel size s along its
normal, slice thickness t): every medial point lies ceil(n/2) pixels from the background, so
``study_text`` = ceil(n/2) x s and ``study_code`` = ceil(n/2) x t, where the true thickness is
n x s. The text's value is about half the truth (plus half a pixel on odd n); the code's also
carries the ratio t / s (4 mm slices on 0.5 mm pixels: 4 x the text's value).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import medial_axis

from mskseg_lib.biomarkers.common import (
    OK,
    BiomarkerResult,
    Labels,
    check_label_volume,
    check_slice_axis,
    check_spacing,
    empty_row,
    frame,
    in_plane_spacing,
    normalise_labels,
    present_slices,
    structure_mask,
    take_slice,
)

TEXT, CODE = "thickness_study_text_mm", "thickness_study_code_mm"
PER_SLICE_COLUMNS = ["structure", "slice_index", TEXT, CODE, "n_points", "n_voxels", "reason"]
PER_SUBJECT_COLUMNS = ["structure", TEXT, CODE, "n_slices", "n_points", "n_voxels", "reason"]
NO_MEDIAL = "no medial-axis point with a positive distance"
MEDIAL_AXIS_SEED = 0  # medial_axis breaks ties in a random order: seeded, so a mask always gives one value


def medial_axis_distances(mask: np.ndarray, pixel_spacing_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance transform at the medial-axis points of a 2D mask.

    The medial axis and the pixel distance are ``skimage.morphology.medial_axis``'s (its
    tie-breaking order seeded, so the result is reproducible); the mm distance is
    ``distance_transform_edt`` with the pixel spacing, at the same points.

    Parameters
    ----------
    mask : (rows, cols) bool ndarray
        One structure on one slice.
    pixel_spacing_mm : sequence of 2 float
        Pixel spacing in mm of the two array axes.

    Returns
    -------
    distance_px, distance_mm : (n,) float ndarrays
        The EDT at each of the n medial points, in pixels and in mm.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D, got shape {mask.shape}")
    spacing = check_spacing(pixel_spacing_mm, 2)
    if not mask.any():
        return np.zeros(0), np.zeros(0)
    skel, dist_px = medial_axis(mask, return_distance=True, rng=MEDIAL_AXIS_SEED)
    dist_mm = ndi.distance_transform_edt(mask, sampling=spacing)
    keep = skel & (dist_px > 0)
    return dist_px[keep].astype(np.float64), dist_mm[keep].astype(np.float64)


def _mean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def study_thickness(label_volume: np.ndarray, spacing_mm: Sequence[float], labels: Labels,
                    slice_axis: int = 2) -> BiomarkerResult:
    """Per-slice medial-axis EDT thickness of each structure, in the study's two readings.

    Parameters
    ----------
    label_volume : (X, Y, Z) int ndarray
        Labels (0 = background).
    spacing_mm : sequence of 3 float
        Voxel spacing in mm of the three array axes; the slices lie across ``slice_axis``, whose
        spacing is the slice thickness ``study_code`` multiplies by.
    labels : mapping
        Structure name -> label value(s).
    slice_axis : int
        The acquisition plane's axis.

    Returns
    -------
    BiomarkerResult
        Value columns ``thickness_study_text_mm`` (main: EDT radius at the medial axis x pixel
        spacing) and ``thickness_study_code_mm`` (EDT radius in pixels x slice thickness), in mm,
        per slice and per subject (mean over slices).
    """
    vol = check_label_volume(label_volume)
    spacing = check_spacing(spacing_mm)
    axis = check_slice_axis(slice_axis)
    structures = normalise_labels(labels)
    pixel = in_plane_spacing(spacing, axis)
    slice_thickness_mm = float(spacing[axis])
    slice_rows, subject_rows = [], []
    for name, values in structures.items():
        mask = structure_mask(vol, values)
        slices = present_slices(mask, axis)
        if slices.size == 0:
            subject_rows.append(empty_row(name, [TEXT, CODE], ["n_slices", "n_points", "n_voxels"]))
            continue
        text_means, code_means, n_points = [], [], 0
        for k in slices:
            m2 = take_slice(mask, axis, int(k))
            px, mm = medial_axis_distances(m2, pixel)
            text, code = (float(mm.mean()), float(px.mean() * slice_thickness_mm)) if px.size else (np.nan, np.nan)
            text_means.append(text)
            code_means.append(code)
            n_points += int(px.size)
            slice_rows.append({"structure": name, "slice_index": int(k), TEXT: text, CODE: code,
                               "n_points": int(px.size), "n_voxels": int(m2.sum()),
                               "reason": OK if px.size else NO_MEDIAL})
        measured = int(np.isfinite(text_means).sum())
        subject_rows.append({"structure": name, TEXT: _mean(text_means), CODE: _mean(code_means),
                             "n_slices": measured, "n_points": n_points, "n_voxels": int(mask.sum()),
                             "reason": OK if measured else NO_MEDIAL})
    return BiomarkerResult(frame(slice_rows, PER_SLICE_COLUMNS), frame(subject_rows, PER_SUBJECT_COLUMNS), TEXT)


__all__ = ["study_thickness", "medial_axis_distances", "TEXT", "CODE"]
