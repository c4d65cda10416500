"""Intervertebral disc height: short side of the disc's minimum-area rectangle, in mm.

Per disc label and slice: connected components (``skimage.measure.label``, 8-connected); the
largest is the disc (smaller pieces are partial-volume crumbs or annotation specks; their count
is reported). Its pixel centres are converted to mm with the slice's own (possibly anisotropic)
pixel spacing *before* any geometry, so the rectangle is a rectangle in the patient, not in the
pixel grid. ``cv2.minAreaRect`` on those points gives the rectangle's orientation.

Extent along each rectangle axis, to sub-pixel. The hull of pixel centres is too small (an
axis-aligned run of n pixels spans (n - 1) spacings) and the hull of pixel corners is too large
for rotated shapes (a staircase's corners stick out by up to a pixel diagonal). The true edge
lies between the outermost inside pixel centre and the nearest outside pixel centre beyond it,
so the extent is measured from the midpoint of that bracket on each side: along axis ``e``,
``max(e.p, inside)`` and ``min(e.q, outside pixels adjacent to the disc with e.q beyond it)``.
An axis-aligned run of n pixels gives exactly n spacings; a rotated rectangle comes back within
half a pixel (10 x 40 mm at 25 degrees, 0.5 x 0.8 mm pixels: error < 0.2 mm).

Height = the shorter extent, length = the longer; per subject the disc height is the maximum
over slices (the mid-sagittal slice of a disc is its tallest). The field of view's edge counts
as outside.

The study's own reading, beside it as the labelled column ``disc_height_study_mm``
(``study_rectangle_height``): the minimum-area rectangle of the convex hull of the region's
contour (``cv2.findContours``: the centres of its boundary pixels), fitted in pixel units; its
shorter side, with its row and column components scaled by the pixel spacing (the study's text
and ``src/finetuning/engine/metrics/disc_height.py``). Measured between boundary pixel *centres*,
it reads one pixel short of the region's extent on an axis-aligned run (n pixels: (n - 1) x
spacing), up to about one pixel on rotated ones. The same largest component is measured (the
text's connected-component instances; the study's code took the whole label), and the subject
value is again the maximum over slices.

``disc_height_through_slices`` is for axial stacks, where the disc's height runs along the slice
axis: the longest run of consecutive slices holding the disc times the slice spacing (a
resolution of one slice thickness).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as connected_components

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

PER_SLICE_COLUMNS = ["structure", "slice_index", "disc_height_mm", "disc_height_study_mm", "disc_length_mm",
                     "angle_deg", "n_components", "n_voxels_component", "n_voxels", "reason"]
PER_SUBJECT_COLUMNS = ["structure", "disc_height_mm", "disc_height_study_mm", "slice_index_max", "n_slices", "reason"]
THROUGH_SLICE_COLUMNS = ["structure", "slice_index", "n_voxels", "reason"]
THROUGH_SUBJECT_COLUMNS = ["structure", "disc_height_mm", "n_slices", "reason"]


@dataclass(frozen=True)
class RectangleFit:
    """Minimum-area rectangle of one 2D region: side lengths (mm) and long-axis angle.

    ``angle_deg`` is the long axis' angle from the slice's first array axis towards its second,
    in [0, 180).
    """

    height_mm: float
    length_mm: float
    angle_deg: float


def _bracketed_extent(inside: np.ndarray, outside: np.ndarray, axis: np.ndarray) -> float:
    """Extent along ``axis`` from the midpoints between the outermost inside centres and the
    nearest outside centres beyond them (mm)."""
    a = inside @ axis
    b = outside @ axis
    a_lo, a_hi = a.min(), a.max()
    eps = 1e-9 * max(1.0, float(np.abs(a).max()))
    hi = (a_hi + b[b > a_hi + eps].min()) / 2.0
    lo = (a_lo + b[b < a_lo - eps].max()) / 2.0
    return float(hi - lo)


def rectangle_fit(region: np.ndarray, spacing_mm: Sequence[float]) -> RectangleFit:
    """Minimum-area rectangle of a non-empty 2D region, sides measured to the sub-pixel boundary.

    Parameters
    ----------
    region : (rows, cols) bool ndarray
        One connected region (non-empty).
    spacing_mm : sequence of 2 float
        Pixel spacing in mm of the two array axes.

    Returns
    -------
    RectangleFit
        ``height_mm`` (short side), ``length_mm`` (long side), ``angle_deg`` of the long axis.
    """
    region = np.asarray(region, dtype=bool)
    if region.ndim != 2:
        raise ValueError(f"region must be a 2D mask, got shape {region.shape}")
    if not region.any():
        raise ValueError("region is empty: there is no rectangle to fit")
    spacing = np.asarray(check_spacing(spacing_mm, 2))
    padded = np.pad(region, 1)  # the field-of-view edge counts as outside
    ring = ndi.binary_dilation(padded, structure=np.ones((3, 3), bool)) & ~padded
    inside = np.argwhere(padded) * spacing
    outside = np.argwhere(ring) * spacing
    box = cv2.boxPoints(cv2.minAreaRect(inside.astype(np.float32)))
    e1 = np.asarray(box[1] - box[0], dtype=np.float64)
    if np.linalg.norm(e1) < 1e-9:  # degenerate rectangle (a single pixel or a line): use the grid axes
        e1 = np.array([1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.array([-e1[1], e1[0]])
    ext1, ext2 = _bracketed_extent(inside, outside, e1), _bracketed_extent(inside, outside, e2)
    long_axis = e1 if ext1 >= ext2 else e2
    angle = float(np.degrees(np.arctan2(long_axis[1], long_axis[0])) % 180.0)
    return RectangleFit(height_mm=min(ext1, ext2), length_mm=max(ext1, ext2), angle_deg=angle)


def study_rectangle_height(region: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """The study's disc height of a non-empty 2D region.

    The shorter side of the minimum-area rectangle around its contour's pixel centres, fitted in
    pixel units, the side's components scaled by the pixel spacing of the two array axes; one
    pixel shorter than the boundary (0 for a region one pixel wide).

    Parameters
    ----------
    region : (rows, cols) bool ndarray
        One region (non-empty).
    spacing_mm : sequence of 2 float
        Pixel spacing in mm of the two array axes.

    Returns
    -------
    float
        Height in mm.
    """
    region = np.asarray(region, dtype=bool)
    if region.ndim != 2 or not region.any():
        raise ValueError(f"region must be a non-empty 2D mask, got shape {region.shape}")
    s0, s1 = check_spacing(spacing_mm, 2)
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    points = np.concatenate(contours).reshape(-1, 2).astype(np.float32)  # (x, y) = (axis 1, axis 0)
    box = cv2.boxPoints(cv2.minAreaRect(points))
    sides = [box[j] - box[0] for j in (1, 3)]  # the two sides meeting at a corner
    side = min(sides, key=lambda v: float(np.hypot(*v)))  # shorter in pixel units, as the study
    return float(np.hypot(side[0] * s1, side[1] * s0))


def largest_component(region: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 8-connected component of a 2D mask and the number of components.

    Parameters
    ----------
    region : (rows, cols) bool ndarray

    Returns
    -------
    component : (rows, cols) bool ndarray
        The largest component (ties: the lowest label).
    n_components : int
    """
    lab, n = connected_components(region, connectivity=2, return_num=True)
    if n <= 1:
        return region.astype(bool), int(n)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes)), int(n)


def disc_height(label_volume: np.ndarray, spacing_mm: Sequence[float], labels: Labels,
                slice_axis: int = 2) -> BiomarkerResult:
    """Disc height per disc label, from the minimum-area rectangle (see the module docstring).

    Parameters
    ----------
    label_volume : (X, Y, Z) int ndarray
        Labels (0 = background).
    spacing_mm : sequence of 3 float
        Voxel spacing in mm per array axis.
    labels : mapping
        Disc name -> label value(s).
    slice_axis : int
        The acquisition plane's axis (sagittal slices show the disc's height).

    Returns
    -------
    BiomarkerResult
        ``per_slice``: the short side of the largest component's rectangle (``disc_height_mm``)
        and the study's pixel-centre rectangle (``disc_height_study_mm``); ``per_subject``: the
        maximum over slices; an absent disc is NaN with reason ``"empty mask"``.
    """
    vol = check_label_volume(label_volume)
    spacing = check_spacing(spacing_mm)
    axis = check_slice_axis(slice_axis)
    structures = normalise_labels(labels)
    pixel = in_plane_spacing(spacing, axis)
    slice_rows, subject_rows = [], []
    for name, values in structures.items():
        mask = structure_mask(vol, values)
        slices = present_slices(mask, axis)
        if slices.size == 0:
            subject_rows.append(empty_row(name, ["disc_height_mm", "disc_height_study_mm"], ["n_slices"],
                                          slice_index_max=-1))
            continue
        best_h, best_k, best_study = -np.inf, -1, -np.inf
        for k in slices:
            m2 = take_slice(mask, axis, int(k))
            comp, n_comp = largest_component(m2)
            fit = rectangle_fit(comp, pixel)
            study_h = study_rectangle_height(comp, pixel)
            best_study = max(best_study, study_h)
            slice_rows.append({"structure": name, "slice_index": int(k), "disc_height_mm": fit.height_mm,
                               "disc_height_study_mm": study_h, "disc_length_mm": fit.length_mm,
                               "angle_deg": fit.angle_deg, "n_components": n_comp,
                               "n_voxels_component": int(comp.sum()), "n_voxels": int(m2.sum()), "reason": OK})
            if fit.height_mm > best_h:
                best_h, best_k = fit.height_mm, int(k)
        subject_rows.append({"structure": name, "disc_height_mm": float(best_h),
                             "disc_height_study_mm": float(best_study), "slice_index_max": best_k,
                             "n_slices": int(slices.size), "reason": OK})
    return BiomarkerResult(frame(slice_rows, PER_SLICE_COLUMNS), frame(subject_rows, PER_SUBJECT_COLUMNS), "disc_height_mm")


def disc_height_through_slices(label_volume: np.ndarray, spacing_mm: Sequence[float], labels: Labels,
                               slice_axis: int = 2) -> BiomarkerResult:
    """Disc height along the slice axis (axial stacks through one disc).

    Parameters
    ----------
    label_volume : (X, Y, Z) int ndarray
        Labels (0 = background).
    spacing_mm : sequence of 3 float
        Voxel spacing in mm per array axis.
    labels : mapping
        Disc name -> label value(s).
    slice_axis : int
        The axis the stack runs along.

    Returns
    -------
    BiomarkerResult
        Per subject the longest run of consecutive slices holding the structure times the slice
        spacing (``disc_height_mm``, mm); ``per_slice`` the voxel count of each slice holding it.
    """
    vol = check_label_volume(label_volume)
    spacing = check_spacing(spacing_mm)
    axis = check_slice_axis(slice_axis)
    structures = normalise_labels(labels)
    slice_rows, subject_rows = [], []
    for name, values in structures.items():
        mask = structure_mask(vol, values)
        slices = present_slices(mask, axis)
        if slices.size == 0:
            subject_rows.append(empty_row(name, ["disc_height_mm"], ["n_slices"]))
            continue
        for k in slices:
            slice_rows.append({"structure": name, "slice_index": int(k),
                               "n_voxels": int(take_slice(mask, axis, int(k)).sum()), "reason": OK})
        runs = np.split(slices, np.flatnonzero(np.diff(slices) != 1) + 1)
        longest = max(len(r) for r in runs)
        subject_rows.append({"structure": name, "disc_height_mm": float(longest * spacing[axis]),
                             "n_slices": int(longest), "reason": OK})
    return BiomarkerResult(frame(slice_rows, THROUGH_SLICE_COLUMNS), frame(subject_rows, THROUGH_SUBJECT_COLUMNS),
                           "disc_height_mm")


__all__ = ["RectangleFit", "rectangle_fit", "study_rectangle_height", "largest_component", "disc_height",
           "disc_height_through_slices"]
