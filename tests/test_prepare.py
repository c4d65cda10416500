"""``prepare`` end to end on a tiny cohort: tables, orientation, resume, bad inputs, real data."""
import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mskseg_lib.data.catalog import REAL_SPINE
from mskseg_lib.data.errors import DataError, SettingsError
from mskseg_lib.data.prepare import PrepareSettings, prepare_subject
from mskseg_lib.data.slice_store import load_slice, measure_storage, subject_dir
from mskseg_lib.data.sources import RawSource, collect_sources, real_spine_manifest
from mskseg_lib.data.tables import load_tables
from mskseg_lib.from_profile import data as fp_data

KNEE = "Knee_3D_CUBE_Research_Anatomical_300"
SPINE = "Spine_2D_T2ax_Clinical_Anatomical_38"
SUBJECT_COLUMNS = {"dataset", "subject_id", "anatomy", "plane", "acquisition", "sequence", "protocol_type", "task",
                   "sex", "age_years", "weight_kg", "bmi", "vendor", "field_strength_t", "te_ms", "tr_ms",
                   "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm", "rows_px", "cols_px", "n_slices",
                   "n_processed_slices", "split", "image_nifti", "mask_nifti", "slices_256_image", "resize_mode"}
SLICE_COLUMNS = {"dataset", "subject_id", "slice_index", "store_index", "split", "rows_px", "cols_px", "resize_mode",
                 "pixel_spacing_row_mm", "pixel_spacing_col_mm", "labels_present", "boxes_json",
                 "instance_boxes_json", "voxel_counts_json"}


def prepare_all(cfg, progress=False):
    """The profile's cohort and sources, prepared (what notebooks and ``mskseg prepare`` run)."""
    return fp_data.prepare(cfg, progress=progress)


def prepare_all_explicit(sources, prepared_dir, settings):
    from mskseg_lib.data.prepare import prepare_all as library_prepare_all

    return library_prepare_all(sources, prepared_dir, settings, progress=False)


def _dir(cfg):
    return fp_data.prepared_dir(cfg)


def _prepare_one(row, cfg):
    return prepare_subject(row, fp_data.prepared_dir(cfg), fp_data.prepare_settings(cfg))


def _assert_box_covers(xs, ys, box, fx, fy):
    """Model pixel j shows original pixel floor((j + 0.5) / f): the first model pixel of a box
    starting at x0 has its centre in [x0 f, x0 f + 1), the last in ((x1 + 1) f - 1, (x1 + 1) f]."""
    x0, y0, x1, y1 = box
    for lo_px, hi_px, first, last, f in ((x0, x1, xs.min(), xs.max(), fx), (y0, y1, ys.min(), ys.max(), fy)):
        assert 0 <= first + 0.5 - lo_px * f < 1
        assert 0 < (hi_px + 1) * f - (last + 0.5) <= 1


@pytest.fixture
def prepared(tiny_cfg):
    return tiny_cfg, prepare_all(tiny_cfg, progress=False)


def test_tables_orientation_and_spacing(prepared):
    cfg, out = prepared
    subjects, slices = load_tables(_dir(cfg))
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
    # slice boxes (original pixels) agree with the stored, stretched mask slices: pixel edges
    # x0 .. x1 + 1 scale per axis (256 / cols, 256 / rows) onto the model pixels of the label
    assert set(slices.resize_mode) == {"stretch"} and set(subjects.resize_mode) == {"stretch"}
    for row in slices.groupby("dataset").head(1).itertuples():
        _, msk = load_slice(_dir(cfg), row.dataset, row.subject_id, int(row.store_index), 256)
        fx, fy = 256 / row.cols_px, 256 / row.rows_px
        for value, (x0, y0, x1, y1) in json.loads(row.boxes_json).items():
            ys, xs = np.nonzero(msk == int(value))
            _assert_box_covers(xs, ys, (x0, y0, x1, y1), fx, fy)
    summary = pd.read_csv(out.summary_csv)
    assert summary.subjects.sum() == 6 and (summary.train + summary.val + summary.test == summary.subjects).all()
    assert set(subjects.split) == {"train", "val", "test"}


def test_rerun_skips_finished_subjects(prepared):
    cfg, _ = prepared
    subjects, _ = load_tables(_dir(cfg))
    rec = subject_dir(_dir(cfg), subjects.dataset[0], subjects.subject_id[0]) / "record.json"
    before = rec.stat().st_mtime_ns
    prepare_all(cfg, progress=False)
    assert rec.stat().st_mtime_ns == before


def test_prepare_without_a_profile_gives_the_profiles_tables(prepared, tmp_path):
    """A researcher's call (a manifest CSV, a folder, explicit settings) prepares exactly what the
    profile route prepares."""
    cfg, out = prepared
    settings = PrepareSettings(slice_sizes_px=(256,), clip_percentiles=(1, 99), min_component_px=6,
                               min_component_voxels=30, seed=cfg["seed"], yolo_image_size_px=256)
    assert settings == fp_data.prepare_settings(cfg)
    manifest = fp_data.cohort_dir(cfg) / "manifest.csv"
    mine = prepare_all_explicit(manifest, tmp_path / "prepared", settings)
    ours, theirs = load_tables(mine.root), load_tables(out.root)
    for a, b in zip(ours, theirs):
        paths = [c for c in a.columns if c.startswith("slices_") or c.endswith("_nifti")]
        pd.testing.assert_frame_equal(a.drop(columns=paths), b.drop(columns=paths))
    assert (mine.yolo_dir / "Knee_3D_CUBE_Research_Anatomical_300.yaml").exists()


def test_subject_fingerprints_are_those_of_the_profile_era(prepared):
    """Records keep the fingerprint the pre-settings code computed from the profile (sha256 of the
    row, the per-dataset settings and version 2), so existing prepared folders are reused."""
    cfg, _ = prepared
    subjects, _ = load_tables(_dir(cfg))
    row = _row(cfg, KNEE)
    p = cfg["prepare"]
    legacy = {"min_component_px": p["min_component_px"], "min_component_voxels": p["min_component_voxels"],
              "clip_percentiles": list(p["clip_percentiles"]), "drop_labels": [],
              "slice_sizes_px": list(p["slice_sizes_px"]), "resize_mode": p["resize"]}
    blob = json.dumps({"row": row, "settings": legacy, "version": 2}, sort_keys=True, default=str)
    rec = json.loads((subject_dir(_dir(cfg), KNEE, row["subject_id"]) / "record.json").read_text())
    assert rec["fingerprint"] == hashlib.sha256(blob.encode()).hexdigest()[:16]


@pytest.mark.parametrize("kwargs, phrase", [
    ({"yolo_image_size_px": 512}, "yolo_image_size_px"),
    ({"clip_percentiles": (99, 1)}, "clip_percentiles"),
    ({"per_dataset": {KNEE: {"min_component_pixels": 3}}}, "unknown keys"),
    ({"resize_mode": "crop"}, "resize"),
    ({"split_fractions": (0.5, 0.2, 0.2)}, "split_fractions"),
    ({"on_bad_input": "ignore"}, "on_bad_input")])
def test_bad_settings_are_one_clear_error(kwargs, phrase):
    with pytest.raises(SettingsError, match=phrase):
        PrepareSettings(**kwargs)
    with pytest.raises(SettingsError, match="unknown source type"):
        RawSource("dicom_folder", Path("/nowhere"))


def test_storage_is_compact(prepared):
    cfg, _ = prepared
    subjects, _ = load_tables(_dir(cfg))
    m = measure_storage(subjects, 256, n_reads=20)
    assert m["bytes_per_slice"] < 2 * 256 * 256 + 1024  # uint8 image + mask, npy header
    assert m["load_seconds_per_slice"] < 0.05


def test_yolo_export(prepared):
    cfg, out = prepared
    _, slices = load_tables(_dir(cfg))
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
    # stretched export: a box's normalised centre and size are its fractions of the original slice
    x0, y0, x1, y1 = json.loads(row.instance_boxes_json)[str(int(vals[0, 0]) + 1)][0]
    expected = [(x0 + x1 + 1) / 2 / row.cols_px, (y0 + y1 + 1) / 2 / row.rows_px,
                (x1 + 1 - x0) / row.cols_px, (y1 + 1 - y0) / row.rows_px]
    assert vals[0, 1:] == pytest.approx(expected, abs=1e-6)


def test_yolo_labels_of_a_stretched_non_square_slice_are_fractions_of_the_slice():
    from mskseg_lib.data.preprocess import SliceGeometry
    from mskseg_lib.data.yolo_export import yolo_lines

    # an inclusive box x 3..19, y 5..30 on a 60 x 40 slice: pixel edges 3..20 and 5..31
    stretched = yolo_lines({2: [[3, 5, 19, 30]]}, SliceGeometry(60, 40, 256))
    assert np.array(stretched[0].split(), float) == pytest.approx([1, 11.5 / 40, 18 / 60, 17 / 40, 26 / 60], abs=1e-6)
    # padded: the 40 columns fill 171 of the 256 model pixels, the rows all of them
    padded = yolo_lines({2: [[3, 5, 19, 30]]}, SliceGeometry(60, 40, 256, "pad"))
    f = 171 / 40
    assert np.array(padded[0].split(), float) == pytest.approx(
        [1, 11.5 * f / 256, 18 / 60, 17 * f / 256, 26 / 60], abs=1e-6)


# ----------------------------------------------------------------------------- bad inputs
def _row(cfg, dataset):
    sources = collect_sources(fp_data.generate(cfg, progress=False), fp_data.raw_sources(cfg))
    return next(r for r in sources.to_dict("records") if r["dataset"] == dataset)


def _copy_subject(row, tmp):
    src = Path(row["image_path"]).parent if not Path(row["image_path"]).is_dir() else Path(row["image_path"]).parent
    dst = tmp / "copy"
    shutil.copytree(src, dst)
    return {**row, "image_path": str(dst / Path(row["image_path"]).name), "mask_path": str(dst / Path(row["mask_path"]).name),
            "subject_id": row["subject_id"] + "-bad"}


def _assert_error(cfg, row, culprit: str, phrase: str):
    with pytest.raises(DataError) as err:
        _prepare_one(row, cfg)
    assert culprit in str(err.value) and phrase in str(err.value).lower()
    d = subject_dir(_dir(cfg), row["dataset"], row["subject_id"])
    assert not d.exists() and not list(d.parent.glob(f".{d.name}.tmp*"))  # nothing half-written




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
    shutil.rmtree(subject_dir(_dir(tiny_cfg), KNEE, row.subject_id))
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
    rec = _prepare_one(row, tiny_cfg)
    s = rec["subject"]
    assert s["dataset"] == REAL_SPINE.name and s["slice_axis"] == 2
    assert s["pixel_spacing_mm"] == pytest.approx(1.0) and s["slice_thickness_mm"] == pytest.approx(1.0)
    assert (s["rows_px"], s["cols_px"], s["n_slices"]) == (224, 224, 77)
    assert json.loads(s["labels_present"]) == [1, 2, 3, 4, 5]
    img = nib.load(subject_dir(_dir(tiny_cfg), REAL_SPINE.name, row["subject_id"]) / "image.nii.gz")
    assert img.header.get_zooms()[:3] == pytest.approx((1.0, 1.0, 1.0))
    assert 10 <= s["n_processed_slices"] <= 77


def test_dropped_labels_are_absent(tiny_cfg):
    tiny_cfg["prepare"]["drop_labels"] = {KNEE: ["patella", "patellar_cartilage"]}
    row = _row(tiny_cfg, KNEE)
    rec = _prepare_one(row, tiny_cfg)
    present = json.loads(rec["subject"]["labels_present"])
    assert 5 not in present and 6 not in present and {1, 2, 3, 4} <= set(present)
    mask = np.asarray(nib.load(subject_dir(_dir(tiny_cfg), KNEE, row["subject_id"]) / "mask.nii.gz").dataobj)
    assert not np.isin(mask, [5, 6]).any()


# ----------------------------------------------------------------------------- study settings
def test_every_profile_prepares_as_the_study():
    from mskseg_lib.config import ProfileError, load_profile, validate_profile

    for name in ("fixture", "default", "paper"):
        p = load_profile(name)["prepare"]
        assert p["clip_percentiles"] == [1, 99] and p["resize"] == "stretch", name
    bad = load_profile("fixture")
    bad["prepare"]["resize"] = "crop"
    with pytest.raises(ProfileError, match="prepare.resize"):
        validate_profile(bad, "fixture.yaml")


def _non_square_knee(cfg, tmp):
    """A copy of a knee subject cropped to 60 of its 96 rows in-plane: non-square slices."""
    row = _copy_subject(_row(cfg, KNEE), tmp)
    for key in ("image_path", "mask_path"):
        img = nib.load(row[key])
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[18:78], img.affine), row[key])
    return row


def test_non_square_slices_are_stretched_and_boxes_scale_per_axis(tiny_cfg, tmp_path):
    row = _non_square_knee(tiny_cfg, tmp_path)
    rec = _prepare_one(row, tiny_cfg)
    s0 = next(s for s in rec["slices"] if len(json.loads(s["labels_present"])) >= 2)
    assert s0["resize_mode"] == "stretch" and s0["rows_px"] != s0["cols_px"]
    image, mask = load_slice(_dir(tiny_cfg), KNEE, row["subject_id"], s0["store_index"], 256)
    assert image.shape == mask.shape == (256, 256)
    fx, fy = 256 / s0["cols_px"], 256 / s0["rows_px"]
    for value, (x0, y0, x1, y1) in json.loads(s0["boxes_json"]).items():
        ys, xs = np.nonzero(mask == int(value))  # pixel edges x0 .. x1 + 1 scaled per axis
        _assert_box_covers(xs, ys, (x0, y0, x1, y1), fx, fy)


def test_changed_resize_or_clip_setting_re_prepares_the_subject(tiny_cfg, tmp_path):
    from mskseg_lib.data.preprocess import SliceGeometry

    row = _non_square_knee(tiny_cfg, tmp_path)
    first = _prepare_one(row, tiny_cfg)
    assert _prepare_one(row, tiny_cfg)["fingerprint"] == first["fingerprint"]  # same settings: reused
    stretched, _ = load_slice(_dir(tiny_cfg), KNEE, row["subject_id"], 0, 256)
    tiny_cfg["prepare"]["resize"] = "pad"
    padded_rec = _prepare_one(row, tiny_cfg)
    assert padded_rec["fingerprint"] != first["fingerprint"]
    assert padded_rec["subject"]["resize_mode"] == "pad" and padded_rec["slices"][0]["resize_mode"] == "pad"
    s0 = padded_rec["slices"][0]
    rows, cols = SliceGeometry(s0["rows_px"], s0["cols_px"], 256, "pad").resized_shape
    padded, _ = load_slice(_dir(tiny_cfg), KNEE, row["subject_id"], 0, 256)  # the new stack, not a cached one
    assert (rows, cols) != (256, 256) and not padded[rows:].any() and not padded[:, cols:].any()
    assert not np.array_equal(stretched, padded)
    tiny_cfg["prepare"]["per_dataset"] = {KNEE: {"clip_percentiles": [0.5, 99.5]}}
    reclipped = _prepare_one(row, tiny_cfg)
    assert reclipped["fingerprint"] != padded_rec["fingerprint"]
    assert reclipped["settings"]["clip_percentiles"] == [0.5, 99.5]
    assert json.loads(reclipped["subject"]["clip_percentiles"]) == [0.5, 99.5]


def test_tables_without_a_resize_mode_are_refused(prepared):
    cfg, out = prepared
    slices = pd.read_parquet(out.slices_parquet).drop(columns=["resize_mode"])
    slices.to_parquet(out.slices_parquet)
    with pytest.raises(DataError, match="older version"):
        load_tables(_dir(cfg))
