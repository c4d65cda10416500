"""Model-ready slices: intensity clipping to uint8, resizing to the model input, mask cleanup.

As the study prepares them (its "MRI Image Preprocessing Workflow" and "Segmentation Mask
Preprocessing"; the code is ``src/preprocessing/model_prep.py`` of gabbieHoyer/AutoMedLabel):

* Intensities are clipped to the 1st-99th percentiles of the volume's non-zero voxels (the
  study's text; its code uses 0.5-99.5, available as ``prepare.clip_percentiles``), scaled
  linearly to 0-255 and converted to 8-bit integers by truncation (``np.uint8(x * 255)`` as the
  study's code does), so one bright vessel or a dark background does not set the contrast.
* Each slice is resized *straight* to the square model input (1024 for SAM/SAM2, 256 for
  LiteMedSAM): rows and columns are scaled independently, no padding (``resize_mode="stretch"``,
  the study's default ``make_square: False, ratio_resize: False``). Images use an order-3 (cubic
  spline) resize, ``skimage.transform.resize(order=3, mode="constant", anti_aliasing=True,
  preserve_range=True)`` exactly as the study's ``resize_image_2D``, rounded back to uint8;
  masks use centre-aligned nearest neighbour (the study's ``order=0``).
* ``resize_mode="pad"`` is the labelled variant: the longest side to the model size (aspect
  kept, the convention of SAM's own ``ResizeLongestSide``), zero padding bottom/right. It uses
  the same spline and nearest-neighbour kernels, so the two modes differ only in geometry.
* ``SliceGeometry`` says where a (rows, cols) slice lies in the square model input in either
  mode (per-axis scale factors and the occupied region), so boxes scale to model pixels and
  predictions map back to the original slice exactly (``mask_box_to_model`` for box prompts of
  a mask, ``scale_box``/``unscale_box`` for points and continuous edges, ``unresize_mask``,
  ``evaluation.masks.to_original``).
* Small connected components are removed per label: in 3D below ``min_voxels`` and per slice
  below ``min_px`` (annotation specks and partial-volume crumbs that no prompt should target).
* Slices of a canonical (RAS) volume are shown and fed to the models in *display* orientation
  (``to_display``: rotated so superior or anterior is at the top); ``display_slice``,
  ``display_stack`` and ``volume_from_display`` are the one way every stage takes slices out of
  a volume and puts predictions back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from skimage.morphology import remove_small_objects
from skimage.transform import resize as _sk_resize

RESIZE_MODES = ("stretch", "pad")
STUDY_CLIP_PERCENTILES = (1.0, 99.0)  # the study's text: 1st-99th percentiles of non-zero pixels


def clip_to_uint8(volume: np.ndarray, percentiles: tuple[float, float] = STUDY_CLIP_PERCENTILES) -> np.ndarray:
    """Clip to percentiles of the non-zero voxels, rescale linearly to 0-255 and truncate to uint8.

    Parameters
    ----------
    volume : array, any shape
        Raw intensities (a whole 3D volume: the percentiles are the volume's, not per slice).
    percentiles : (low, high)
        Percentiles (0-100, NumPy's linear interpolation) of the voxels that are not zero.
        The study's text gives (1, 99); its code used (0.5, 99.5).

    Returns
    -------
    uint8 array of ``volume``'s shape: ``floor((clip(v, lo, hi) - lo) / (hi - lo) * 255)``,
    so ``lo`` and below map to 0 and ``hi`` and above to 255 (the study's ``np.uint8(x * 255)``
    truncates). A volume with no non-zero voxel, or a constant one, maps to zeros (there is no
    contrast to stretch).
    """
    v = np.asarray(volume, dtype=np.float64)
    nz = v[v != 0]
    if nz.size == 0:
        return np.zeros(v.shape, np.uint8)
    lo, hi = np.percentile(nz, percentiles)
    if hi <= lo:
        return np.zeros(v.shape, np.uint8)
    scaled = (np.clip(v, lo, hi) - lo) / (hi - lo) * 255.0
    return np.floor(scaled).astype(np.uint8)


def check_resize_mode(resize_mode: str) -> str:
    """``resize_mode`` if it is ``"stretch"`` or ``"pad"``; a one-line ``ValueError`` otherwise."""
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {list(RESIZE_MODES)}, got {resize_mode!r}")
    return resize_mode


@dataclass(frozen=True)
class SliceGeometry:
    """Where a (rows, cols) slice lies in the square ``size_px`` model input.

    ``stretch`` (the study's): the slice fills the whole square, each axis scaled on its own
    (``size / rows`` and ``size / cols``). ``pad``: both axes scaled by ``size / max(rows,
    cols)`` (the shorter one to the nearest whole pixel), the image in the top-left corner and
    zeros below / to the right.
    """

    rows_px: int
    cols_px: int
    size_px: int
    resize_mode: str = "stretch"

    def __post_init__(self) -> None:
        check_resize_mode(self.resize_mode)
        if min(self.rows_px, self.cols_px, self.size_px) <= 0:
            raise ValueError(f"slice and model sizes must be positive, got {self}")

    @property
    def resized_shape(self) -> tuple[int, int]:
        """(rows, cols) of the model input the image occupies (the rest is padding in ``pad``).

        This is also the ``valid_hw`` the model adapters receive: the whole square for ``stretch``.
        """
        if self.resize_mode == "stretch":
            return (self.size_px, self.size_px)
        s = self.size_px / max(self.rows_px, self.cols_px)
        return (int(round(self.rows_px * s)), int(round(self.cols_px * s)))

    @property
    def scale_rows(self) -> float:
        """Model pixels per original pixel along rows (y)."""
        return self.resized_shape[0] / self.rows_px

    @property
    def scale_cols(self) -> float:
        """Model pixels per original pixel along columns (x)."""
        return self.resized_shape[1] / self.cols_px


def geometry_of(row: Mapping[str, Any] | Any, size_px: int) -> SliceGeometry:
    """The ``SliceGeometry`` of one slice-table row at ``size_px``.

    ``row`` is a mapping (dict, pandas Series) or a namedtuple from ``itertuples`` with
    ``rows_px``, ``cols_px`` and ``resize_mode`` (written by ``prepare`` with every slice, so a
    reader needs no profile). A row without ``resize_mode`` (a hand-built table) is read as the
    default, ``stretch``; prepared tables from before the column existed are refused by
    ``data.tables.load_tables``.
    """
    if hasattr(row, "_asdict"):
        row = row._asdict()
    mode = row.get("resize_mode", "stretch") if hasattr(row, "get") else "stretch"
    if mode is None or (isinstance(mode, float) and np.isnan(mode)):
        mode = "stretch"
    return SliceGeometry(int(row["rows_px"]), int(row["cols_px"]), int(size_px), str(mode))


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Centre-aligned nearest-neighbour source index of each of ``n_out`` output pixels.

    Output pixel j (centre at ``(j + 0.5) * n_in / n_out`` in input pixel units) reads input
    pixel ``floor((j + 0.5) * n_in / n_out)``, computed in integers so no rounding can move it.
    This is ``skimage.transform.resize(order=0)``'s mapping (the study's mask resize).
    """
    j = np.arange(n_out, dtype=np.int64)
    return np.minimum(((2 * j + 1) * n_in) // (2 * n_out), n_in - 1)


def _resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows = _nearest_index(a.shape[0], shape[0])
    cols = _nearest_index(a.shape[1], shape[1])
    return a[np.ix_(rows, cols)]


def _resize_spline(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Order-3 (cubic B-spline) resize of a uint8 slice, as the study's ``resize_image_2D``.

    ``skimage.transform.resize(order=3, mode="constant", anti_aliasing=True,
    preserve_range=True)``: centre-aligned grid, zeros outside the slice, a Gaussian
    pre-filter only when shrinking (no effect when enlarging), the output clipped to the
    slice's own intensity range; then rounded to the nearest integer as uint8.
    """
    if tuple(image.shape) == tuple(shape):
        return image.copy()
    out = _sk_resize(image.astype(np.float64), shape, order=3, mode="constant", cval=0.0,
                     anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_slice(image: np.ndarray, size_px: int, is_mask: bool = False,
                 resize_mode: str = "stretch") -> np.ndarray:
    """One display slice to the square ``size_px`` model input.

    Parameters
    ----------
    image : (rows, cols) array
        uint8 image slice (0-255), or an integer label slice when ``is_mask``.
    size_px : int
        Side of the square model input.
    is_mask : bool
        Nearest neighbour (labels kept, dtype kept) instead of the cubic spline.
    resize_mode : "stretch" | "pad"
        ``stretch`` (the study's): straight to ``size_px x size_px``. ``pad``: longest side to
        ``size_px``, aspect kept, zeros bottom/right (see ``SliceGeometry``).

    Returns
    -------
    (size_px, size_px) array: uint8 for images, ``image.dtype`` for masks.
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"resize_slice needs a 2D slice, got shape {a.shape}")
    if not is_mask and a.dtype != np.uint8:
        raise TypeError(f"resize_slice: image slices must be uint8 (0-255, see clip_to_uint8), got {a.dtype}")
    geom = SliceGeometry(a.shape[0], a.shape[1], int(size_px), resize_mode)
    shape = geom.resized_shape
    resized = _resize_nearest(a, shape) if is_mask else _resize_spline(a, shape)
    if shape == (geom.size_px, geom.size_px):
        return np.ascontiguousarray(resized)
    out = np.zeros((geom.size_px, geom.size_px), dtype=resized.dtype)
    out[:shape[0], :shape[1]] = resized
    return out


def unresize_mask(mask: np.ndarray, geom: SliceGeometry) -> np.ndarray:
    """Inverse of ``resize_slice`` for label masks: drop any padding, nearest neighbour back.

    A (size, size) model-input mask -> (rows, cols). ``unresize_mask(resize_slice(m, ...))``
    gives ``m`` back exactly whenever the model input is at least as large as the slice.
    """
    rows, cols = geom.resized_shape
    crop = np.asarray(mask)[:rows, :cols]
    return np.ascontiguousarray(_resize_nearest(crop, (geom.rows_px, geom.cols_px)))


def _xy_factors(geom: SliceGeometry, n: int) -> np.ndarray:
    if n % 2:
        raise ValueError(f"box/point coordinates come in (x, y) pairs, got {n} values")
    return np.tile([geom.scale_cols, geom.scale_rows], n // 2)


def scale_box(box_xyxy: list[float] | np.ndarray, geom: SliceGeometry) -> np.ndarray:
    """Boxes ``[x0, y0, x1, y1]`` (or points ``[x, y]``, any leading shape) from original-slice
    pixels to model-input pixels: x times ``scale_cols``, y times ``scale_rows`` (one factor for
    both under ``pad``, two under ``stretch``). MedSAM's convention (``box / [W, H, W, H] *
    1024``): coordinates are multiplied, not shifted by half a pixel."""
    a = np.asarray(box_xyxy, dtype=np.float64)
    return a * _xy_factors(geom, a.shape[-1])


def unscale_box(box_xyxy: list[float] | np.ndarray, geom: SliceGeometry) -> np.ndarray:
    """Inverse of ``scale_box``: model-input pixels back to original-slice pixels."""
    a = np.asarray(box_xyxy, dtype=np.float64)
    return a / _xy_factors(geom, a.shape[-1])


def mask_box_to_model(box_xyxy: list[float] | np.ndarray, geom: SliceGeometry) -> np.ndarray:
    """Box prompts of a mask: inclusive pixel boxes ``[x0, y0, x1, y1]`` of the original slice ->
    inclusive boxes of the model input covering the same pixels, shape ``(..., 4)``.

    The study boxes the mask *after* it is resized to the model (or the 256 grid), so a box
    reaches the far side of its last pixel: the left/top side is ``x0 * s`` and the right/bottom
    side the last model pixel that original pixel ``x1`` covers, ``(x1 + 1) * s - 1`` (per axis
    under ``stretch``). For an integer scale this is exactly the box of the nearest-resized mask;
    ``scale_box`` of the same box would stop ``s - 1`` model pixels short (12 px at 1024 for a
    64-px slice). Where the resize shrinks (``s < 1``) a box never inverts: the far side is at
    least the near side.
    """
    a = np.asarray(box_xyxy, dtype=np.float64)
    if a.shape[-1] != 4:
        raise ValueError(f"mask_box_to_model expects boxes [x0, y0, x1, y1], got shape {a.shape}")
    f = _xy_factors(geom, 4)
    out = a * f
    out[..., 2:] = np.maximum((a[..., 2:] + 1.0) * f[2:] - 1.0, out[..., :2])
    return out


def model_box_to_mask(box_xyxy: list[float] | np.ndarray, geom: SliceGeometry) -> np.ndarray:
    """Inverse of ``mask_box_to_model`` (where the far side was not raised to the near one)."""
    a = np.asarray(box_xyxy, dtype=np.float64)
    f = _xy_factors(geom, 4)
    out = a / f
    out[..., 2:] = (a[..., 2:] + 1.0) / f[2:] - 1.0
    return out


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
    """A display slice back to the canonical (RAS) orientation (inverse of ``to_display``)."""
    return np.ascontiguousarray(np.rot90(image, k=-1))


def display_slice(volume: np.ndarray, slice_axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``slice_axis`` of a canonical (RAS) volume, in display orientation.

    Parameters
    ----------
    volume : (X, Y, Z) array
        Canonical volume (image, labels or a map).
    slice_axis : int
        The acquisition plane's axis (``DatasetSpec.slice_axis_canonical``).
    index : int
        Slice number along that axis.

    Returns
    -------
    (rows, cols) array of ``volume``'s dtype: rows are the second in-plane axis reversed
    (superior or anterior at the top), columns the first in-plane axis.
    """
    return to_display(np.take(volume, index, axis=slice_axis))


def display_stack(volume: np.ndarray, slice_axis: int) -> np.ndarray:
    """Every slice of a canonical volume in display orientation: ``(n_slices, rows, cols)``,
    ``stack[k] == display_slice(volume, slice_axis, k)``."""
    moved = np.moveaxis(np.asarray(volume), slice_axis, 0)
    return np.ascontiguousarray(np.rot90(moved, axes=(1, 2)))


def volume_from_display(stack: np.ndarray, slice_axis: int) -> np.ndarray:
    """Inverse of ``display_stack``: ``(n_slices, rows, cols)`` display slices back to the
    canonical volume with its slices along ``slice_axis``."""
    return np.moveaxis(np.rot90(np.asarray(stack), k=-1, axes=(1, 2)), 0, slice_axis)
