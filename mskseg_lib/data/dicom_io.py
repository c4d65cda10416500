"""DICOM MR series: write one file per slice, and read a folder back into a RAS :class:`Volume`.

Array and geometry convention (shared by writer and reader, so a round trip is exact):

* ``data[i, j, k]``: ``i`` is the DICOM **column** index, ``j`` the **row** index, ``k`` the
  slice. So each file's ``pixel_array`` (Rows x Columns) is ``data[:, :, k].T``; ``Columns`` is
  ``data.shape[0]`` and ``Rows`` is ``data.shape[1]``.
* DICOM patient space is LPS, the affine is RAS: ``lps = diag(-1, -1, 1, 1) @ affine``.
* ImageOrientationPatient = (row direction, column direction), where the row direction is the
  direction of increasing column index (``lps[:3, 0]`` normalised) and the column direction is
  the direction of increasing row index (``lps[:3, 1]`` normalised).
* PixelSpacing = (spacing between rows, spacing between columns) = (|lps[:3, 1]|, |lps[:3, 0]|).
* ImagePositionPatient of slice ``k`` = ``lps @ (0, 0, k, 1)``; InstanceNumber = ``k + 1``.

What a scanner export may hold beside the series: files that are not DICOM (README.txt,
.DS_Store, JPEG thumbnails; recognised by their first bytes) and a DICOMDIR (by name or its
Media Storage Directory SOP class) are skipped. Files without the 128-byte preamble or a ``.dcm``
suffix are read when their first bytes look like a DICOM element. Several series in one folder
are refused, naming each, unless ``series_uid`` picks one. An enhanced MR file (one file, many
frames) is read frame by frame from its per-frame and shared functional groups (position,
orientation, spacing, rescale). Transfer syntaxes are decoded by pydicom's pixel handlers:
uncompressed, deflated and RLE Lossless natively; JPEG baseline and lossless, JPEG 2000 and
JPEG-LS through the pylibjpeg plugins (libjpeg, openjpeg) and pyjpegls, declared dependencies.

The reader orders slices by the projection of ImagePositionPatient onto the slice normal
(row x column direction), never by file name, and takes the slice step from the positions.
When InstanceNumber decreases along the normal (the writer's ``k`` axis pointed against the
normal, e.g. a left-handed affine), the order is reversed so ``k`` follows InstanceNumber.
"""
from __future__ import annotations

import logging
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_rescale
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import VR, format_number_as_ds

from mskseg_lib.atomic import write_guard
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.volume import Volume

LPS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)
POSITION_TOL_MM = 1e-3  # two slices closer than this along the normal are duplicates
ORIENTATION_TOL = 1e-4  # allowed disagreement of direction cosines between slices
UINT16_MAX = np.iinfo(np.uint16).max
DICOM_PREFIX_OFFSET = 128  # "DICM" follows the 128-byte preamble
EXPLICIT_VRS = frozenset(vr.value.encode("ascii") for vr in VR if len(vr.value) == 2)
FIRST_GROUPS = (0x0002, 0x0008)  # file meta, or a bare dataset starting with identifying tags

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------- writing
def _ds(values: Sequence[float] | float) -> list[str] | str:
    """Numbers as DICOM DS strings (at most 16 characters, as much precision as fits)."""
    if np.ndim(values) == 0:
        return format_number_as_ds(float(values))
    return [format_number_as_ds(float(v) + 0.0) for v in values]  # + 0.0 turns -0.0 into 0.0


def _slice_geometry(affine: np.ndarray, n_slices: int) -> dict[str, Any]:
    """IOP, PixelSpacing, slice step and per-slice IPP (all LPS) from a RAS affine."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"affine must be a finite 4x4 array, got shape {affine.shape}")
    lps = LPS_FLIP @ affine
    col_step, row_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    spacing_i, spacing_j, spacing_k = (float(np.linalg.norm(v)) for v in (col_step, row_step, slice_step))
    if min(spacing_i, spacing_j, spacing_k) <= 0:
        raise ValueError("affine has a zero-length axis")
    row_dir, col_dir = col_step / spacing_i, row_step / spacing_j
    normal = np.cross(row_dir, col_dir)
    if abs(float(normal @ slice_step)) < 1e-6 * spacing_k:
        raise ValueError("affine's slice axis lies in the image plane")
    positions = [lps[:3, 3] + k * slice_step for k in range(n_slices)]
    return {
        "iop": np.concatenate([row_dir, col_dir]),
        "pixel_spacing": (spacing_j, spacing_i),
        "spacing_k": spacing_k,
        "positions": positions,
    }


def _check_pixels(data: np.ndarray) -> np.ndarray:
    """The array as little-endian uint16, or ValueError if it does not fit exactly."""
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"write_dicom_series needs a 3D array (i, j, k), got shape {data.shape}")
    if data.size == 0:
        raise ValueError("write_dicom_series got an empty array")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating) or data.dtype == bool):
        raise ValueError(f"cannot store dtype {data.dtype} as DICOM pixels")
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)):
            raise ValueError("pixel values must be finite to be stored as uint16")
        if not np.array_equal(data, np.round(data)):
            raise ValueError("pixel values must be whole numbers to be stored as uint16 (round or scale first)")
    lo, hi = data.min(), data.max()
    if lo < 0 or hi > UINT16_MAX:
        raise ValueError(f"pixel values {lo}..{hi} are outside the uint16 range 0..{UINT16_MAX}")
    return data.astype("<u2")


def _patient_age(age_years: float) -> str:
    """DICOM AS string in completed years, e.g. 45 -> '045Y'."""
    years = int(np.floor(float(age_years)))
    if not 0 <= years <= 999:
        raise ValueError(f"age_years {age_years} does not fit the DICOM age format")
    return f"{years:03d}Y"


def _series_dataset(header: dict, geometry: dict, shape: tuple[int, ...]) -> Dataset:
    """Tags shared by every slice of the series (patient, study, series, acquisition)."""
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.Modality = "MR"
    ds.StudyInstanceUID = header.get("study_uid") or generate_uid()
    ds.SeriesInstanceUID = header.get("series_uid") or generate_uid()
    ds.FrameOfReferenceUID = header.get("frame_of_reference_uid") or generate_uid()
    _set_optional(ds, header)
    ds.SliceThickness = _ds(header.get("slice_thickness_mm") or geometry["spacing_k"])
    ds.SpacingBetweenSlices = _ds(geometry["spacing_k"])
    ds.PixelSpacing = _ds(geometry["pixel_spacing"])
    ds.ImageOrientationPatient = _ds(geometry["iop"])
    ds.Rows, ds.Columns = int(shape[1]), int(shape[0])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    return ds


def _set_optional(ds: Dataset, header: dict) -> None:
    """Copy the header keys that are present and not None; absent ones are left out."""
    def given(key: str) -> bool:
        return header.get(key) is not None

    if given("patient_id"):
        ds.PatientID = str(header["patient_id"])
        ds.PatientName = str(header["patient_id"])
    if given("sex"):
        if header["sex"] not in ("M", "F", "O"):
            raise ValueError(f"sex must be 'M', 'F', 'O' or None, got {header['sex']!r}")
        ds.PatientSex = header["sex"]
    if given("age_years"):
        ds.PatientAge = _patient_age(header["age_years"])
    if given("weight_kg"):
        ds.PatientWeight = _ds(header["weight_kg"])
    if given("accession"):
        ds.AccessionNumber = str(header["accession"])
    if given("manufacturer"):
        ds.Manufacturer = str(header["manufacturer"])
    if given("series_description"):
        ds.SeriesDescription = str(header["series_description"])
    if given("series_number"):
        ds.SeriesNumber = int(header["series_number"])
    if given("acquisition"):
        if header["acquisition"] not in ("2D", "3D"):
            raise ValueError(f"acquisition must be '2D' or '3D', got {header['acquisition']!r}")
        ds.MRAcquisitionType = header["acquisition"]
    for key, tag in (
        ("field_strength_t", "MagneticFieldStrength"),
        ("te_ms", "EchoTime"),
        ("tr_ms", "RepetitionTime"),
        ("flip_angle_deg", "FlipAngle"),
    ):
        if given(key):
            setattr(ds, tag, _ds(header[key]))


def _slice_file(series: Dataset, pixels: np.ndarray, k: int, position: np.ndarray) -> Dataset:
    """One slice: a copy of the series tags plus the slice's UID, position and pixels."""
    ds = Dataset()
    ds.update(series)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = _ds(position)
    ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    return ds


def _write_atomic(ds: Dataset, target: Path) -> None:
    """Write to a temporary file in the target's folder, then rename over the target (a full
    disk or read-only folder: :class:`~mskseg_lib.atomic.OutputWriteError` naming ``target``)."""
    with write_guard(target):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                pydicom.dcmwrite(fh, ds, enforce_file_format=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_dicom_series(
    data: np.ndarray,
    affine: np.ndarray,
    folder: Path,
    header: dict,
    rng_seed: int | None = None,
) -> list[Path]:
    """Write ``data`` (i, j, k) as an MR Image Storage series, one file per slice along k.

    Pixels are stored as uint16 (ValueError if a value is negative, above 65535 or not whole).
    File names are random and slices are written in shuffled order, so neither the names nor
    the directory listing reveal slice order; ``rng_seed`` makes names and order reproducible.
    The folder must be empty or absent (one series per folder). Returns the paths in slice order.
    """
    pixels = _check_pixels(data)
    geometry = _slice_geometry(affine, pixels.shape[2])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise FileExistsError(f"{folder}: folder is not empty; a DICOM series needs a folder of its own")
    series = _series_dataset(header, geometry, pixels.shape)
    rng = np.random.default_rng(rng_seed)
    n_slices = pixels.shape[2]
    names: list[str] = []
    while len(set(names)) < n_slices:
        names = [f"IM_{rng.bytes(8).hex().upper()}.dcm" for _ in range(n_slices)]
    paths = [folder / name for name in names]
    for k in rng.permutation(n_slices):
        ds = _slice_file(series, pixels, int(k), geometry["positions"][k])
        _write_atomic(ds, paths[k])
    return paths


# ----------------------------------------------------------------------------------- reading
UNDEFINED_LENGTH = 0xFFFFFFFF


def _cut_short(ds: Dataset) -> bool:
    """True if an element's value is shorter than its stated length.

    pydicom does not complain when a file ends inside an element: it keeps the short value.
    Right after ``dcmread`` the top-level elements are still raw, so compare the lengths.
    """
    for tag in ds.keys():
        raw = ds.get_item(tag)
        if (
            isinstance(raw, RawDataElement)
            and isinstance(raw.value, bytes)
            and raw.length != UNDEFINED_LENGTH
            and len(raw.value) < raw.length
        ):
            return True
    return False


def _looks_like_dicom(path: Path) -> bool:
    """Cheap check of the first bytes: a preamble and "DICM", or a first element of group 2 or 8.

    Without a preamble a DICOM file starts with a little-endian tag of the file meta (group
    0002) or, with no file meta, of the identifying group 0008, followed by a two-letter VR
    (explicit VR) or a 4-byte length shorter than the file (implicit VR). Text, images and
    Finder files do not start that way.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(DICOM_PREFIX_OFFSET + 4)
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc}") from exc
    if head[DICOM_PREFIX_OFFSET:] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group, _element = struct.unpack("<HH", head[:4])
    if group not in FIRST_GROUPS:
        return False
    (length,) = struct.unpack("<I", head[4:8])
    return head[4:6] in EXPLICIT_VRS or length <= size - 8


def _is_dicomdir(path: Path, ds: Dataset | None = None) -> bool:
    """A DICOMDIR index: by its file name, or by its Media Storage Directory SOP class."""
    if path.name.upper() == "DICOMDIR":
        return True
    meta = getattr(ds, "file_meta", None)
    return meta is not None and meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage


def _read_file(path: Path) -> Dataset | None:
    """Parse one DICOM file completely; None for a DICOMDIR; unreadable files raise DataError.

    ``force=True`` (no preamble needed) is safe here because the caller has already checked
    the first bytes with :func:`_looks_like_dicom`.
    """
    try:
        ds = pydicom.dcmread(path, force=True)
        truncated = _cut_short(ds)
    except Exception as exc:  # InvalidDicomError, EOFError, struct/OSError on truncated files
        raise DataError(path, f"not a readable DICOM file (truncated or corrupt): {exc}") from exc
    if truncated:
        raise DataError(path, "not a readable DICOM file (truncated or corrupt): the file ends inside an element")
    if _is_dicomdir(path, ds):
        return None
    if "TransferSyntaxUID" not in ds.file_meta:  # bare dataset without file meta: as parsed
        implicit, little = ds.original_encoding
        if not little:
            raise DataError(path, "big-endian DICOM without file meta is not supported")
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    if "PixelData" not in ds:
        raise DataError(path, "DICOM file has no pixel data (not an image, or the file is truncated)")
    for keyword in ("Rows", "Columns"):
        if not isinstance(ds.get(keyword), int):
            raise DataError(path, f"DICOM image lacks {keyword}")
    return ds


# functional group sequence -> the attributes it carries that the reader needs (enhanced MR)
FRAME_GROUPS = {
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept"),
    "MREchoSequence": ("EffectiveEchoTime",),
    "MRTimingAndRelatedParametersSequence": ("RepetitionTime", "FlipAngle"),
}


def _frame_value(ds: Dataset, frame: Dataset | None, group: str, keyword: str) -> Any:
    """An attribute of one frame of an enhanced image: its per-frame functional group, else the
    shared one, else the top level (None when absent everywhere)."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    for source in (frame, shared[0] if shared else None):
        if source is not None and source.get(group):
            item = source.get(group)[0]
            if item.get(keyword) not in (None, ""):
                return item.get(keyword)
    return ds.get(keyword)


def _split_frames(path: Path, ds: Dataset) -> list[tuple[Path, Dataset]]:
    """An enhanced (multi-frame) MR file as one single-frame dataset per frame.

    Each frame gets the position, orientation, pixel spacing, thickness, rescale, echo and
    repetition time of its per-frame functional groups (else the shared groups), an
    InstanceNumber (its frame number) and its decoded pixels, so the series logic (ordering by
    position, even spacing, geometry) applies unchanged. A file with several frames at one
    position (echoes, time points) is refused by that logic as duplicate positions.
    """
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n_frames:
        raise DataError(path, f"enhanced DICOM lists {len(per_frame)} per-frame groups for {n_frames} frames")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise DataError(path, f"pixel data cannot be decoded (truncated or corrupt): {exc}") from exc
    if pixels.ndim != 3 or pixels.shape[0] != n_frames:
        raise DataError(path, f"expected {n_frames} greyscale frames, got pixel array of shape {pixels.shape}")
    frames = []
    for f in range(n_frames):
        frame = per_frame[f] if per_frame is not None else None
        one = Dataset()
        one.file_meta = ds.file_meta
        for element in ds:
            if element.keyword not in ("PixelData", "PerFrameFunctionalGroupsSequence",
                                       "SharedFunctionalGroupsSequence", "NumberOfFrames"):
                one.add(element)
        for group, keywords in FRAME_GROUPS.items():
            for keyword in keywords:
                value = _frame_value(ds, frame, group, keyword)
                if value not in (None, ""):
                    setattr(one, "EchoTime" if keyword == "EffectiveEchoTime" else keyword, value)
        one.InstanceNumber = f + 1
        one.mskseg_frame = (f, pixels[f])  # decoded already: read by _pixels
        frames.append((path, one))
    return frames


def _pixels(path: Path, ds: Dataset) -> np.ndarray:
    """Decoded, rescaled pixels of one slice as (Rows, Columns) float32."""
    frame = getattr(ds, "mskseg_frame", None)
    if frame is not None:  # one frame of an enhanced file (already decoded)
        return apply_rescale(frame[1], ds).astype(np.float32)
    try:
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8
        if not ds.file_meta.TransferSyntaxUID.is_compressed and len(ds.PixelData) < expected:
            raise DataError(path, "not a readable DICOM file (truncated or corrupt): pixel data is cut short")
        arr = ds.pixel_array
        if arr.ndim != 2:
            raise DataError(path, f"expected a single-frame greyscale image, got pixel array of shape {arr.shape}")
        return apply_rescale(arr, ds).astype(np.float32)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(path, f"pixel data cannot be decoded (truncated or corrupt): {exc}") from exc


def _list_files(folder: Path) -> list[Path]:
    """The folder's DICOM files: non-DICOM files and a DICOMDIR are skipped (and logged)."""
    if not folder.is_dir():
        raise DataError(folder, "DICOM folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if not files:
        raise DataError(folder, "DICOM folder is empty (no files)")
    dicom = [p for p in files if not _is_dicomdir(p) and _looks_like_dicom(p)]
    skipped = [p.name for p in files if p not in dicom]
    if skipped:
        log.info("%s: skipping %d file(s) that are not DICOM images: %s", folder, len(skipped), ", ".join(skipped))
    if not dicom:
        raise DataError(folder, f"no DICOM files in folder (skipped {len(skipped)} other file(s): {', '.join(skipped)})")
    return dicom


def _pick_series(folder: Path, items: list[tuple[Path, Dataset]], series_uid: str | None) -> list[tuple[Path, Dataset]]:
    """The files of one series: the only one, or the one ``series_uid`` names; else DataError."""
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for path, ds in items:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    listing = "; ".join(
        f"SeriesInstanceUID {uid} {str(group[0][1].get('SeriesDescription', '')).strip()!r} ({len(group)} files)"
        for uid, group in sorted(groups.items())
    )
    if series_uid is not None:
        if series_uid not in groups:
            raise DataError(folder, f"no series with SeriesInstanceUID {series_uid}; the folder holds: {listing}")
        return groups[series_uid]
    if len(groups) > 1:
        raise DataError(folder, f"folder holds {len(groups)} series, pick one by series_uid: {listing}")
    return items


def _check_matrix(items: list[tuple[Path, Dataset]]) -> None:
    first_path, first = items[0]
    size = (int(first.Rows), int(first.Columns))
    for path, ds in items[1:]:
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise DataError(
                path,
                f"Rows x Columns {int(ds.Rows)} x {int(ds.Columns)} differs from {size[0]} x {size[1]} "
                f"in {first_path.name}",
            )


def _has_positions(ds: Dataset) -> bool:
    return bool(ds.get("ImagePositionPatient")) and bool(ds.get("ImageOrientationPatient"))


def _vector(ds: Dataset, keyword: str, path: Path, length: int) -> np.ndarray:
    try:
        values = np.array([float(v) for v in ds[keyword].value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"{keyword} is not a list of numbers: {ds[keyword].value!r}") from exc
    if values.shape != (length,) or not np.all(np.isfinite(values)):
        raise DataError(path, f"{keyword} must hold {length} finite numbers, got {list(ds[keyword].value)}")
    return values


def _directions(path: Path, ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Unit row and column directions (LPS) from ImageOrientationPatient."""
    iop = _vector(ds, "ImageOrientationPatient", path, 6)
    row, col = iop[:3], iop[3:]
    if min(np.linalg.norm(row), np.linalg.norm(col)) < 1e-6:
        raise DataError(path, "ImageOrientationPatient has a zero direction vector")
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _pixel_spacing(path: Path, ds: Dataset) -> np.ndarray:
    if not ds.get("PixelSpacing"):
        raise DataError(path, "PixelSpacing is missing; cannot build the voxel geometry")
    spacing = _vector(ds, "PixelSpacing", path, 2)
    if np.any(spacing <= 0):
        raise DataError(path, f"PixelSpacing must be positive, got {spacing.tolist()}")
    return spacing


def _instance_numbers(items: list[tuple[Path, Dataset]]) -> list[int] | None:
    if not all(ds.get("InstanceNumber") not in (None, "") for _, ds in items):
        return None
    return [int(ds.InstanceNumber) for _, ds in items]


def _order_by_position(items: list[tuple[Path, Dataset]]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Slice order along the normal, row/col directions and the LPS slice step vector."""
    row, col = _directions(*items[0])
    for path, ds in items[1:]:
        other_row, other_col = _directions(path, ds)
        if not (np.allclose(row, other_row, atol=ORIENTATION_TOL) and np.allclose(col, other_col, atol=ORIENTATION_TOL)):
            raise DataError(path, f"ImageOrientationPatient differs from {items[0][0].name}; slices are not parallel")
    normal = np.cross(row, col)
    positions = np.array([_vector(ds, "ImagePositionPatient", path, 3) for path, ds in items])
    order = [int(i) for i in np.argsort(positions @ normal, kind="stable")]
    numbers = _instance_numbers(items)
    if numbers is not None and len(order) > 1 and all(
        numbers[a] > numbers[b] for a, b in zip(order[:-1], order[1:])
    ):
        order.reverse()  # the writer's k axis points against the normal: follow InstanceNumber
    _check_positions(items, order, positions, normal)
    step = _slice_step(items, order, positions, normal)
    return order, positions[order[0]], step


def _check_positions(items: list[tuple[Path, Dataset]], order: list[int], positions: np.ndarray, normal: np.ndarray) -> None:
    projected = positions[order] @ normal
    for a, b, gap in zip(order[:-1], order[1:], np.abs(np.diff(projected))):
        if gap < POSITION_TOL_MM:
            raise DataError(items[b][0], f"duplicate slice position: same ImagePositionPatient as {items[a][0].name}")


def _slice_step(items: list[tuple[Path, Dataset]], order: list[int], positions: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Inter-slice vector from the positions; DataError if slices are not evenly spaced."""
    if len(order) == 1:
        path, ds = items[order[0]]
        return normal * _single_slice_thickness(path, ds)
    ordered = positions[order]
    step = (ordered[-1] - ordered[0]) / (len(order) - 1)
    expected = ordered[0] + np.arange(len(order))[:, None] * step
    deviation = np.linalg.norm(ordered - expected, axis=1)
    tolerance = max(POSITION_TOL_MM, 0.01 * float(np.linalg.norm(step)))
    if deviation.max() > tolerance:
        worst = order[int(np.argmax(deviation))]
        raise DataError(
            items[worst][0],
            f"slice positions are not evenly spaced along a line (missing or uneven slices; "
            f"off by {deviation.max():.3g} mm)",
        )
    return step


def _single_slice_thickness(path: Path, ds: Dataset) -> float:
    for keyword in ("SliceThickness", "SpacingBetweenSlices"):
        if ds.get(keyword) not in (None, "") and float(ds.get(keyword)) > 0:
            return float(ds.get(keyword))
    raise DataError(path, "single slice without SliceThickness; cannot build the voxel geometry")


def _order_by_instance(folder: Path, items: list[tuple[Path, Dataset]]
                       ) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fallback without positions: InstanceNumber order, IOP if present (else axial)."""
    numbers = _instance_numbers(items)
    if numbers is None:
        raise DataError(
            folder,
            "cannot order slices: ImagePositionPatient/ImageOrientationPatient and InstanceNumber are missing",
        )
    order = [int(i) for i in np.argsort(numbers, kind="stable")]
    for a, b in zip(order[:-1], order[1:]):
        if numbers[a] == numbers[b]:
            raise DataError(items[b][0], f"duplicate InstanceNumber {numbers[b]} (also in {items[a][0].name})")
    path, ds = items[order[0]]
    if ds.get("ImageOrientationPatient"):
        row, col = _directions(path, ds)
    else:
        row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    origin = _vector(ds, "ImagePositionPatient", path, 3) if ds.get("ImagePositionPatient") else np.zeros(3)
    spacing = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    if spacing in (None, "") or float(spacing) <= 0:
        raise DataError(path, "no slice positions and no SpacingBetweenSlices/SliceThickness; cannot build the geometry")
    step = np.cross(row, col) * float(spacing)
    return order, origin, step, row, col


def _affine(row: np.ndarray, col: np.ndarray, pixel_spacing: np.ndarray, step: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """RAS affine from LPS direction cosines, PixelSpacing (row, col), slice step and origin."""
    lps = np.eye(4)
    lps[:3, 0] = row * pixel_spacing[1]  # increasing column index i
    lps[:3, 1] = col * pixel_spacing[0]  # increasing row index j
    lps[:3, 2] = step
    lps[:3, 3] = origin
    return LPS_FLIP @ lps


def _number(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return None if value in (None, "") else str(value)


def _age_years(age: str | None) -> float | None:
    """DICOM AS ('045Y', '006M', '003W', '010D') to years."""
    if not age or len(age) != 4 or not age[:3].isdigit():
        return None
    per_year = {"Y": 1.0, "M": 12.0, "W": 365.25 / 7.0, "D": 365.25}.get(age[3].upper())
    if per_year is None:
        return None
    value = int(age[:3]) / per_year
    return int(value) if age[3].upper() == "Y" else value


def _header(ds: Dataset, n_files: int, geometry: str) -> dict[str, Any]:
    """Acquisition metadata read back under the same keys the writer takes (None if absent)."""
    spacing = ds.get("PixelSpacing")
    return {
        "patient_id": _text(ds, "PatientID"),
        "sex": _text(ds, "PatientSex"),
        "age_years": _age_years(_text(ds, "PatientAge")),
        "weight_kg": _number(ds, "PatientWeight"),
        "accession": _text(ds, "AccessionNumber"),
        "manufacturer": _text(ds, "Manufacturer"),
        "field_strength_t": _number(ds, "MagneticFieldStrength"),
        "te_ms": _number(ds, "EchoTime"),
        "tr_ms": _number(ds, "RepetitionTime"),
        "flip_angle_deg": _number(ds, "FlipAngle"),
        "acquisition": _text(ds, "MRAcquisitionType"),
        "series_description": _text(ds, "SeriesDescription"),
        "slice_thickness_mm": _number(ds, "SliceThickness"),
        "spacing_between_slices_mm": _number(ds, "SpacingBetweenSlices"),
        "pixel_spacing_mm": tuple(float(v) for v in spacing) if spacing else None,  # (row, column)
        "study_uid": _text(ds, "StudyInstanceUID"),
        "series_uid": _text(ds, "SeriesInstanceUID"),
        "n_files": n_files,
        "slice_order": geometry,  # "position" or "instance_number"
    }


def read_dicom_series(folder: Path, series_uid: str | None = None) -> Volume:
    """Read a folder holding a DICOM MR series into a float32 (column, row, slice) Volume.

    Parameters
    ----------
    folder : Path
        The series folder. Files that are not DICOM (by their first bytes) and a DICOMDIR are
        skipped; every other file must be a readable single-frame DICOM image, or the folder holds
        one enhanced (multi-frame) MR file.
    series_uid : str, optional
        SeriesInstanceUID of the series to read when the folder holds several. Without it a
        folder with several series raises DataError naming each (UID, description, files).

    Returns
    -------
    Volume
        Slices ordered by position along the slice normal (InstanceNumber when positions are
        missing), RAS affine, header with acquisition metadata.

    Raises
    ------
    DataError
        Unreadable or truncated files, no DICOM files, several series (or an unknown
        ``series_uid``), duplicates, gaps or mixed matrix sizes.
    """
    folder = Path(folder)
    items = [(path, ds) for path in _list_files(folder) if (ds := _read_file(path)) is not None]
    if not items:
        raise DataError(folder, "no DICOM images in folder (only a DICOMDIR)")
    items = _pick_series(folder, items, series_uid)
    n_files = len(items)
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for _, ds in items):
        if n_files > 1:
            raise DataError(folder, f"series mixes an enhanced (multi-frame) file with {n_files - 1} other file(s); "
                                    "expected one multi-frame file or one file per slice")
        items = _split_frames(*items[0])
    _check_matrix(items)
    if all(_has_positions(ds) for _, ds in items):
        order, origin, step = _order_by_position(items)
        row, col = _directions(*items[order[0]])
        how = "position"
    else:
        order, origin, step, row, col = _order_by_instance(folder, items)
        how = "instance_number"
    first_path, first = items[order[0]]
    affine = _affine(row, col, _pixel_spacing(first_path, first), step, origin)
    data = np.stack([_pixels(*items[i]).T for i in order], axis=-1)
    return Volume(data=data, affine=affine, source=folder, header=_header(first, n_files, how))
