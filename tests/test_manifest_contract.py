"""The manifest contract: ``read_manifest`` checks every row before any work, and ``prepare_all``
under ``on_bad_input: skip`` records each bad row or subject in skipped.csv, whatever the error."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mskseg_lib.data.errors import DataError
from mskseg_lib.data.prepare import PrepareSettings, prepare_all
from mskseg_lib.data.slice_store import subject_dir
from mskseg_lib.data.sources import RawSource, collect_sources, read_manifest
from mskseg_lib.from_profile import data as fp_data

KNEE = "Knee_3D_CUBE_Research_Anatomical_300"
SPINE = "Spine_2D_T2ax_Clinical_Anatomical_38"
HEADER = "dataset,subject_id,image_format,image_path,mask_format,mask_path"
KNOWN = ("known: Hip_3D_CUBE_Research_Anatomical_42, Thigh_2D_T1ax_Clinical_Anatomical_50, "
         "Shoulder_3D_CUBE_Research_Anatomical_28, ... 14 in all; declare it in a card under the profile's datasets:")
SMALL = {"slice_sizes_px": (256,), "yolo_image_size_px": 256, "yolo_export": False}


def _write(folder: Path, lines: list[str], files: tuple[str, ...] = ("img.nii.gz", "mask.nii.gz")) -> Path:
    """A manifest CSV in ``folder`` (header + ``lines``) next to empty stand-in files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).write_bytes(b"")
    path = folder / "manifest.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def test_raise_lists_every_bad_row_one_line_each(tmp_path):
    m = _write(tmp_path, [
        f"{KNEE},001,nifti,img.nii.gz,nifti,mask.nii.gz",
        "MyLumbar,002,nifti,img.nii.gz,nifti,mask.nii.gz",
        f"{KNEE},003,png,img.nii.gz,nifti,mask.nii.gz",
        f"{KNEE},004,nifti,gone.nii.gz,nifti,mask.nii.gz",
        f"{KNEE},001,nifti,img.nii.gz,nifti,mask.nii.gz",
    ])
    with pytest.raises(DataError) as err:
        read_manifest(m)
    assert str(err.value) == "\n".join([
        f"{m}: 4 bad row(s), nothing prepared:",
        f"{m} row 3 (MyLumbar/002): unknown dataset 'MyLumbar': no dataset card declares it ({KNOWN})",
        f"{m} row 4 ({KNEE}/003): unknown image_format 'png' (known: nifti, npz, hdf5, mat, dicom)",
        f"{m} row 5 ({KNEE}/004): image file not found: {tmp_path / 'gone.nii.gz'}",
        f"{m} row 6 ({KNEE}/001): duplicate subject: dataset '{KNEE}', subject_id '001' is also on row 2",
    ])


def test_unknown_mask_format_and_missing_mask_name_row_and_file(tmp_path):
    m = _write(tmp_path, [f"{KNEE},001,nifti,img.nii.gz,tiff,nomask.nii.gz"])
    with pytest.raises(DataError) as err:
        read_manifest(m)
    assert str(err.value).splitlines()[1:] == [
        f"{m} row 2 ({KNEE}/001): unknown mask_format 'tiff' "
        "(known: nifti, npz, hdf5, mat, nifti_per_label)",
        f"{m} row 2 ({KNEE}/001): mask file not found: {tmp_path / 'nomask.nii.gz'}",
    ]


def test_subject_ids_are_read_as_text(tmp_path):
    m = _write(tmp_path, [f"{KNEE},{sid},nifti,img.nii.gz,nifti,mask.nii.gz" for sid in ("NA", "nan", "007")])
    df = read_manifest(m)
    assert list(df.subject_id) == ["NA", "nan", "007"]
    assert list(df.dataset) == [KNEE] * 3


def test_skip_leaves_bad_rows_out_and_records_them(tmp_path):
    m = _write(tmp_path, [
        f"{KNEE},001,nifti,img.nii.gz,nifti,mask.nii.gz",
        f"{KNEE},002,nifti,gone.nii.gz,nifti,mask.nii.gz",
    ])
    notes: list = []
    df = collect_sources(None, [RawSource("manifest", m)], notes, on_bad_input="skip")
    assert list(df.subject_id) == ["001"]
    assert [n.line() for n in notes] == [f"{m} row 3 ({KNEE}/002): image file not found: {tmp_path / 'gone.nii.gz'}"]
    with pytest.raises(DataError, match="row 3"):
        collect_sources(None, [RawSource("manifest", m)], [])


def test_skip_records_any_error_type_and_writes_skipped_csv_when_nothing_survives(tmp_path):
    """An unknown format that reaches ``prepare_subject`` (a table, not a checked CSV) raises
    ValueError: recorded with its type under skip, and skipped.csv is written before the one
    error that says nothing could be prepared."""
    for name in ("img.nii.gz", "mask.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    table = pd.DataFrame([{"dataset": KNEE, "subject_id": "001", "image_format": "bogus",
                           "image_path": str(tmp_path / "img.nii.gz"), "mask_format": "nifti",
                           "mask_path": str(tmp_path / "mask.nii.gz"), "maps": ""}])
    out = tmp_path / "prepared"
    with pytest.raises(ValueError, match="unknown format 'bogus'"):
        prepare_all(table, out, PrepareSettings(**SMALL), progress=False)
    with pytest.raises(DataError) as err:
        prepare_all(table, out, PrepareSettings(on_bad_input="skip", **SMALL), progress=False)
    skipped_csv = out / "skipped.csv"
    assert str(err.value) == f"{skipped_csv}: nothing could be prepared: all 1 problem(s) are listed in this file"
    skipped = pd.read_csv(skipped_csv, dtype={"subject_id": str})
    assert skipped.to_dict("records")[0] == {
        "row": pytest.approx(float("nan"), nan_ok=True), "dataset": KNEE, "subject_id": "001",
        "file": str(tmp_path / "img.nii.gz"),
        "problem": "ValueError: unknown format 'bogus'; expected one of nifti, npz, hdf5, mat, dicom"}


def test_skip_prepares_the_good_rows_and_keeps_prepared_subjects(tiny_cfg, tmp_path):
    tiny_cfg["cohort"]["datasets"] = [SPINE]
    tiny_cfg["cohort"]["subjects_per_dataset"] = 2
    cohort_manifest = fp_data.generate(tiny_cfg, progress=False)
    rows = pd.read_csv(cohort_manifest, dtype=str, keep_default_na=False)
    good = rows.iloc[0]
    folder = Path(cohort_manifest).parent
    m = folder / "site.csv"
    lines = [HEADER,
             f"{good.dataset},{good.subject_id},{good.image_format},{good.image_path},"
             f"{good.mask_format},{good.mask_path}",
             f"{good.dataset},NA,nifti,nope.nii.gz,nifti,{good.mask_path}"]
    m.write_text("\n".join(lines) + "\n")
    out = tmp_path / "prepared"
    settings = replace(fp_data.prepare_settings(tiny_cfg), on_bad_input="skip", yolo_export=False)
    first = prepare_all(m, out, settings, progress=False)
    assert first.n_subjects == 1
    skipped = pd.read_csv(first.skipped_csv, dtype={"subject_id": str}, keep_default_na=False)
    assert skipped.to_dict("records") == [{
        "row": 3, "dataset": SPINE, "subject_id": "NA", "file": str(folder / "nope.nii.gz"),
        "problem": f"{m} row 3 ({SPINE}/NA): image file not found: {folder / 'nope.nii.gz'}"}]
    # the good subject's mask disappears: under skip its row is recorded, its prepared folder kept
    record = subject_dir(out, SPINE, good.subject_id) / "record.json"
    before = (record.stat().st_mtime_ns, json.loads(record.read_text())["fingerprint"])
    (folder / good.mask_path).rename(folder / "moved.nii.gz")
    with pytest.raises(DataError) as err:
        prepare_all(m, out, settings, progress=False)
    assert str(err.value) == f"{out / 'skipped.csv'}: nothing could be prepared: all 3 problem(s) are listed in this file"
    mask = folder / good.mask_path  # row 3 names the same (now missing) mask
    assert pd.read_csv(out / "skipped.csv")[["row", "file"]].values.tolist() == [
        [2, str(mask)], [3, str(folder / "nope.nii.gz")], [3, str(mask)]]
    assert (record.stat().st_mtime_ns, json.loads(record.read_text())["fingerprint"]) == before


def test_series_uid_column_picks_one_series_of_a_scanner_folder(tmp_path):
    """A DICOM export folder holds the wanted series and a localiser: without ``series_uid`` the
    row is one line naming both series; with it the wanted one is prepared (and the column is
    read as text: a UID is never a number)."""
    import nibabel as nib

    from mskseg_lib.data.dicom_io import write_dicom_series
    from mskseg_lib.data.volume import affine_from_spacing

    rng = np.random.default_rng(0)
    data = rng.integers(50, 400, (24, 20, 6)).astype(np.float32)
    affine = affine_from_spacing((0.5, 0.5, 3.0))
    export = tmp_path / "export"
    write_dicom_series(data, affine, export, {"series_uid": "1.2.826.0.1.3680043.1", "series_description": "SAG PD"})
    localiser = write_dicom_series(data[:, :, :2], affine, tmp_path / "loc",
                                   {"series_uid": "1.2.826.0.1.3680043.2", "series_description": "LOCALISER"})
    for path in localiser:
        path.rename(export / f"loc_{path.name}")
    labels = np.zeros(data.shape, np.int16)
    labels[6:14, 5:15, 1:5] = 1
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "mask.nii.gz")
    rows = {"plain": f"{KNEE},001,dicom,export,nifti,mask.nii.gz",
            "picked": f"{KNEE},001,dicom,export,nifti,mask.nii.gz,1.2.826.0.1.3680043.1"}
    (tmp_path / "plain.csv").write_text(f"{HEADER}\n{rows['plain']}\n")
    (tmp_path / "picked.csv").write_text(f"{HEADER},series_uid\n{rows['picked']}\n")
    settings = PrepareSettings(min_component_px=0, min_component_voxels=0, on_bad_input="skip", **SMALL)
    with pytest.raises(DataError) as err:
        prepare_all(tmp_path / "plain.csv", tmp_path / "out_plain", settings, progress=False)
    problem = pd.read_csv(tmp_path / "out_plain" / "skipped.csv")["problem"].iloc[0]
    assert "folder holds 2 series" in problem and "'LOCALISER' (2 files)" in problem and "\n" not in problem
    assert "nothing could be prepared" in str(err.value)
    manifest = read_manifest(tmp_path / "picked.csv")
    assert manifest["series_uid"].tolist() == ["1.2.826.0.1.3680043.1"]
    done = prepare_all(tmp_path / "picked.csv", tmp_path / "out", settings, progress=False)
    assert done.n_subjects == 1
    image = nib.load(subject_dir(tmp_path / "out", KNEE, "001") / "image.nii.gz")
    assert sorted(image.shape) == sorted(data.shape)  # the 6-slice series, not the 2-slice localiser
