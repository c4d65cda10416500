"""Model-ready slices: intensity clipping to uint8, resizing to the model input, mask cleanup.

* Intensities are clipped to percentiles of the volume's non-zero voxels (default 0.5-99.5) and
  scaled to 0-255, so one bright vessel or a dark background does not set the contrast.
* Slices are resized so the longer side equals the model input (1024 for SAM/SAM2, 256 for
  LiteMedSAM) and zero-padded bottom/right to a square, keeping the aspect ratio (the
  convention of SAM's own ``ResizeLongestSide``). Images use cubic interpolation, masks nearest
  neighbour. ``SliceGeometry`` keeps the scale and padding so predictions map back exactly.
* Small connected components are removed per label: in 3D below ``min_voxels`` and per slice
  below ``min_px`` (annotation specks and partial-volume crumbs that no prompt should target).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.morphology import remove_small_objects


def clip_to_uint8(volume: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Clip to percentiles of non-zero voxels and rescale linearly to uint8 (0-255).

    A constant or all-zero volume maps to zeros (there is no contrast to stretch).
    """
    v = np.asarray(volume, dtype=np.float32)
    nz = v[v != 0]
    if nz.size == 0:
        return np.zeros(v.shape, np.uint8)
    lo, hi = np.percentile(nz, percentiles)
    if hi <= lo:
        return np.zeros(v.shape, np.uint8)
    scaled = (np.clip(v, lo, hi) - lo) / (hi - lo) * 255.0
    return np.round(scaled).astype(np.uint8)


@dataclass(frozen=True)
class SliceGeometry:
    """How a (rows, cols) slice maps onto the square model input of ``size_px``."""

    rows_px: int
    cols_px: int
    size_px: int

    @property
    def scale(self) -> float:
        return self.size_px / max(self.rows_px, self.cols_px)

    @property
    def resized_shape(self) -> tuple[int, int]:
        return (int(round(self.rows_px * self.scale)), int(round(self.cols_px * self.scale)))


def resize_slice(image: np.ndarray, size_px: int, is_mask: bool = False) -> np.ndarray:
    """Longest side to ``size_px`` (cubic for images, nearest for masks), zero-pad to a square."""
    geom = SliceGeometry(image.shape[0], image.shape[1], size_px)
    rows, cols = geom.resized_shape
    interp = cv2.INTER_NEAREST if is_mask else cv2.INTER_CUBIC
    src = image if image.dtype != np.int16 and image.dtype != np.int32 else image.astype(np.uint16)
    resized = cv2.resize(src, (cols, rows), interpolation=interp)
    if not is_mask and image.dtype == np.uint8:
        resized = np.clip(resized, 0, 255).astype(np.uint8)
    out = np.zeros((size_px, size_px), dtype=resized.dtype)
    out[:rows, :cols] = resized
    return out.astype(image.dtype if is_mask else out.dtype)


def unresize_mask(mask: np.ndarray, geom: SliceGeometry) -> np.ndarray:
    """Inverse of ``resize_slice`` for masks: crop the padding, nearest-neighbour back to size."""
    rows, cols = geom.resized_shape
    crop = np.ascontiguousarray(mask[:rows, :cols])
    src = crop.astype(np.uint16) if crop.dtype not in (np.uint8, np.uint16, np.float32) else crop
    back = cv2.resize(src, (geom.cols_px, geom.rows_px), interpolation=cv2.INTER_NEAREST)
    return back.astype(mask.dtype)


def scale_box(box_xyxy: list[float] | np.ndarray, geom: SliceGeometry) -> np.ndarray:
    """Box from original slice pixels to model-input pixels (same ``scale`` on both axes)."""
    return np.asarray(box_xyxy, dtype=np.float64) * geom.scale


def remove_small_components(labels: np.ndarray, min_size: int, connectivity: int | None = None) -> np.ndarray:
    """Drop connected components smaller than ``min_size`` voxels/pixels, label by label.

    Works in 2D or 3D. Full connectivity by default (8 in 2D, 26 in 3D): thin structures such
    as cartilage, sampled on a coarse grid, touch only diagonally and must stay one component.
    Returns a new array.
    """
    connectivity = labels.ndim if connectivity is None else connectivity
    if min_size <= 1:
        return labels.copy()
    out = labels.copy()
    for value in np.unique(labels):
        if value == 0:
            continue
        m = labels == value
        kept = remove_small_objects(m, max_size=min_size - 1, connectivity=connectivity)
        out[m & ~kept] = 0
    return out


def clean_mask_volume(labels: np.ndarray, slice_axis: int, min_voxels: int, min_px: int) -> np.ndarray:
    """3D small-component removal, then per-slice removal along ``slice_axis``."""
    out = remove_small_components(labels, min_voxels)
    if min_px > 1:
        moved = np.moveaxis(out, slice_axis, 0)
        for k in range(moved.shape[0]):
            moved[k] = remove_small_components(moved[k], min_px)
    return out


def to_display(slice_ras: np.ndarray) -> np.ndarray:
    """A slice of a canonical (RAS) volume, rotated so rows run top-down (superior or anterior
    at the top). The inverse is ``from_display``."""
    return np.ascontiguousarray(np.rot90(slice_ras))


def from_display(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, k=-1))
