"""An image or mask array with its voxel-to-world affine, and the checks every ingest runs.

Convention (as NIfTI/nibabel): ``data[i, j, k]`` with a 4x4 ``affine`` mapping voxel indices
``(i, j, k, 1)`` to RAS+ world millimetres. Extra trailing axes (echoes of a multi-echo
series stored ``(X, Y, Z, E)``) are allowed; only the first three are spatial.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from mskseg_lib.data.errors import DataError

RAS_ORNT = axcodes2ornt(("R", "A", "S"))


@dataclass
class Volume:
    """Voxel data, its RAS affine, the file it came from and acquisition metadata."""

    data: np.ndarray
    affine: np.ndarray
    source: Path
    header: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {self.affine.shape}")
        self.source = Path(self.source)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k: the norms of the affine's first three columns."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return tuple(float(n) for n in norms)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


def affine_from_spacing(spacing_mm: Iterable[float], orientation: str = "RAS") -> np.ndarray:
    """Diagonal-style affine for a voxel grid whose axes point along ``orientation``.

    ``orientation`` is a 3-letter axis code ("RAS", "LPS", "PIR", ...): letter n says towards
    which world direction array axis n increases. The origin is the world origin.
    """
    spacing = np.asarray(list(spacing_mm), dtype=np.float64)
    if spacing.shape != (3,):
        raise ValueError(f"spacing_mm needs 3 values, got {spacing.tolist()}")
    codes = tuple(str(orientation).upper())
    if len(codes) != 3:
        raise ValueError(f"orientation must be a 3-letter axis code like 'RAS', got {orientation!r}")
    ornt = axcodes2ornt(codes)  # raises ValueError on unknown letters
    if np.isnan(ornt).any() or len(set(ornt[:, 0])) != 3:
        raise ValueError(f"orientation {orientation!r} does not name three distinct axes")
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for array_axis, (world_axis, sign) in enumerate(ornt):
        affine[int(world_axis), array_axis] = sign * spacing[array_axis]
    return affine


def to_canonical(vol: Volume) -> Volume:
    """Reorient to the closest canonical RAS grid (flips/permutations only, no resampling).

    Works for 3D arrays and for arrays with extra trailing axes (multi-echo ``(X, Y, Z, E)``):
    only the first three axes move. World coordinates of every voxel are unchanged.
    """
    current = io_orientation(vol.affine)
    transform = ornt_transform(current, RAS_ORNT)
    data = np.ascontiguousarray(apply_orientation(vol.data, transform))
    affine = vol.affine @ inv_ornt_aff(transform, vol.data.shape[:3])
    return Volume(data=data, affine=affine, source=vol.source, header=dict(vol.header))


def _fmt_spacing(spacing: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{s:.4g}" for s in spacing) + ")"


def check_same_grid(image: Volume, other: Volume, what: str = "mask", atol_mm: float = 1e-3) -> None:
    """Raise DataError (naming ``other``'s file) unless ``other`` lies on ``image``'s voxel grid.

    Compares the spatial shape (first three axes), the voxel spacing, then the whole affine.
    """
    image_shape, other_shape = tuple(image.shape[:3]), tuple(other.shape[:3])
    if image_shape != other_shape:
        raise DataError(other.source, f"{what} shape {other_shape} differs from image shape {image_shape}")
    if not np.allclose(image.spacing_mm, other.spacing_mm, rtol=0.0, atol=atol_mm):
        raise DataError(
            other.source,
            f"{what} spacing {_fmt_spacing(other.spacing_mm)} mm differs from image spacing "
            f"{_fmt_spacing(image.spacing_mm)} mm",
        )
    if not np.allclose(image.affine, other.affine, rtol=0.0, atol=atol_mm):
        raise DataError(
            other.source,
            f"{what} affine differs from image (position or orientation mismatch beyond {atol_mm} mm)",
        )


def check_finite(vol: Volume) -> None:
    """Raise DataError if the data holds NaN or infinite values (counted)."""
    if not np.issubdtype(vol.data.dtype, np.inexact):
        return
    bad = int(np.count_nonzero(~np.isfinite(vol.data)))
    if bad:
        raise DataError(vol.source, f"{bad} of {vol.data.size} voxels are NaN or infinite")


def check_labels(mask_vol: Volume, allowed_values: Iterable[int]) -> None:
    """Raise DataError if the mask holds values outside ``allowed_values`` (0 = background
    is always allowed) or has no labelled voxel at all."""
    allowed = {int(v) for v in allowed_values} | {0}
    found = np.unique(mask_vol.data)
    unknown = [v for v in found.tolist() if not (float(v).is_integer() and int(v) in allowed)]
    if unknown:
        raise DataError(
            mask_vol.source,
            f"mask holds unknown label values {unknown} (allowed: {sorted(allowed)})",
        )
    if not np.any(mask_vol.data):
        raise DataError(mask_vol.source, "mask is empty (no labelled voxels)")
