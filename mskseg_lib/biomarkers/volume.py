"""Tissue volume: voxel count x voxel volume, in cm3 (1 cm3 = 1000 mm3).

Works for any label (muscle groups, bones, cartilage, discs). Per slice: the slice's share
(``area_mm2`` = pixel count x in-plane pixel area, ``volume_cm3`` = that x slice spacing). Per
subject: one row per requested structure plus a ``total`` row for the union of all requested
structures (a voxel shared by two structures' label sets is counted once in the total).

This is the volume of the voxelised mask: partial volume at the boundary is not modelled, so a
rasterised shape comes back within a fraction of a boundary voxel layer of its true volume
(an ellipsoid of 10-20 voxel radii: within about 1 %).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mskseg_lib.biomarkers.common import (
    OK,
    BiomarkerResult,
    Labels,
    check_label_volume,
    check_slice_axis,
    check_spacing,
    empty_row,
    frame,
    in_plane_axes,
    in_plane_spacing,
    normalise_labels,
    structure_mask,
)

TOTAL = "total"
PER_SLICE_COLUMNS = ["structure", "slice_index", "area_mm2", "volume_cm3", "n_voxels", "reason"]
PER_SUBJECT_COLUMNS = ["structure", "volume_cm3", "n_voxels", "n_slices", "reason"]
MM3_PER_CM3 = 1000.0


def tissue_volume(label_volume: np.ndarray, spacing_mm: Sequence[float], labels: Labels,
                  slice_axis: int = 2) -> BiomarkerResult:
    """Volume of each structure in ``labels`` and of their union (``structure == "total"``).

    Voxel count x voxel volume, summed over slices (the study's).

    Parameters
    ----------
    label_volume : (X, Y, Z) int ndarray
        Labels (0 = background).
    spacing_mm : sequence of 3 float
        Voxel spacing in mm of the three array axes.
    labels : mapping
        Structure name -> label value(s); ``"total"`` is reserved.
    slice_axis : int
        The axis ``per_slice`` is taken along.

    Returns
    -------
    BiomarkerResult
        ``per_slice``: ``area_mm2`` and ``volume_cm3`` of each slice; ``per_subject``:
        ``volume_cm3``, ``n_voxels``, ``n_slices``; an absent structure is NaN with reason
        ``"empty mask"``.
    """
    vol = check_label_volume(label_volume)
    spacing = check_spacing(spacing_mm)
    axis = check_slice_axis(slice_axis)
    structures = normalise_labels(labels)
    if TOTAL in structures:
        raise ValueError(f"{TOTAL!r} is reserved for the union of all structures; rename that structure")
    pixel_mm2 = float(np.prod(in_plane_spacing(spacing, axis)))
    voxel_cm3 = float(np.prod(spacing)) / MM3_PER_CM3
    other = in_plane_axes(axis)
    union = np.zeros(vol.shape, dtype=bool)
    slice_rows, subject_rows = [], []
    items = [(name, structure_mask(vol, values)) for name, values in structures.items()]
    for _, mask in items:
        union |= mask
    for name, mask in [*items, (TOTAL, union)]:
        counts = mask.sum(axis=other)
        present = np.flatnonzero(counts)
        if present.size == 0:
            subject_rows.append(empty_row(name, ["volume_cm3"], ["n_voxels", "n_slices"]))
            continue
        for k in present:
            n = int(counts[k])
            slice_rows.append({"structure": name, "slice_index": int(k), "area_mm2": n * pixel_mm2,
                               "volume_cm3": n * voxel_cm3, "n_voxels": n, "reason": OK})
        n_total = int(counts.sum())
        subject_rows.append({"structure": name, "volume_cm3": n_total * voxel_cm3, "n_voxels": n_total,
                             "n_slices": int(present.size), "reason": OK})
    return BiomarkerResult(frame(slice_rows, PER_SLICE_COLUMNS), frame(subject_rows, PER_SUBJECT_COLUMNS), "volume_cm3")


__all__ = ["tissue_volume", "TOTAL"]
