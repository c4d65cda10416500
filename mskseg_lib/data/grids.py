"""Acquisition grids: voxel-to-world affines for sagittal, coronal and axial scans.

The cohort is written in the scanner's acquisition layout (as DICOM series arrive), not in
canonical RAS, so ingest has to reorient it. Axis directions follow the usual DICOM
ImageOrientationPatient of each plane:

* sagittal: i -> posterior, j -> inferior, k (slices) -> right
* coronal:  i -> left,      j -> inferior, k (slices) -> anterior
* axial:    i -> left,      j -> posterior, k (slices) -> superior

The volume is centred on the world origin, where the anatomy models are centred.
"""
from __future__ import annotations

import numpy as np

AXIS_DIRECTIONS = {  # unit RAS vectors of array axes i, j, k
    "sagittal": ((0, -1, 0), (0, 0, -1), (1, 0, 0)),
    "coronal": ((-1, 0, 0), (0, 0, -1), (0, 1, 0)),
    "axial": ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
}
AXIS_CODES = {"sagittal": "PIR", "coronal": "LIA", "axial": "LPS"}


def acquisition_affine(plane: str, shape: tuple[int, int, int], spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Affine of a volume of ``shape`` (in-plane i, j; slices k) centred on the origin."""
    rot = np.array(AXIS_DIRECTIONS[plane], dtype=float).T  # columns are the axis directions
    aff = np.eye(4)
    aff[:3, :3] = rot * np.asarray(spacing_mm, float)[None, :]
    centre = (np.asarray(shape, float) - 1.0) / 2.0
    aff[:3, 3] = -aff[:3, :3] @ centre
    return aff


def world_coordinates(affine: np.ndarray, shape: tuple[int, int, int], k_range: tuple[int, int],
                      supersample: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World x, y, z (mm) of voxel centres for slices ``k_range``; with ``supersample`` s, the
    centres of s x s x s sub-voxels of every voxel (ordered so ``block_mean`` averages them)."""
    s = supersample
    offs = (np.arange(s) + 0.5) / s - 0.5
    idx = [np.add.outer(np.arange(n), offs).ravel() for n in (shape[0], shape[1])]
    idx.append(np.add.outer(np.arange(*k_range), offs).ravel())
    i, j, k = np.meshgrid(*idx, indexing="ij", sparse=True)
    a, t = affine[:3, :3], affine[:3, 3]
    x = a[0, 0] * i + a[0, 1] * j + a[0, 2] * k + t[0]
    y = a[1, 0] * i + a[1, 1] * j + a[1, 2] * k + t[1]
    z = a[2, 0] * i + a[2, 1] * j + a[2, 2] * k + t[2]
    full = np.broadcast_shapes(x.shape, y.shape, z.shape)
    return np.broadcast_to(x, full), np.broadcast_to(y, full), np.broadcast_to(z, full)
