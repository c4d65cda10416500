"""DICOM MR series: exact write/read round trips, slice ordering, and every error path."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from nibabel.eulerangles import euler2mat
from pydicom.fileset import FileSet
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from mskseg_lib.data.dicom_io import LPS_FLIP, read_dicom_series, write_dicom_series
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.volume import affine_from_spacing

HEADER = {
    "patient_id": "KNEE-007",
    "sex": "F",
    "age_years": 45.7,
    "weight_kg": 68.5,
    "accession": "ACC12345",
    "manufacturer": "SIEMENS",
    "field_strength_t": 3.0,
    "te_ms": 32.5,
    "tr_ms": 3000.0,
    "flip_angle_deg": 90.0,
    "acquisition": "2D",
    "series_description": "SAG PD FS",
}


def _data(shape: tuple[int, int, int] = (7, 5, 6), seed: int = 0) -> np.ndarray:
    """Distinct whole-number intensities, so any mis-ordering or transpose shows."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.prod(shape)).reshape(shape).astype(np.float32) * 7 + 3


def _axial_affine() -> np.ndarray:
    affine = np.diag([0.5, 0.75, 3.0, 1.0])
    affine[:3, 3] = [-40.0, 12.5, 80.25]
    return affine


def _oblique_affine() -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = euler2mat(0.35, -0.2, 0.12) @ np.diag([0.43, 0.61, 2.7])
    affine[:3, 3] = [10.3, -20.1, 5.5]
    return affine


def _write(tmp_path: Path, data: np.ndarray | None = None, affine: np.ndarray | None = None, **header) -> tuple[Path, list[Path]]:
    folder = tmp_path / "series"
    data = _data() if data is None else data
    affine = _axial_affine() if affine is None else affine
    paths = write_dicom_series(data, affine, folder, {**HEADER, **header}, rng_seed=3)
    return folder, paths


def _edit(path: Path, **changes) -> None:
    """Rewrite one file with tags changed (value None deletes the tag)."""
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


def _raises(match_file: Path, call, *args) -> DataError:
    with pytest.raises(DataError) as info:
        call(*args)
    assert match_file.name in str(info.value)
    return info.value


# ------------------------------------------------------------------------------ round trips
def test_axial_round_trip_is_exact(tmp_path: Path) -> None:
    data = _data()
    folder, paths = _write(tmp_path, data)
    assert len(paths) == data.shape[2]
    vol = read_dicom_series(folder)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_array_equal(vol.affine, _axial_affine())
    assert vol.spacing_mm == (0.5, 0.75, 3.0)
    assert vol.source == folder


@pytest.mark.parametrize("affine", [_oblique_affine(), _oblique_affine() @ np.diag([1, 1, -1, 1])], ids=["right", "left"])
def test_oblique_round_trip(tmp_path: Path, affine: np.ndarray) -> None:
    data = _data()
    folder, _ = _write(tmp_path, data, affine)
    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-9)  # DS strings hold ~14 digits


@pytest.mark.parametrize("orientation", ["PIL", "ASL", "LPS", "PIR"])
def test_sagittal_and_other_orientations_round_trip(tmp_path: Path, orientation: str) -> None:
    data = _data((6, 8, 5))
    affine = affine_from_spacing((0.8, 0.6, 3.5), orientation)
    affine[:3, 3] = [30.0, -15.0, 42.0]
    folder, _ = _write(tmp_path, data, affine)
    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-12)


def test_single_slice_uses_slice_thickness(tmp_path: Path) -> None:
    data = _data((4, 3, 1))
    folder, _ = _write(tmp_path, data)
    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, _axial_affine())


def test_geometry_tags_follow_lps_convention(tmp_path: Path) -> None:
    """IOP row direction = increasing column index i; RAS +x is LPS -x."""
    data = _data((7, 5, 6))
    folder, paths = _write(tmp_path, data)
    ds = pydicom.dcmread(paths[2])
    assert (ds.Rows, ds.Columns) == (5, 7)
    assert [float(v) for v in ds.ImageOrientationPatient] == [-1, 0, 0, 0, -1, 0]
    assert [float(v) for v in ds.PixelSpacing] == [0.75, 0.5]
    assert [float(v) for v in ds.ImagePositionPatient] == [40.0, -12.5, 80.25 + 2 * 3.0]
    assert ds.InstanceNumber == 3
    np.testing.assert_array_equal(ds.pixel_array, data[:, :, 2].T)


def test_header_fields_written_and_read_back(tmp_path: Path) -> None:
    folder, paths = _write(tmp_path)
    ds = pydicom.dcmread(paths[0])  # no force: valid file meta and preamble
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == MRImageStorage and ds.Modality == "MR"
    assert ds.PatientAge == "045Y" and ds.PatientSex == "F"
    assert ds.MRAcquisitionType == "2D"
    assert float(ds.SliceThickness) == 3.0 and float(ds.SpacingBetweenSlices) == 3.0
    header = read_dicom_series(folder).header
    expected = {**HEADER, "age_years": 45}
    for key, value in expected.items():
        assert header[key] == value, key
    assert header["slice_thickness_mm"] == 3.0
    assert header["pixel_spacing_mm"] == (0.75, 0.5)


def test_absent_header_values_are_omitted(tmp_path: Path) -> None:
    folder, paths = _write(tmp_path, age_years=None, weight_kg=None, sex=None, te_ms=None)
    ds = pydicom.dcmread(paths[0])
    for keyword in ("PatientAge", "PatientWeight", "PatientSex", "EchoTime"):
        assert keyword not in ds
    header = read_dicom_series(folder).header
    assert header["age_years"] is None and header["weight_kg"] is None
    assert header["sex"] is None and header["te_ms"] is None


def test_shuffled_names_do_not_reveal_order(tmp_path: Path) -> None:
    data = _data((4, 4, 8))
    folder, paths = _write(tmp_path, data)
    slice_order = [p.name for p in paths]
    assert sorted(os.listdir(folder)) != slice_order
    assert os.listdir(folder) != slice_order
    assert all(p.parent == folder and p.suffix == ".dcm" for p in paths)
    assert not [name for name in os.listdir(folder) if name.startswith(".")]  # no temp files left
    np.testing.assert_array_equal(read_dicom_series(folder).data, data)


def test_seed_makes_names_reproducible(tmp_path: Path) -> None:
    a = write_dicom_series(_data(), _axial_affine(), tmp_path / "a", HEADER, rng_seed=11)
    b = write_dicom_series(_data(), _axial_affine(), tmp_path / "b", HEADER, rng_seed=11)
    assert [p.name for p in a] == [p.name for p in b]


def test_instance_number_fallback(tmp_path: Path) -> None:
    data = _data()
    folder, paths = _write(tmp_path, data)
    for path in paths:
        _edit(path, ImagePositionPatient=None)
    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.header["slice_order"] == "instance_number"
    assert vol.spacing_mm == pytest.approx((0.5, 0.75, 3.0))


def test_rescale_slope_and_intercept_applied(tmp_path: Path) -> None:
    data = _data()
    folder, paths = _write(tmp_path, data)
    for path in paths:
        _edit(path, RescaleSlope="2", RescaleIntercept="-10")
    np.testing.assert_array_equal(read_dicom_series(folder).data, data * 2 - 10)


# ------------------------------------------------------------------------------ errors
def test_truncated_file(tmp_path: Path) -> None:
    folder, paths = _write(tmp_path)
    victim = paths[3]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    err = _raises(victim, read_dicom_series, folder)
    # a cut inside an element reads "truncated or corrupt"; a cut that happens to fall on the
    # boundary before the pixel data leaves a valid header-only file: "no pixel data ... truncated"
    assert "truncated" in str(err)


def test_truncated_pixel_data(tmp_path: Path) -> None:
    folder, paths = _write(tmp_path, _data((40, 40, 3)))
    victim = paths[1]
    victim.write_bytes(victim.read_bytes()[:-100])
    assert "truncated" in str(_raises(victim, read_dicom_series, folder))


def test_folder_of_only_non_dicom_files(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "README.txt").write_text("exported by the scanner\n")
    err = _raises(folder, read_dicom_series, folder)
    assert "no DICOM files" in str(err) and "README.txt" in str(err)


def test_file_without_pixel_data(tmp_path: Path) -> None:
    folder, paths = _write(tmp_path)
    _edit(paths[0], PixelData=None)
    assert "no pixel data" in str(_raises(paths[0], read_dicom_series, folder))


def test_missing_and_empty_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert "not found" in str(_raises(missing, read_dicom_series, missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty" in str(_raises(empty, read_dicom_series, empty))


def test_two_series_in_one_folder(tmp_path: Path) -> None:
    folder, _ = _write(tmp_path)
    other = write_dicom_series(_data(), _axial_affine(), tmp_path / "other", HEADER)
    shutil.copy(other[0], folder / "stray.dcm")
    err = _raises(folder, read_dicom_series, folder)
    assert "2 series" in str(err)


def test_duplicate_position(tmp_path: Path) -> None:
    folder, paths = _write(tmp_path)
    twin = folder / "twin.dcm"
    shutil.copy(paths[2], twin)
    _edit(twin, SOPInstanceUID=generate_uid())
    err = _raises(folder, read_dicom_series, folder)
    assert "duplicate slice position" in str(err)
    assert paths[2].name in str(err) or twin.name in str(err)


def test_missing_slice_is_a_gap(tmp_path: Path) -> None:
    folder, paths = _write(tmp_path)
    paths[2].unlink()
    with pytest.raises(DataError, match="not evenly spaced"):
        read_dicom_series(folder)


def test_inconsistent_rows_columns(tmp_path: Path) -> None:
    folder, paths = _write(tmp_path)
    ds = pydicom.dcmread(paths[4])
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, :-1]).tobytes()
    ds.Columns = ds.Columns - 1
    ds.save_as(paths[4], enforce_file_format=True)
    assert "Rows x Columns" in str(_raises(paths[4], read_dicom_series, folder))


def test_no_position_and_no_instance_number(tmp_path: Path) -> None:
    folder, paths = _write(tmp_path)
    for path in paths:
        _edit(path, ImagePositionPatient=None, InstanceNumber=None)
    assert "cannot order slices" in str(_raises(folder, read_dicom_series, folder))


def test_writer_rejects_values_outside_uint16(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint16"):
        write_dicom_series(_data() - 100, _axial_affine(), tmp_path / "neg", HEADER)
    with pytest.raises(ValueError, match="uint16"):
        write_dicom_series(_data() + 70000, _axial_affine(), tmp_path / "big", HEADER)
    with pytest.raises(ValueError, match="whole numbers"):
        write_dicom_series(_data() + 0.5, _axial_affine(), tmp_path / "frac", HEADER)


def test_writer_refuses_non_empty_folder(tmp_path: Path) -> None:
    folder, _ = _write(tmp_path)
    with pytest.raises(FileExistsError):
        write_dicom_series(_data(), _axial_affine(), folder, HEADER)


# ------------------------------------------------------------------------------ scanner exports
def _sitk_read(folder: Path, series_uid: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Data (i, j, k) and RAS affine as SimpleITK/GDCM read the folder: an independent reader."""
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder), series_uid)
    reader.SetFileNames(names)
    image = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), LPS_FLIP @ lps


def _assert_same_as_sitk(folder: Path, vol, series_uid: str = "") -> None:
    data, affine = _sitk_read(folder, series_uid)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-6)


def _add_strays(folder: Path) -> None:
    (folder / "README.txt").write_text("Exported by the scanner console.\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1\x00\x00\x10\x00 not dicom at all")
    (folder / "thumb.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + bytes(200) + b"\xff\xd9")


def test_stray_files_and_dicomdir_are_skipped(tmp_path: Path) -> None:
    data = _data()
    folder, paths = _write(tmp_path, data)
    fileset = FileSet()
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber = "20260101", "120000", "1", 1  # DICOMDIR needs them
        fileset.add(ds)
    fileset.write(tmp_path / "media")
    shutil.copy(tmp_path / "media" / "DICOMDIR", folder / "DICOMDIR")  # known by its name
    shutil.copy(tmp_path / "media" / "DICOMDIR", folder / "INDEX")  # known by its SOP class
    _add_strays(folder)
    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_array_equal(vol.affine, _axial_affine())
    assert vol.header["n_files"] == data.shape[2]
    _assert_same_as_sitk(folder, vol)


def test_files_without_preamble_or_suffix(tmp_path: Path) -> None:
    """Half the files lose the preamble and the .dcm suffix; two of those also lose the file meta."""
    data = _data()
    folder, paths = _write(tmp_path, data, _oblique_affine())
    for n, path in enumerate(paths[::2]):
        ds = pydicom.dcmread(path)
        ds.preamble = None
        if n < 2:  # a bare implicit-VR dataset, as old exports write
            del ds.file_meta
            pydicom.dcmwrite(folder / f"IM{n:04d}", ds, implicit_vr=True, little_endian=True)
        else:
            pydicom.dcmwrite(folder / f"IM{n:04d}", ds, enforce_file_format=False)
        path.unlink()
    starts = {(folder / f"IM{n:04d}").read_bytes()[:2] for n in range(len(paths[::2]))}
    assert starts == {b"\x08\x00", b"\x02\x00"}  # first tag (0008,...) and (0002,...): no preamble
    _add_strays(folder)
    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, _oblique_affine(), atol=1e-9)
    _assert_same_as_sitk(folder, vol)


def test_several_series_refused_naming_each_or_picked(tmp_path: Path) -> None:
    data, other_data = _data(), _data(seed=1)
    folder, _ = _write(tmp_path, data, series_uid="1.2.826.0.1.1", series_description="SAG PD FS")
    other = write_dicom_series(other_data, _oblique_affine(), tmp_path / "other",
                               {**HEADER, "series_uid": "1.2.826.0.1.2", "series_description": "COR T1"})
    for path in other[:4]:
        shutil.copy(path, folder / f"other_{path.name}")
    err = str(_raises(folder, read_dicom_series, folder))
    assert "\n" not in err and "2 series" in err
    assert "1.2.826.0.1.1 'SAG PD FS' (6 files)" in err and "1.2.826.0.1.2 'COR T1' (4 files)" in err
    vol = read_dicom_series(folder, series_uid="1.2.826.0.1.1")
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_array_equal(vol.affine, _axial_affine())
    assert vol.header["series_uid"] == "1.2.826.0.1.1" and vol.header["n_files"] == 6
    _assert_same_as_sitk(folder, vol, "1.2.826.0.1.1")
    picked = read_dicom_series(folder, series_uid="1.2.826.0.1.2")  # 4 of the 6 slices
    np.testing.assert_array_equal(picked.data.shape, (7, 5, 4))
    err = str(_raises(folder, read_dicom_series, folder, "1.2.3.404"))
    assert "no series with SeriesInstanceUID 1.2.3.404" in err and "'COR T1' (4 files)" in err


def _gdcm_transcode(path: Path, gdcm_syntax: str) -> None:
    """Re-encode one file in place with GDCM (python-gdcm): pydicom cannot encode the JPEG
    processes (baseline, lossless SV1), GDCM can."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read(), path
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, gdcm_syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change(), f"GDCM could not encode {path.name}"
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write(), path


def _as_8bit(path: Path) -> None:
    """Store a file's pixels as 8 bits (what JPEG baseline encodes); values must fit."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    assert pixels.max() < 256
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)


SYNTAXES = {  # syntax -> how the test encodes it
    "rle": (RLELossless, "pydicom"), "deflate": (DeflatedExplicitVRLittleEndian, "pydicom"),
    "jpeg_ls": (JPEGLSLossless, "pydicom"), "jpeg_2000": (JPEG2000Lossless, "pydicom"),
    "jpeg_lossless": (JPEGLosslessSV1, "JPEGLosslessProcess14_1"), "jpeg_baseline": (JPEGBaseline8Bit, "JPEGBaselineProcess1"),
}


@pytest.mark.parametrize("name", list(SYNTAXES))
def test_compressed_transfer_syntaxes(tmp_path: Path, name: str) -> None:
    """Each syntax written by an encoder (pydicom: RLE, deflate, JPEG-LS via pyjpegls, JPEG 2000
    via openjpeg; GDCM: JPEG lossless SV1 and baseline), read back through pydicom's handlers
    (pylibjpeg's libjpeg/openjpeg plugins, pyjpegls) and checked against the data written and
    against SimpleITK (GDCM's decoders): exact for the lossless ones; JPEG baseline is lossy
    (8-bit, its values must stay within a few grey levels of the data and match GDCM's decode to
    1 level, the rounding of two IDCT implementations)."""
    syntax, encoder = SYNTAXES[name]
    lossy = name == "jpeg_baseline"
    data = _data((64, 48, 4)) % 4096  # 12-bit values; JPEG 2000's 6 resolutions need > 32 px a side
    if lossy:
        yy, xx = np.meshgrid(np.arange(48), np.arange(64))
        data = np.stack([40 + 2 * xx + 1 * yy + 3 * k for k in range(4)], axis=-1).astype(np.float32)  # smooth: JPEG's case
    folder, paths = _write(tmp_path, data, _oblique_affine())
    for path in paths:
        if lossy:
            _as_8bit(path)
        if encoder != "pydicom":
            _gdcm_transcode(path, encoder)
            continue
        ds = pydicom.dcmread(path)
        if syntax == DeflatedExplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = syntax
        else:
            ds.compress(syntax)
        ds.save_as(path, enforce_file_format=True)
    assert all(pydicom.dcmread(p).file_meta.TransferSyntaxUID == syntax for p in paths)
    vol = read_dicom_series(folder)
    np.testing.assert_allclose(vol.affine, _oblique_affine(), atol=1e-9)
    sitk_data, sitk_affine = _sitk_read(folder)
    np.testing.assert_allclose(vol.affine, sitk_affine, atol=1e-6)
    if lossy:
        assert np.abs(vol.data - data).max() <= 4
        assert np.abs(vol.data - sitk_data).max() <= 1
    else:
        np.testing.assert_array_equal(vol.data, data)
        np.testing.assert_array_equal(vol.data, sitk_data)


def _enhanced(paths: list[Path], out: Path, frame_order: list[int]) -> None:
    """One Enhanced MR Image file built from a classic series: geometry, spacing, rescale and
    timing in the shared functional groups, each frame's position and echo time in its
    per-frame group, the frames stored in ``frame_order`` (not along the normal)."""
    slices = [pydicom.dcmread(p) for p in paths]
    first = slices[0]
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword in ("PatientID", "PatientSex", "PatientAge", "Manufacturer", "MagneticFieldStrength", "StudyInstanceUID",
                    "SeriesInstanceUID", "SeriesDescription", "Rows", "Columns", "SamplesPerPixel",
                    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        if keyword in first:
            setattr(ds, keyword, first.get(keyword))
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.NumberOfFrames = "MR", len(frame_order)

    def item(**values) -> pydicom.Dataset:
        d = pydicom.Dataset()
        for k, v in values.items():
            setattr(d, k, v)
        return d

    shared = item(
        PixelMeasuresSequence=[item(PixelSpacing=first.PixelSpacing, SliceThickness=first.SliceThickness)],
        PlaneOrientationSequence=[item(ImageOrientationPatient=first.ImageOrientationPatient)],
        PixelValueTransformationSequence=[item(RescaleSlope=2, RescaleIntercept=-5, RescaleType="US")],
        MRTimingAndRelatedParametersSequence=[item(RepetitionTime=first.RepetitionTime, FlipAngle=first.FlipAngle)])
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [
        item(PlanePositionSequence=[item(ImagePositionPatient=slices[k].ImagePositionPatient)],
             MREchoSequence=[item(EffectiveEchoTime=first.EchoTime)],
             FrameContentSequence=[item(InStackPositionNumber=k + 1)]) for k in frame_order]
    ds.PixelData = b"".join(slices[k].PixelData for k in frame_order)
    ds.save_as(out, enforce_file_format=True)


def test_enhanced_multiframe_mr_reads_frame_by_frame(tmp_path: Path) -> None:
    """Geometry only in the functional groups, a rescale (x2 - 5) in the shared group: the volume
    is the data rescaled on the written geometry, as SimpleITK (GDCM) reads the same file; with
    the frames stored out of order it is the same volume (SimpleITK keeps file order, so it is
    compared on the in-order file)."""
    data = _data((12, 10, 6))
    folder, paths = _write(tmp_path, data, _oblique_affine())
    for name, order in (("in_order", [0, 1, 2, 3, 4, 5]), ("shuffled", [3, 0, 5, 1, 4, 2])):
        enhanced = tmp_path / name
        enhanced.mkdir()
        _enhanced(paths, enhanced / "IM0001", frame_order=order)
        _add_strays(enhanced)
        vol = read_dicom_series(enhanced)
        np.testing.assert_array_equal(vol.data, data * 2 - 5)
        np.testing.assert_allclose(vol.affine, _oblique_affine(), atol=1e-9)
        assert vol.header["te_ms"] == HEADER["te_ms"] and vol.header["tr_ms"] == HEADER["tr_ms"]
        assert vol.header["n_files"] == 1 and vol.header["manufacturer"] == HEADER["manufacturer"]
    image = sitk.ReadImage(str(tmp_path / "in_order" / "IM0001"))
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    np.testing.assert_allclose(LPS_FLIP @ lps, _oblique_affine(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(2, 1, 0), data * 2 - 5)
    shutil.copy(paths[0], tmp_path / "shuffled" / "extra.dcm")
    err = str(_raises(tmp_path / "shuffled", read_dicom_series, tmp_path / "shuffled"))
    assert "mixes an enhanced (multi-frame) file" in err
