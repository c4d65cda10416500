"""Read and write the raw forms MSK MRI studies arrive in: NIfTI, NPZ, HDF5, MATLAB and DICOM.

Formats (``fmt``): ``"nifti"`` (.nii/.nii.gz via nibabel), ``"npz"`` (numpy), ``"hdf5"``
(h5py), ``"mat"`` (MATLAB v5 via scipy.io), ``"dicom"`` (a folder, see :mod:`dicom_io`), and,
for masks only, ``"nifti_per_label"`` (a folder with one ``<labelname>.nii.gz`` per label).

Container convention (npz/hdf5/mat), one file per subject:

* ``image``: 3D ``(X, Y, Z)`` or 4D ``(X, Y, Z, E)`` for multi-echo;
* ``affine`` (4x4, RAS) or, when absent, ``spacing_mm`` (3,) plus an optional ``orientation``
  axis code (default "RAS"), turned into an affine by :func:`affine_from_spacing`;
* ``mask`` (multi-class integer) or ``mask_<labelname>`` (binary, one per label);
* optional maps: ``t2_ms``, ``t1rho_ms``, ``echoes`` (X, Y, Z, E), ``echo_times_ms`` (E,).

Every problem with a file raises :class:`DataError` naming that file. Writes are atomic: the
data go to a hidden temporary file in the target folder, then ``os.replace`` moves it in place,
so an interrupted export never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterator, Mapping

import h5py
import nibabel as nib
import numpy as np
import scipy.io

from mskseg_lib.atomic import write_guard
from mskseg_lib.data.dicom_io import read_dicom_series
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.volume import Volume, affine_from_spacing, check_labels, check_same_grid

CONTAINER_FORMATS = ("npz", "hdf5", "mat")
FORMATS = ("nifti", *CONTAINER_FORMATS, "dicom")
MASK_FORMATS = ("nifti", *CONTAINER_FORMATS, "nifti_per_label")
FORMAT_NAMES = {"nifti": "NIfTI", "npz": "NumPy .npz", "hdf5": "HDF5", "mat": "MATLAB .mat", "dicom": "DICOM"}
GEOMETRY_KEYS = ("affine", "spacing_mm", "orientation")
VECTOR_SUFFIXES = ("spacing_mm", "_times_ms")  # 1-D arrays (spacing_mm, echo_times_ms...): MATLAB keeps 1 x N
MASK_KEY, LABEL_PREFIX = "mask", "mask_"
NIFTI_SUFFIXES = (".nii.gz", ".nii")
MATLAB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
INT16 = np.iinfo(np.int16)


def _check_fmt(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt not in allowed:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(allowed)}")


# ----------------------------------------------------------------------------------- writing
def _suffix(path: Path) -> str:
    """The full extension nibabel and friends look at ('.nii.gz', not just '.gz')."""
    return ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; on success move it onto ``path`` (a full
    disk or read-only folder: :class:`~mskseg_lib.atomic.OutputWriteError` naming ``path``)."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp{_suffix(path)}"
    try:
        with write_guard(path, tmp):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # a read-only folder: the error above is the one to report
            tmp.unlink(missing_ok=True)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write one array as NIfTI-1 (sform and qform = ``affine``, units mm), atomically."""
    path = Path(path)
    data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)  # NIfTI has no boolean type
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
    img = nib.Nifti1Image(data, affine, dtype=data.dtype)  # explicit dtype keeps int64 exact
    img.set_sform(affine, code="scanner")
    img.set_qform(affine, code="scanner")
    img.header.set_xyzt_units(xyz="mm")
    with _atomic(path) as tmp:
        nib.save(img, tmp)
    return path


def _write_npz(tmp: Path, payload: dict[str, Any]) -> None:
    with open(tmp, "wb") as fh:  # a file object: np.savez appends no ".npz" to the name
        np.savez(fh, **payload)


def _write_hdf5(tmp: Path, payload: dict[str, Any]) -> None:
    with h5py.File(tmp, "w") as fh:
        for key, value in payload.items():
            fh.create_dataset(key, data=value)


def _write_mat(tmp: Path, payload: dict[str, Any]) -> None:
    bad = [key for key in payload if not MATLAB_NAME.match(key)]
    if bad:
        raise ValueError(f"keys {bad} are not valid MATLAB variable names")
    with open(tmp, "wb") as fh:
        scipy.io.savemat(fh, payload, format="5", oned_as="row")


_CONTAINER_WRITERS = {"npz": _write_npz, "hdf5": _write_hdf5, "mat": _write_mat}


def _payload(
    arrays: Mapping[str, np.ndarray], affine: np.ndarray | None, spacing_mm: Any, orientation: str
) -> dict[str, Any]:
    """The arrays plus geometry keys, checked so that the file can be read back."""
    payload: dict[str, Any] = {key: np.asarray(value) for key, value in arrays.items()}
    if affine is not None:
        payload["affine"] = np.asarray(affine, dtype=np.float64)
        if payload["affine"].shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {payload['affine'].shape}")
    if spacing_mm is not None:
        payload["spacing_mm"] = np.asarray(spacing_mm, dtype=np.float64).ravel()
        affine_from_spacing(payload["spacing_mm"], orientation)  # ValueError if either is bad
        payload["orientation"] = str(orientation)
    if "affine" not in payload and "spacing_mm" not in payload:
        raise ValueError("a container needs geometry: pass affine or spacing_mm")
    return payload


def write_container(
    path: Path,
    fmt: str,
    arrays: dict[str, np.ndarray],
    affine: np.ndarray | None = None,
    spacing_mm: Any = None,
    orientation: str = "RAS",
) -> Path:
    """Write ``arrays`` (keys as in the module docstring) plus geometry to one file, atomically.

    ``fmt`` is "npz", "hdf5" or "mat"; "nifti" takes exactly one array. Geometry is ``affine``
    or ``spacing_mm`` with ``orientation`` (or an ``affine``/``spacing_mm`` key in ``arrays``).
    The file is written under exactly ``path`` (no extension is added). Returns ``path``.
    """
    _check_fmt(fmt, ("nifti", *CONTAINER_FORMATS))
    path = Path(path)
    payload = _payload(arrays, affine, spacing_mm, orientation)
    if fmt == "nifti":
        return _write_nifti_payload(path, payload)
    with _atomic(path) as tmp:
        _CONTAINER_WRITERS[fmt](tmp, payload)
    return path


def _write_nifti_payload(path: Path, payload: dict[str, Any]) -> Path:
    data_keys = [key for key in payload if key not in GEOMETRY_KEYS]
    if len(data_keys) != 1:
        raise ValueError(f"a NIfTI file holds one array, got keys {data_keys}")
    if "affine" in payload:
        affine = payload["affine"]
    else:
        affine = affine_from_spacing(payload["spacing_mm"], payload.get("orientation", "RAS"))
    return write_nifti(path, payload[data_keys[0]], affine)


# ----------------------------------------------------------------------------------- reading
def _require_file(path: Path) -> None:
    if not path.exists():
        raise DataError(path, "file not found")
    if not path.is_file():
        raise DataError(path, "expected a file, found a folder")


def _as_text(value: Any) -> Any:
    """Strings come back as bytes (HDF5) or char arrays (npz, MATLAB): make them ``str``."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        items = [v.decode() if isinstance(v, bytes) else str(v) for v in value.ravel()]
        return "".join(items)
    return value


def _keys_npz(path: Path, wanted: list[str]) -> tuple[list[str], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        return keys, {key: archive[key] for key in wanted if key in keys}


def _keys_hdf5(path: Path, wanted: list[str]) -> tuple[list[str], dict[str, Any]]:
    with h5py.File(path, "r") as fh:
        keys = list(fh.keys())
        values = {}
        for key in (k for k in wanted if k in keys):
            if not isinstance(fh[key], h5py.Dataset):
                raise DataError(path, f"{key!r} is an HDF5 group, not an array")
            values[key] = fh[key][()]
        return keys, values


def _keys_mat(path: Path, wanted: list[str]) -> tuple[list[str], dict[str, Any]]:
    keys = [name for name, _, _ in scipy.io.whosmat(path)]
    present = [key for key in wanted if key in keys]
    if not present:
        return keys, {}
    loaded = scipy.io.loadmat(path, squeeze_me=False, mat_dtype=False, variable_names=present)
    values = {}
    for key in present:
        value = loaded[key]
        if key.endswith(VECTOR_SUFFIXES) and value.dtype.kind not in "US":
            value = value.ravel()
        values[key] = value
    return keys, values


_CONTAINER_READERS = {"npz": _keys_npz, "hdf5": _keys_hdf5, "mat": _keys_mat}


def _open(fmt: str, path: Path, wanted: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Keys in the container, and the values of those ``wanted`` keys it holds."""
    _require_file(path)
    try:
        keys, values = _CONTAINER_READERS[fmt](path, wanted)
    except DataError:
        raise
    except NotImplementedError as exc:  # scipy on MATLAB v7.3 files
        raise DataError(path, "MATLAB v7.3 file (HDF5 inside): read it with fmt='hdf5' or save with -v7") from exc
    except Exception as exc:
        raise DataError(path, f"not a readable {FORMAT_NAMES[fmt]} file ({type(exc).__name__}: {exc})") from exc
    return keys, {key: _as_text(value) for key, value in values.items()}


def _missing(path: Path, key: str, keys: list[str], why: str = "") -> DataError:
    present = ", ".join(sorted(keys)) or "none"
    return DataError(path, f"missing key {key!r}{why}; keys present: {present}")


def _container_affine(path: Path, keys: list[str], values: dict[str, Any]) -> np.ndarray:
    """The ``affine`` key, or the affine built from ``spacing_mm`` and ``orientation``."""
    if "affine" in values:
        affine = np.asarray(values["affine"], dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise DataError(path, f"'affine' must be a finite 4x4 array, got shape {affine.shape}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise DataError(path, "'affine' is singular (a zero-length or repeated axis)")
        return affine
    if "spacing_mm" not in values:
        raise _missing(path, "spacing_mm", keys, " (needed when there is no 'affine')")
    spacing = np.asarray(values["spacing_mm"], dtype=np.float64).ravel()
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise DataError(path, f"'spacing_mm' must be 3 positive numbers, got {spacing.tolist()}")
    orientation = values.get("orientation", "RAS")
    try:
        return affine_from_spacing(spacing, str(orientation))
    except ValueError as exc:
        raise DataError(path, f"bad 'orientation' {orientation!r}: {exc}") from exc


def _spatial(path: Path, key: str, value: Any, ndims: tuple[int, ...]) -> np.ndarray:
    """Check that a container value is a numeric array with an allowed number of axes."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise DataError(path, f"{key!r} is not a numeric array")
    if value.ndim not in ndims:
        raise DataError(path, f"{key!r} has shape {value.shape}; expected {' or '.join(f'{n}D' for n in ndims)}")
    return value


def _read_nifti(path: Path) -> Volume:
    _require_file(path)
    try:
        img = nib.load(path, mmap=False)
        data = np.asarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # ImageFileError, EOFError/zlib errors on truncated .gz
        raise DataError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    return Volume(data=data, affine=affine, source=path, header={"format": "nifti"})


def read_array(fmt: str, path: Path, key: str) -> Volume:
    """One spatial array (3D or more: image, map, echoes) with its affine.

    For "nifti" the file is the array and ``key`` is ignored; "dicom" reads a series folder.
    """
    _check_fmt(fmt, FORMATS)
    path = Path(path)
    if fmt == "nifti":
        return _read_nifti(path)
    if fmt == "dicom":
        return read_dicom_series(path)
    keys, values = _open(fmt, path, [key, *GEOMETRY_KEYS])
    if key not in values:
        raise _missing(path, key, keys)
    data = _spatial(path, key, values[key], (3, 4, 5))
    affine = _container_affine(path, keys, values)
    return Volume(data=data, affine=affine, source=path, header={"format": fmt, "key": key})


def read_image(fmt: str, path: Path, key: str = "image") -> Volume:
    """The image: 3D, or 4D (X, Y, Z, E) for multi-echo, numeric."""
    vol = read_array(fmt, path, key)
    _spatial(vol.source, key, vol.data, (3, 4))
    return vol


def read_values(fmt: str, path: Path, key: str) -> np.ndarray:
    """A non-spatial array from a container (e.g. ``echo_times_ms``), without geometry."""
    _check_fmt(fmt, CONTAINER_FORMATS)
    path = Path(path)
    keys, values = _open(fmt, path, [key])
    if key not in values:
        raise _missing(path, key, keys)
    return values[key]


def list_keys(fmt: str, path: Path) -> list[str]:
    """Keys a file holds ("nifti"/"dicom": ``["image"]``; "nifti_per_label": label names)."""
    _check_fmt(fmt, (*FORMATS, "nifti_per_label"))
    path = Path(path)
    if fmt in ("nifti", "dicom"):
        if not path.exists():
            raise DataError(path, "file not found")
        return ["image"]
    if fmt == "nifti_per_label":
        return [_label_name(p) or p.name for p in _label_files(path)]
    keys, _ = _open(fmt, path, [])
    return keys


# ----------------------------------------------------------------------------------- masks
def _label_array(source: Path, data: Any, what: str = "mask") -> np.ndarray:
    """A multi-class mask as int16; DataError if it is not whole numbers in int16 range."""
    data = _spatial(source, what, data, (3,))
    if data.dtype.kind == "f" and not (np.all(np.isfinite(data)) and np.array_equal(data, np.round(data))):
        raise DataError(source, f"{what} is not integer-valued (a label mask must hold whole numbers)")
    if data.size and (data.min() < INT16.min or data.max() > INT16.max):
        raise DataError(source, f"{what} values {data.min()}..{data.max()} do not fit int16 labels")
    return data.astype(np.int16)


def _binary(source: Path, data: Any, what: str) -> np.ndarray:
    """A per-label mask as bool; DataError unless it holds only 0 and 1."""
    data = _spatial(source, what, data, (3,))
    if data.dtype != bool:
        values = np.unique(data)
        if not np.all(np.isin(values, (0, 1))):
            shown = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if values.size > 8 else "")
            raise DataError(source, f"{what} is not binary (values {shown}; expected only 0 and 1)")
    return data.astype(bool)


def _merge(
    source: Path, shape: tuple[int, ...], binaries: dict[str, np.ndarray], label_values: Mapping[str, int]
) -> tuple[np.ndarray, int]:
    """Per-label binary masks into one int16 mask in ``label_values`` order (later label wins).

    Returns the mask and the number of voxels claimed by more than one label.
    """
    merged = np.zeros(shape, dtype=np.int16)
    overlap = 0
    for name, value in label_values.items():
        if name not in binaries:
            continue
        voxels = binaries[name]
        overlap += int(np.count_nonzero(voxels & (merged != 0)))
        merged[voxels] = value
    return merged, overlap


def _finish_mask(vol: Volume, label_values: Mapping[str, int], overlap: int) -> Volume:
    vol.header.update({"labels": dict(label_values), "overlap_voxels": overlap})
    check_labels(vol, label_values.values())
    return vol


def _container_mask(fmt: str, path: Path, label_values: Mapping[str, int]) -> Volume:
    keys = list_keys(fmt, path)
    if MASK_KEY in keys:
        vol = read_array(fmt, path, MASK_KEY)
        vol.data = _label_array(path, vol.data)
        return _finish_mask(vol, label_values, 0)
    label_keys = [key for key in keys if key.startswith(LABEL_PREFIX)]
    if not label_keys:
        raise _missing(path, MASK_KEY, keys, f" (or per-label keys '{LABEL_PREFIX}<name>')")
    unknown = [key for key in label_keys if key[len(LABEL_PREFIX):] not in label_values]
    if unknown:
        raise DataError(path, f"unknown label keys {unknown}; known labels: {', '.join(label_values)}")
    _, values = _open(fmt, path, [*label_keys, *GEOMETRY_KEYS])
    affine = _container_affine(path, keys, values)
    binaries = {key[len(LABEL_PREFIX):]: _binary(path, values[key], repr(key)) for key in label_keys}
    shapes = {name: mask.shape for name, mask in binaries.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(path, f"per-label masks differ in shape: {shapes}")
    merged, overlap = _merge(path, next(iter(shapes.values())), binaries, label_values)
    vol = Volume(data=merged, affine=affine, source=path, header={"format": fmt, "key": LABEL_PREFIX + "*"})
    return _finish_mask(vol, label_values, overlap)


def _label_name(path: Path) -> str | None:
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _label_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise DataError(folder, "folder not found")
    if not folder.is_dir():
        raise DataError(folder, "expected a folder of per-label NIfTI masks, found a file")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if not files:
        raise DataError(folder, "folder holds no per-label mask files")
    return files


def _per_label_mask(folder: Path, label_values: Mapping[str, int]) -> Volume:
    """Merge ``<labelname>.nii.gz`` files (one grid) into one multi-class mask."""
    vols: dict[str, Volume] = {}
    for file in _label_files(folder):
        name = _label_name(file)
        if name not in label_values:
            raise DataError(
                file, f"unknown label file (expected <label>.nii.gz for one of: {', '.join(label_values)})"
            )
        vols[name] = _read_nifti(file)
    first = next(iter(vols.values()))
    for vol in vols.values():
        check_same_grid(first, vol, what="label mask")
    binaries = {name: _binary(vol.source, vol.data, "label mask") for name, vol in vols.items()}
    merged, overlap = _merge(folder, first.shape[:3], binaries, label_values)
    vol = Volume(data=merged, affine=first.affine, source=folder, header={"format": "nifti_per_label"})
    return _finish_mask(vol, label_values, overlap)


def read_mask(fmt: str, path: Path, label_values: dict[str, int]) -> Volume:
    """A multi-class int16 mask, whatever form it arrives in, checked against ``label_values``.

    ``label_values`` maps label name -> value (e.g. ``{"femur": 1, "tibia": 2}``). Containers
    hold ``mask`` or, failing that, ``mask_<name>`` binaries; "nifti_per_label" is a folder of
    ``<name>.nii.gz`` binaries. Per-label masks are merged in ``label_values`` order (later label
    wins) and ``header["overlap_voxels"]`` counts voxels claimed twice. Unknown label values or
    names, non-binary per-label masks and empty masks raise DataError.
    """
    _check_fmt(fmt, MASK_FORMATS)
    path = Path(path)
    if fmt == "nifti_per_label":
        return _per_label_mask(path, label_values)
    if fmt == "nifti":
        vol = _read_nifti(path)
        vol.data = _label_array(path, vol.data)
        return _finish_mask(vol, label_values, 0)
    return _container_mask(fmt, path, label_values)
