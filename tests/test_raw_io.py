"""Raw containers (NIfTI, NPZ, HDF5, MATLAB), masks, volume checks and their error messages."""
from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io
from nibabel.eulerangles import euler2mat

from mskseg_lib.data.errors import DataError
from mskseg_lib.data.raw_io import (
    list_keys,
    read_array,
    read_image,
    read_mask,
    read_values,
    write_container,
    write_nifti,
)
from mskseg_lib.data.volume import (
    Volume,
    affine_from_spacing,
    check_finite,
    check_labels,
    check_same_grid,
    to_canonical,
)

LABELS = {"femur": 1, "tibia": 2, "cartilage": 3}
SHAPE = (6, 5, 4)
CONTAINERS = ["npz", "hdf5", "mat"]
SUFFIX = {"npz": ".npz", "hdf5": ".h5", "mat": ".mat", "nifti": ".nii.gz"}


def _image(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(1).normal(100, 30, shape).astype(np.float32)


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=np.int16)
    mask[1:3, 1:4, 1:3] = 1
    mask[3:5, 0:2, 2:4] = 2
    mask[0, 0, 0] = 3
    return mask


def _affine() -> np.ndarray:
    affine = np.diag([0.4, 0.55, 3.0, 1.0])
    affine[:3, 3] = [-20.0, 15.5, 7.25]
    return affine


def _oblique() -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = euler2mat(0.3, 0.25, -0.15) @ np.diag([0.43, 0.61, 2.7])
    affine[:3, 3] = [10.3, -20.1, 5.5]
    return affine


def _raises(file: Path, call, *args, **kwargs) -> DataError:
    """Assert DataError naming ``file``; return it for message checks."""
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    assert file.name in str(info.value)
    return info.value


# ------------------------------------------------------------------------------ errors type
def test_data_error_message_and_attributes() -> None:
    err = DataError(Path("/data/s01.nii.gz"), "mask is empty")
    assert str(err) == "/data/s01.nii.gz: mask is empty"
    assert err.path == Path("/data/s01.nii.gz") and err.problem == "mask is empty"
    assert isinstance(err, ValueError)
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("fmt", CONTAINERS)
def test_container_round_trip_with_affine(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"s01{SUFFIX[fmt]}"
    echoes = np.stack([_image() * f for f in (1.0, 0.7, 0.5)], axis=-1)
    arrays = {
        "image": _image(),
        "mask": _mask(),
        "mask_femur": (_mask() == 1).astype(np.uint8),
        "t2_ms": _image() / 3,
        "echoes": echoes,
        "echo_times_ms": np.array([10.0, 20.0, 30.0]),
        "spin_lock_times_ms": np.array([0.0, 10.0, 40.0], dtype=np.float32),
    }
    assert write_container(path, fmt, arrays, affine=_oblique()) == path
    assert set(list_keys(fmt, path)) == {*arrays, "affine"}
    for key in ("image", "mask", "mask_femur", "t2_ms", "echoes"):
        vol = read_array(fmt, path, key)
        assert vol.data.dtype == arrays[key].dtype, key
        np.testing.assert_array_equal(vol.data, arrays[key])
        np.testing.assert_array_equal(vol.affine, _oblique())
        assert vol.source == path
    assert read_image(fmt, path, key="echoes").shape == echoes.shape
    for key in ("echo_times_ms", "spin_lock_times_ms"):
        values = read_values(fmt, path, key)
        assert values.dtype == arrays[key].dtype
        np.testing.assert_array_equal(values, arrays[key])
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


@pytest.mark.parametrize("fmt", CONTAINERS)
def test_container_round_trip_with_spacing(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"s02{SUFFIX[fmt]}"
    image = _image((5, 4, 1))  # trailing singleton axis must survive (MATLAB drops them)
    write_container(path, fmt, {"image": image}, spacing_mm=(0.3, 0.3, 2.5), orientation="LPS")
    vol = read_image(fmt, path)
    np.testing.assert_array_equal(vol.data, image)
    assert vol.spacing_mm == (0.3, 0.3, 2.5)
    np.testing.assert_array_equal(vol.affine, affine_from_spacing((0.3, 0.3, 2.5), "LPS"))


def test_npz_without_suffix_keeps_its_name(tmp_path: Path) -> None:
    path = tmp_path / "subject"
    write_container(path, "npz", {"image": _image()}, affine=_affine())
    assert [p.name for p in tmp_path.iterdir()] == ["subject"]
    np.testing.assert_array_equal(read_image("npz", path).data, _image())


@pytest.mark.parametrize("affine", [_affine(), _oblique()], ids=["axis-aligned", "oblique"])
def test_nifti_round_trip(tmp_path: Path, affine: np.ndarray) -> None:
    path = write_nifti(tmp_path / "img.nii.gz", _image(), affine)
    vol = read_image("nifti", path)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, _image())
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)  # NIfTI stores the sform as float32
    np.testing.assert_allclose(vol.spacing_mm, np.linalg.norm(affine[:3, :3], axis=0), atol=1e-6)
    assert nib.load(path).header["sform_code"] == 1


def test_nifti_axis_aligned_affine_is_exact(tmp_path: Path) -> None:
    path = write_container(tmp_path / "m.nii", "nifti", {"mask": _mask()}, spacing_mm=(0.5, 0.25, 2.0))
    vol = read_array("nifti", path, "ignored")
    np.testing.assert_array_equal(vol.data, _mask())
    np.testing.assert_array_equal(vol.affine, affine_from_spacing((0.5, 0.25, 2.0)))


def test_dicom_format_delegates(tmp_path: Path) -> None:
    from mskseg_lib.data.dicom_io import write_dicom_series

    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    write_dicom_series(data, _affine(), tmp_path / "dcm", {"patient_id": "P1"})
    vol = read_image("dicom", tmp_path / "dcm")
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, _affine())


# ------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("fmt", ["nifti", *CONTAINERS])
def test_multiclass_mask(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"mask{SUFFIX[fmt]}"
    write_container(path, fmt, {"mask": _mask().astype(np.uint8)}, affine=_affine())
    vol = read_mask(fmt, path, LABELS)
    assert vol.data.dtype == np.int16
    np.testing.assert_array_equal(vol.data, _mask())
    assert vol.header["overlap_voxels"] == 0


@pytest.mark.parametrize("fmt", CONTAINERS)
def test_per_label_container_keys_merge(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"labels{SUFFIX[fmt]}"
    binaries = {f"mask_{name}": (_mask() == value) for name, value in LABELS.items()}
    binaries["mask_tibia"][1, 1, 1] = True  # also femur: tibia comes later and wins
    write_container(path, fmt, binaries, spacing_mm=(0.4, 0.55, 3.0))
    vol = read_mask(fmt, path, LABELS)
    expected = _mask()
    expected[1, 1, 1] = 2
    np.testing.assert_array_equal(vol.data, expected)
    assert vol.header["overlap_voxels"] == 1


def _per_label_folder(tmp_path: Path, affine: np.ndarray | None = None) -> Path:
    folder = tmp_path / "labels"
    for name, value in LABELS.items():
        write_nifti(folder / f"{name}.nii.gz", (_mask() == value).astype(np.uint8), _affine())
    if affine is not None:
        write_nifti(folder / "tibia.nii.gz", (_mask() == 2).astype(np.uint8), affine)
    return folder


def test_nifti_per_label_folder(tmp_path: Path) -> None:
    folder = _per_label_folder(tmp_path)
    overlap = (_mask() == 1).astype(np.uint8)
    overlap[0, 0, 0] = 1  # also cartilage, which comes later in LABELS and wins
    write_nifti(folder / "femur.nii.gz", overlap, _affine())
    vol = read_mask("nifti_per_label", folder, LABELS)
    np.testing.assert_array_equal(vol.data, _mask())
    np.testing.assert_allclose(vol.affine, _affine())
    assert vol.header["overlap_voxels"] == 1
    assert sorted(list_keys("nifti_per_label", folder)) == sorted(LABELS)


def test_unknown_per_label_file(tmp_path: Path) -> None:
    folder = _per_label_folder(tmp_path)
    stray = write_nifti(folder / "patella.nii.gz", (_mask() == 1).astype(np.uint8), _affine())
    assert "unknown label file" in str(_raises(stray, read_mask, "nifti_per_label", folder, LABELS))


def test_per_label_files_on_different_grids(tmp_path: Path) -> None:
    shifted = _affine()
    shifted[0, 3] += 5.0
    folder = _per_label_folder(tmp_path, affine=shifted)
    err = _raises(folder / "tibia.nii.gz", read_mask, "nifti_per_label", folder, LABELS)
    assert "affine differs from image" in str(err)


def test_non_binary_per_label_mask(tmp_path: Path) -> None:
    path = tmp_path / "labels.npz"
    write_container(path, "npz", {"mask_femur": (_mask() == 1) * 2}, affine=_affine())
    assert "not binary" in str(_raises(path, read_mask, "npz", path, LABELS))


def test_non_integer_mask(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "soft.nii.gz", _mask() * 0.5, _affine())
    assert "not integer-valued" in str(_raises(path, read_mask, "nifti", path, LABELS))


def test_unknown_label_value(tmp_path: Path) -> None:
    mask = _mask()
    mask[5, 4, 3] = 9
    path = write_nifti(tmp_path / "mask.nii.gz", mask, _affine())
    err = _raises(path, read_mask, "nifti", path, LABELS)
    assert "unknown label values [9]" in str(err)


def test_unknown_label_key(tmp_path: Path) -> None:
    path = tmp_path / "labels.h5"
    write_container(path, "hdf5", {"mask_meniscus": _mask() == 1}, affine=_affine())
    assert "mask_meniscus" in str(_raises(path, read_mask, "hdf5", path, LABELS))


def test_empty_mask(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "empty.nii.gz", np.zeros(SHAPE, np.uint8), _affine())
    err = _raises(path, read_mask, "nifti", path, LABELS)
    assert "mask is empty (no labelled voxels)" in str(err)


# ------------------------------------------------------------------------------ file errors
@pytest.mark.parametrize("fmt", ["nifti", *CONTAINERS])
def test_missing_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"absent{SUFFIX[fmt]}"
    assert "file not found" in str(_raises(path, read_image, fmt, path))


@pytest.mark.parametrize("fmt", CONTAINERS)
def test_missing_container_key(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"s{SUFFIX[fmt]}"
    write_container(path, fmt, {"t2_ms": _image()}, affine=_affine())
    err = _raises(path, read_image, fmt, path)
    assert "missing key 'image'" in str(err) and "t2_ms" in str(err)
    with pytest.raises(DataError, match="missing key 'mask'"):
        read_mask(fmt, path, LABELS)


def _write_raw(path: Path, fmt: str, arrays: dict[str, np.ndarray]) -> None:
    """Write a container behind write_container's back (it refuses files without geometry)."""
    if fmt == "npz":
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    elif fmt == "hdf5":
        with h5py.File(path, "w") as fh:
            for key, value in arrays.items():
                fh[key] = value
    else:
        scipy.io.savemat(path, arrays)


@pytest.mark.parametrize("fmt", CONTAINERS)
def test_missing_spacing_without_affine(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"s{SUFFIX[fmt]}"
    _write_raw(path, fmt, {"image": _image()})
    err = _raises(path, read_image, fmt, path)
    assert "missing key 'spacing_mm'" in str(err) and "image" in str(err)
    _write_raw(path, fmt, {"image": _image(), "spacing_mm": np.array([1.0, 1.5, 2.0])})
    assert read_image(fmt, path).spacing_mm == (1.0, 1.5, 2.0)  # orientation defaults to RAS
    np.testing.assert_array_equal(read_image(fmt, path).affine, np.diag([1.0, 1.5, 2.0, 1.0]))


@pytest.mark.parametrize("fmt", ["nifti", *CONTAINERS])
def test_corrupt_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"junk{SUFFIX[fmt]}"
    path.write_bytes(b"this is not an image file at all" * 10)
    assert "not a readable" in str(_raises(path, read_image, fmt, path))


def test_truncated_nifti(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "cut.nii.gz", _image((30, 30, 10)), _affine())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "not a readable NIfTI" in str(_raises(path, read_image, "nifti", path))


def test_bad_orientation_in_container(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    np.savez(path, image=_image(), spacing_mm=np.ones(3), orientation=np.array("RRS"))
    assert "orientation" in str(_raises(path, read_image, "npz", path))


# ------------------------------------------------------------------------------ volume checks
def _vol(data: np.ndarray, affine: np.ndarray, name: str) -> Volume:
    return Volume(data=data, affine=affine, source=Path(f"/data/{name}"))


def test_affine_from_spacing_orientations() -> None:
    np.testing.assert_array_equal(affine_from_spacing((1, 2, 3)), np.diag([1, 2, 3, 1]))
    np.testing.assert_array_equal(affine_from_spacing((1, 2, 3), "LPS"), np.diag([-1, -2, 3, 1]))
    pir = affine_from_spacing((1, 2, 3), "PIR")
    np.testing.assert_array_equal(pir[:3, :3], [[0, 0, 3], [-1, 0, 0], [0, -2, 0]])
    assert nib.aff2axcodes(pir) == ("P", "I", "R")
    with pytest.raises(ValueError):
        affine_from_spacing((1, 1, 1), "RRS")


def test_to_canonical_flips_lps_and_keeps_world_coordinates() -> None:
    affine = affine_from_spacing((0.5, 0.8, 3.0), "LPS")
    affine[:3, 3] = [12.0, 9.0, -4.0]
    data = _image()
    vol = _vol(data, affine, "lps.nii.gz")
    vol.header["te_ms"] = 30.0
    canon = to_canonical(vol)
    assert nib.aff2axcodes(canon.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(canon.data, data[::-1, ::-1, :])
    assert canon.header == vol.header and canon.source == vol.source
    ijk = np.array([1, 3, 2, 1])
    world = affine @ ijk
    new_ijk = np.round(np.linalg.solve(canon.affine, world)).astype(int)
    np.testing.assert_allclose(canon.affine @ new_ijk, world)
    assert canon.data[tuple(new_ijk[:3])] == data[1, 3, 2]


def test_to_canonical_moves_only_spatial_axes_of_multi_echo() -> None:
    pir = affine_from_spacing((1, 1, 2), "PIR")
    echoes = np.random.default_rng(0).random((*SHAPE, 3)).astype(np.float32)
    canon = to_canonical(_vol(echoes, pir, "me.h5"))
    assert canon.shape == (SHAPE[2], SHAPE[0], SHAPE[1], 3)
    assert nib.aff2axcodes(canon.affine) == ("R", "A", "S")
    one_echo = to_canonical(_vol(echoes[..., 1], pir, "echo1.h5"))
    np.testing.assert_array_equal(canon.data[..., 1], one_echo.data)
    np.testing.assert_array_equal(canon.affine, one_echo.affine)


def test_check_same_grid_errors() -> None:
    image = _vol(_image(), _affine(), "image.nii.gz")
    check_same_grid(image, _vol(_mask(), _affine(), "mask.nii.gz"))
    bad_shape = _vol(np.zeros((6, 5, 3)), _affine(), "short.nii.gz")
    err = _raises(Path("short.nii.gz"), check_same_grid, image, bad_shape)
    assert "(6, 5, 3)" in str(err) and "(6, 5, 4)" in str(err)
    bad_spacing = _vol(_mask(), np.diag([0.4, 0.55, 3.5, 1.0]), "thick.nii.gz")
    err = _raises(Path("thick.nii.gz"), check_same_grid, image, bad_spacing)
    assert "spacing" in str(err) and "3.5" in str(err) and "3" in str(err)
    moved = _affine()
    moved[2, 3] += 1.0
    err = _raises(Path("moved.nii.gz"), check_same_grid, image, _vol(_mask(), moved, "moved.nii.gz"))
    assert "affine differs from image" in str(err)


def test_mask_shape_and_spacing_mismatch_from_files(tmp_path: Path) -> None:
    image = read_image("nifti", write_nifti(tmp_path / "img.nii.gz", _image(), _affine()))
    small = write_nifti(tmp_path / "small_mask.nii.gz", _mask()[:, :, :3], _affine())
    _raises(small, check_same_grid, image, read_mask("nifti", small, LABELS))
    coarse = write_nifti(tmp_path / "coarse_mask.nii.gz", _mask(), np.diag([0.8, 0.55, 3.0, 1.0]))
    err = _raises(coarse, check_same_grid, image, read_mask("nifti", coarse, LABELS))
    assert "spacing" in str(err)


def test_check_finite_counts_bad_voxels(tmp_path: Path) -> None:
    data = _image()
    data[0, 0, 0] = np.nan
    data[1, 1, 1] = np.inf
    path = write_nifti(tmp_path / "nan_image.nii.gz", data, _affine())
    err = _raises(path, check_finite, read_image("nifti", path))
    assert "2 of 120 voxels" in str(err)
    check_finite(_vol(_mask(), _affine(), "ints"))  # integer data are always finite


def test_check_labels_direct() -> None:
    check_labels(_vol(_mask(), _affine(), "ok.npz"), LABELS.values())
    err = _raises(Path("odd.npz"), check_labels, _vol(_mask() * 2, _affine(), "odd.npz"), LABELS.values())
    assert "[4, 6]" in str(err)
