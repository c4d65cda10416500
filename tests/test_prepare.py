"""``prepare`` end to end on a tiny cohort: tables, orientation, resume, bad inputs, real data."""
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mskseg_lib.data.catalog import REAL_SPINE
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.prepare import prepare_all, prepare_subject, subject_dir
from mskseg_lib.data.slice_store import load_slice, measure_storage
from mskseg_lib.data.sources import collect_sources, real_spine_manifest
from mskseg_lib.data.tables import load_tables

SUBJECT_COLUMNS = {"dataset", "subject_id", "anatomy", "plane", "acquisition", "sequence", "protocol_type", "task",
                   "sex", "age_years", "weight_kg", "bmi", "vendor", "field_strength_t", "te_ms", "tr_ms",
                   "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm", "rows_px", "cols_px", "n_slices",
                   "n_processed_slices", "split", "image_nifti", "mask_nifti", "slices_256_image"}
SLICE_COLUMNS = {"dataset", "subject_id", "slice_index", "store_index", "split", "rows_px", "cols_px",
                 "pixel_spacing_row_mm", "pixel_spacing_col_mm", "labels_present", "boxes_json",
                 "instance_boxes_json", "voxel_counts_json"}


@pytest.fixture
def prepared(tiny_cfg):
    return tiny_cfg, prepare_all(tiny_cfg, progress=False)


def test_tables_orientation_and_spacing(prepared):
    cfg, out = prepared
    subjects, slices = load_tables(cfg)
    assert SUBJECT_COLUMNS <= set(subjects.columns) and SLICE_COLUMNS <= set(slices.columns)
    assert len(subjects) == 6 and out.n_slices == len(slices)
    records = {f"{r.dataset}/{r.subject_id}": r for r in subjects.itertuples()}
    truth_manifest = pd.read_csv(Path(cfg["paths"]["data_root"]) / "cohort" / "manifest.csv")
    for row in truth_manifest.itertuples():
        rec = json.loads((Path(cfg["paths"]["data_root"]) / "cohort" / row.image_path).parent.joinpath("record.json").read_text())
        s = records[f"{row.dataset}/{row.subject_id}"]
        proto = rec["protocol"]
        assert s.pixel_spacing_mm == pytest.approx(proto["pixel_spacing_mm"], rel=1e-4)
        assert s.slice_thickness_mm == pytest.approx(proto["slice_thickness_mm"], rel=1e-4)
        assert s.te_ms == pytest.approx(proto["te_ms"])  # from DICOM headers for the DICOM set
        img = nib.load(s.image_nifti)
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")  # canonical orientation
        mask = np.asarray(nib.load(s.mask_nifti).dataobj)
        assert mask.shape == img.shape
    # slice boxes agree with the stored mask slices
    row = slices.iloc[0]
    _, msk = load_slice(cfg, row.dataset, row.subject_id, int(row.store_index), 256)
    scale = 256 / max(row.rows_px, row.cols_px)
    for value, box in json.loads(row.boxes_json).items():
        ys, xs = np.nonzero(msk == int(value))
        assert abs(xs.min() - box[0] * scale) <= scale + 1 and abs(ys.max() - box[3] * scale) <= scale + 1
    summary = pd.read_csv(out.summary_csv)
    assert summary.subjects.sum() == 6 and (summary.train + summary.val + summary.test == summary.subjects).all()
    assert set(subjects.split) == {"train", "val", "test"}


def test_rerun_skips_finished_subjects(prepared):
    cfg, _ = prepared
    subjects, _ = load_tables(cfg)
    rec = subject_dir(cfg, subjects.dataset[0], subjects.subject_id[0]) / "record.json"
    before = rec.stat().st_mtime_ns
    prepare_all(cfg, progress=False)
    assert rec.stat().st_mtime_ns == before


def test_storage_is_compact(prepared):
    cfg, _ = prepared
    subjects, _ = load_tables(cfg)
    m = measure_storage(cfg, subjects, 256, n_reads=20)
    assert m["bytes_per_slice"] < 2 * 256 * 256 + 1024  # uint8 image + mask, npy header
    assert m["load_seconds_per_slice"] < 0.05


def test_yolo_export(prepared):
    cfg, out = prepared
    _, slices = load_tables(cfg)
    ds = "Knee_3D_CUBE_Research_Anatomical_300"
    meta = (out.yolo_dir / f"{ds}.yaml").read_text()
    assert "femoral_cartilage" in meta and "images/val" in meta
    row = slices[slices.dataset == ds].iloc[0]
    label_file = out.yolo_dir / ds / "labels" / row.split / f"{row.subject_id}_{row.slice_index:04d}.txt"
    lines = label_file.read_text().split()
    n_boxes = sum(len(v) for v in json.loads(row.instance_boxes_json).values())
    assert len(lines) == 5 * n_boxes
    vals = np.array(lines, float).reshape(-1, 5)
    assert ((vals[:, 1:] > 0) & (vals[:, 1:] <= 1)).all()


# ----------------------------------------------------------------------------- bad inputs
def _row(cfg, dataset):
    return next(r for r in collect_sources(cfg).to_dict("records") if r["dataset"] == dataset)


def _copy_subject(row, tmp):
    src = Path(row["image_path"]).parent if not Path(row["image_path"]).is_dir() else Path(row["image_path"]).parent
    dst = tmp / "copy"
    shutil.copytree(src, dst)
    return {**row, "image_path": str(dst / Path(row["image_path"]).name), "mask_path": str(dst / Path(row["mask_path"]).name),
            "subject_id": row["subject_id"] + "-bad"}


def _assert_error(cfg, row, culprit: str, phrase: str):
    with pytest.raises(DataError) as err:
        prepare_subject(row, cfg)
    assert culprit in str(err.value) and phrase in str(err.value).lower()
    d = subject_dir(cfg, row["dataset"], row["subject_id"])
    assert not d.exists() and not list(d.parent.glob(f".{d.name}.tmp*"))  # nothing half-written


KNEE = "Knee_3D_CUBE_Research_Anatomical_300"
SPINE = "Spine_2D_T2ax_Clinical_Anatomical_38"


def test_nan_image(tiny_cfg, tmp_path):
    row = _copy_subject(_row(tiny_cfg, KNEE), tmp_path)
    img = nib.load(row["image_path"])
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), row["image_path"])
    _assert_error(tiny_cfg, row, "image.nii.gz", "nan")


def test_shape_and_spacing_mismatch(tiny_cfg, tmp_path):
    row = _copy_subject(_row(tiny_cfg, KNEE), tmp_path)
    m = nib.load(row["mask_path"])
    data, aff = np.asarray(m.dataobj).copy(), m.affine.copy()
    nib.save(nib.Nifti1Image(data[:-1], aff), row["mask_path"])
    _assert_error(tiny_cfg, row, "mask.nii.gz", "shape")
    aff[:3, :3] *= 1.5
    nib.save(nib.Nifti1Image(data, aff), row["mask_path"])
    _assert_error(tiny_cfg, row, "mask.nii.gz", "spacing")


def test_empty_mask_and_unknown_label(tiny_cfg, tmp_path):
    row = _copy_subject(_row(tiny_cfg, KNEE), tmp_path)
    m = nib.load(row["mask_path"])
    data = np.asarray(m.dataobj).copy()
    nib.save(nib.Nifti1Image(np.zeros_like(data), m.affine), row["mask_path"])
    _assert_error(tiny_cfg, row, "mask.nii.gz", "empty")
    data[data == 1] = 42
    nib.save(nib.Nifti1Image(data, m.affine), row["mask_path"])
    _assert_error(tiny_cfg, row, "mask.nii.gz", "42")


def test_missing_file_and_truncated_dicom(tiny_cfg, tmp_path):
    row = _copy_subject(_row(tiny_cfg, SPINE), tmp_path)
    dicoms = sorted(Path(row["image_path"]).iterdir())
    data = dicoms[2].read_bytes()
    dicoms[2].write_bytes(data[: len(data) // 2])
    _assert_error(tiny_cfg, row, dicoms[2].name, "truncated")
    dicoms[2].write_bytes(data)
    gone = {**row, "mask_path": str(Path(row["mask_path"]).with_name("nope.nii.gz"))}
    _assert_error(tiny_cfg, gone, "nope.nii.gz", "not found")


def test_skip_mode_records_the_problem(tiny_cfg):
    manifest = Path(tiny_cfg["paths"]["data_root"]) / "cohort"
    prepare_all(tiny_cfg, progress=False)
    row = pd.read_csv(manifest / "manifest.csv").query("dataset == @KNEE").iloc[0]
    (manifest / row.mask_path).unlink()
    shutil.rmtree(subject_dir(tiny_cfg, KNEE, row.subject_id))
    with pytest.raises(DataError, match="mask.nii.gz"):
        prepare_all(tiny_cfg, progress=False)
    tiny_cfg["prepare"]["on_bad_input"] = "skip"
    out = prepare_all(tiny_cfg, progress=False)
    skipped = pd.read_csv(out.skipped_csv)
    assert list(skipped.subject_id) == [row.subject_id] and "not found" in skipped.problem[0]
    assert out.n_subjects == 5


# ----------------------------------------------------------------------------- real data
@pytest.mark.real_data
def test_real_spine_ingests_with_its_spacing(tiny_cfg, real_spine):
    row = real_spine_manifest(real_spine).to_dict("records")[0]
    tiny_cfg["prepare"]["min_component_px"] = 100
    tiny_cfg["prepare"]["min_component_voxels"] = 1000
    rec = prepare_subject(row, tiny_cfg)
    s = rec["subject"]
    assert s["dataset"] == REAL_SPINE.name and s["slice_axis"] == 2
    assert s["pixel_spacing_mm"] == pytest.approx(1.0) and s["slice_thickness_mm"] == pytest.approx(1.0)
    assert (s["rows_px"], s["cols_px"], s["n_slices"]) == (224, 224, 77)
    assert json.loads(s["labels_present"]) == [1, 2, 3, 4, 5]
    img = nib.load(subject_dir(tiny_cfg, REAL_SPINE.name, row["subject_id"]) / "image.nii.gz")
    assert img.header.get_zooms()[:3] == pytest.approx((1.0, 1.0, 1.0))
    assert 10 <= s["n_processed_slices"] <= 77


def test_dropped_labels_are_absent(tiny_cfg):
    tiny_cfg["prepare"]["drop_labels"] = {KNEE: ["patella", "patellar_cartilage"]}
    row = _row(tiny_cfg, KNEE)
    rec = prepare_subject(row, tiny_cfg)
    present = json.loads(rec["subject"]["labels_present"])
    assert 5 not in present and 6 not in present and {1, 2, 3, 4} <= set(present)
    mask = np.asarray(nib.load(subject_dir(tiny_cfg, KNEE, row["subject_id"]) / "mask.nii.gz").dataobj)
    assert not np.isin(mask, [5, 6]).any()
