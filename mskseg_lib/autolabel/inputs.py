"""The volumes ``autolabel`` is asked to label: find them under a path and read them.

A path may be one NIfTI file (``.nii``/``.nii.gz``), one DICOM series folder (files of one
series, any names), or a folder holding any mix of NIfTI files and DICOM series folders (one
level deep; a folder of patients holding series folders is searched one level further). Each
volume gets a unique ``name``, the stem of its outputs. Reading goes through the ingest
readers of :mod:`mskseg_lib.data`, so a bad file raises a ``DataError`` naming it and the
problem; the pipeline reports it and carries on with the next volume.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mskseg_lib.data import raw_io
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.volume import Volume, check_finite

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class VolumeInput:
    """One volume to label: its output stem, where it is, and how to read it."""

    name: str
    path: Path
    kind: str  # "nifti" or "dicom"


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _looks_like_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble; ``.dcm`` names count too."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom_series(folder: Path) -> bool:
    """A folder whose visible files include DICOM files (a series; subfolders are ignored)."""
    if not folder.is_dir():
        return False
    return any(_looks_like_dicom(p) for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def volume_kind(path: str | Path) -> str | None:
    """``"nifti"`` for a NIfTI file, ``"dicom"`` for a DICOM series folder, None for anything else
    (an NPZ/HDF5/MAT export, a missing path): which raw files AutoLabel can read as they are."""
    path = Path(path)
    if is_nifti(path):
        return "nifti"
    return "dicom" if is_dicom_series(path) else None


def _children(folder: Path) -> list[VolumeInput]:
    found = []
    for child in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if is_nifti(child):
            found.append(VolumeInput(nifti_stem(child), child, "nifti"))
        elif is_dicom_series(child):
            found.append(VolumeInput(child.name, child, "dicom"))
    return found


def find_volumes(path: str | Path, exclude: str | Path | None = None) -> list[VolumeInput]:
    """Every volume under ``path`` (see the module docstring), sorted by name.

    ``exclude``: a folder to leave out (the output folder, when it lies inside the input, so a
    rerun does not label its own results).

    Raises ``DataError`` when the path does not exist, holds no volume, or two volumes would
    write the same output name.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "input not found")
    if path.is_file():
        if not is_nifti(path):
            raise DataError(path, "not a NIfTI file (.nii or .nii.gz) and not a folder")
        return [VolumeInput(nifti_stem(path), path, "nifti")]
    if is_dicom_series(path):
        return [VolumeInput(path.name, path, "dicom")]
    found = _children(path)
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not is_dicom_series(sub):  # a patient folder: look one level further
            found.extend(VolumeInput(f"{sub.name}_{v.name}", v.path, v.kind) for v in _children(sub))
    if exclude is not None:
        skip = Path(exclude).resolve()
        found = [v for v in found if not v.path.resolve().is_relative_to(skip)]
    if not found:
        raise DataError(path, "no NIfTI files or DICOM series found here (searched two levels)")
    names = [v.name for v in found]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise DataError(path, f"several volumes would write the same output name: {', '.join(clashes)}")
    return sorted(found, key=lambda v: v.name)


def read_volume(item: VolumeInput) -> Volume:
    """Read one volume as a 3D float32 ``Volume``; a 4D series (echoes) keeps its first frame.

    Raises ``DataError`` naming the file for anything unreadable, non-finite or not 3D/4D.
    """
    vol = raw_io.read_array(item.kind, item.path, "image")
    data = np.asarray(vol.data)
    if data.ndim == 4:
        vol.header = {**vol.header, "frames_in_source": int(data.shape[3]), "frame_used": 0}
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(item.path, f"expected a 3D volume (or 4D with echoes last), got shape {data.shape}")
    if data.dtype.kind not in "biuf":
        raise DataError(item.path, f"voxel data are not numeric (dtype {data.dtype})")
    if min(data.shape) < 1 or data.size == 0:
        raise DataError(item.path, f"volume is empty (shape {data.shape})")
    out = Volume(data=data.astype(np.float32, copy=False), affine=vol.affine, source=item.path, header=vol.header)
    check_finite(out)  # the ingest's check: "<n> of <size> voxels are NaN or infinite", naming the file
    return out
