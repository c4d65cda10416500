"""Bad files never stop a whole stage (issue 21, item 6).

Per stage that loops over subjects or volumes (zero-shot and whole-volume predictions,
biomarkers, the AutoLabel study and batch labelling, the video 3D study): one unreadable or
malformed input among good ones is listed with its file and problem (the stage's ``skipped``
table and ``skipped.csv``), the good ones complete, a later run tries the bad one again, and an
error that is not about an input file (a bug, a model failure) still stops the stage.
"""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from autolabel_fakes import THIGH, BoxFillSegmenter, Det, OracleDetector, canonical_labels, phantom

from mskseg_lib.data.bad_inputs import SKIPPED, SKIPPED_CSV, STAGE_SKIPPED_COLUMNS, SkippedInputs
from mskseg_lib.data.errors import DataError, SettingsError
from mskseg_lib.data.tables import load_tables
from mskseg_lib.from_profile import data as fp_data

HIP = "Hip_3D_CUBE_Research_Anatomical_42"
KNEE = "Knee_3D_CUBE_Research_Anatomical_300"


@pytest.fixture
def hip(tiny_cfg) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """Three prepared hip subjects (under a second): (prepared folder, subjects, slices)."""
    tiny_cfg["cohort"]["datasets"] = [HIP]
    fp_data.prepare(tiny_cfg, progress=False)
    prepared = fp_data.prepared_dir(tiny_cfg)
    subjects, slices = load_tables(prepared)
    assert len(subjects) == 3
    return prepared, subjects, slices


def _truncate(path: str | Path) -> Path:
    """Cut a file to its first 40 bytes (a copy interrupted mid-way)."""
    path = Path(path)
    path.write_bytes(path.read_bytes()[:40])
    return path


def _as_2d_nifti(path: str | Path) -> Path:
    """Overwrite a NIfTI with a readable but 2D array (a malformed volume)."""
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.int16), np.eye(4)), str(path))
    return Path(path)


def _check_listed(skipped: pd.DataFrame, stage: str, subject_id: str, path: Path | str, problem: str) -> None:
    assert list(skipped.columns) == STAGE_SKIPPED_COLUMNS
    row = skipped[skipped["subject_id"] == subject_id]
    assert len(row) == 1, skipped
    row = row.iloc[0]
    assert row["stage"] == stage and row["path"] == str(path) and problem in row["problem"]
    assert "Traceback" not in row["problem"]


# ----------------------------------------------------------------------------- the shared list
def test_skipped_inputs_lists_data_errors_and_lets_other_errors_through(tmp_path):
    skips = SkippedInputs("demo")

    def bad():
        raise DataError(tmp_path / "x.nii.gz", "not a readable NIfTI file")

    assert skips.attempt(lambda: 3, "d", "s0") == 3
    assert skips.attempt(bad, "d", "s1") is SKIPPED
    with pytest.raises(ZeroDivisionError):
        skips.attempt(lambda: 1 / 0, "d", "s2")
    _check_listed(skips.table(), "demo", "s1", tmp_path / "x.nii.gz", "not a readable")
    written = pd.read_csv(skips.save(tmp_path))
    assert written["subject_id"].astype(str).tolist() == ["s1"]
    with pytest.raises(DataError):
        SkippedInputs("demo", "raise").attempt(bad, "d", "s1")
    with pytest.raises(SettingsError, match="on_bad_input"):
        SkippedInputs("demo", "ignore")


# ----------------------------------------------------------------------------- zero-shot
class _BoxFiller:
    """Stand-in segmenter (256 px): logits +10 inside each box; ``fail`` makes decode raise."""

    name = "box-filler"
    input_size_px = 256
    device = torch.device("cpu")
    autocast_bf16 = False

    def __init__(self, fail: bool = False):
        self.fail = fail

    def encode(self, images, valid_hw=None):
        return [{"image_embed": torch.zeros(1)} for _ in images]

    def decode(self, embedding, prompts):
        if self.fail:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        out = torch.full((len(prompts.boxes), 256, 256), -10.0)
        for n, (x0, y0, x1, y1) in enumerate(np.asarray(prompts.boxes).astype(int).tolist()):
            out[n, y0:y1 + 1, x0:x1 + 1] = 10.0
        return out


def _zero_shot(prepared: Path, run_dir: Path, model, **kw):
    from mskseg_lib.evaluation.zero_shot import SliceSelection, ZeroShotSettings, run_zero_shot

    return run_zero_shot(prepared, run_dir, ["filler"], SliceSelection(split="all", max_slices_per_subject=2),
                         ZeroShotSettings(cache_embeddings=False), progress=False,
                         model_loader=lambda key: model, **kw)


def test_zero_shot_lists_a_truncated_stack_and_a_2d_mask_and_scores_the_others(hip, tmp_path):
    prepared, subjects, _ = hip
    s0, s1, s2 = subjects.sort_values("subject_id").to_dict("records")
    stack = Path(s1["slices_256_image"])
    good_stack = stack.read_bytes()
    _truncate(stack)
    _as_2d_nifti(s2["mask_nifti"])
    run_dir = tmp_path / "zs"
    run = _zero_shot(prepared, run_dir, _BoxFiller())
    assert set(run.slices["subject_id"]) == {s0["subject_id"]}
    assert (run_dir / "models/filler/subjects" / f"{HIP}__{s0['subject_id']}.parquet").exists()
    _check_listed(run.skipped, "zero_shot", s1["subject_id"], stack, "not a readable .npy slice stack")
    _check_listed(run.skipped, "zero_shot", s2["subject_id"], s2["mask_nifti"], "mask has shape (8, 8)")
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / SKIPPED_CSV, dtype=str), run.skipped.astype(str))
    # a skipped subject is not cached as done: fixed, the next run scores it
    stack.write_bytes(good_stack)
    again = _zero_shot(prepared, run_dir, _BoxFiller())
    assert set(again.slices["subject_id"]) == {s0["subject_id"], s1["subject_id"]}
    assert again.skipped["subject_id"].tolist() == [s2["subject_id"]]
    with pytest.raises(DataError, match=r"mask has shape \(8, 8\)"):
        _zero_shot(prepared, tmp_path / "zs_raise", _BoxFiller(), on_bad_input="raise")


def test_zero_shot_lists_a_missing_stack_and_a_short_stack(hip, tmp_path):
    prepared, subjects, _ = hip
    s0, s1, s2 = subjects.sort_values("subject_id").to_dict("records")
    Path(s0["slices_256_image"]).unlink()
    np.save(s1["slices_256_image"], np.zeros((1, 256, 256), np.uint8))  # fewer slices than the table names
    run = _zero_shot(prepared, tmp_path / "zs", _BoxFiller())
    assert set(run.slices["subject_id"]) == {s2["subject_id"]}
    _check_listed(run.skipped, "zero_shot", s0["subject_id"], s0["slices_256_image"], "not found")
    _check_listed(run.skipped, "zero_shot", s1["subject_id"], s1["slices_256_image"], "needs")


def test_zero_shot_model_failure_is_not_an_input_problem(hip, tmp_path):
    prepared, _, _ = hip
    with pytest.raises(RuntimeError, match="illegal memory access"):
        _zero_shot(prepared, tmp_path / "zs", _BoxFiller(fail=True))


def test_predict_volumes_and_assemble_name_the_missing_prediction(hip, tmp_path):
    from mskseg_lib.evaluation.volumes import assemble_volume, predict_volumes

    prepared, subjects, _ = hip
    s0, s1, _ = subjects.sort_values("subject_id").to_dict("records")
    _truncate(s1["slices_256_image"])
    run = predict_volumes(prepared, tmp_path / "vol", "filler", [HIP], "all", model_loader=lambda key: _BoxFiller(),
                          cache_embeddings=False, progress=False)
    assert s1["subject_id"] in set(run.skipped["subject_id"])
    volume, _ = assemble_volume(run.run_dir, "filler", s0)
    assert volume.max() > 0
    with pytest.raises(DataError, match="no prediction for this subject"):
        assemble_volume(run.run_dir, "filler", s1)


# ----------------------------------------------------------------------------- biomarkers
def test_biomarkers_skip_a_truncated_mask_a_misshapen_map_and_an_unreadable_prediction(hip, tmp_path):
    from mskseg_lib.biomarkers import study

    _, subjects, _ = hip
    subjects = subjects.sort_values("subject_id").reset_index(drop=True)
    s0, s1, s2 = subjects["subject_id"].tolist()
    mask = _truncate(shutil.copy(subjects.loc[1, "mask_nifti"], tmp_path / "mask.nii.gz"))
    subjects.loc[1, "mask_nifti"] = str(mask)
    t2 = Path(subjects.loc[2, "mask_nifti"]).parent / "t2.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), str(t2))
    subjects.loc[2, "maps"] = '["t2"]'

    def predicted(s):
        if s["subject_id"] == s0:
            raise DataError(tmp_path / "pred.npz", "no prediction for this subject")
        return None

    skipped = SkippedInputs("biomarkers")
    long = study.measure_all(subjects, {"zero_shot": predicted}, progress=False, skipped=skipped, out_dir=tmp_path)
    assert set(long["subject_id"]) == {s0}  # its manual rows count; its unreadable prediction does not
    assert set(long["source"]) == {"manual"}
    table = skipped.table()
    _check_listed(table, "biomarkers", s0, tmp_path / "pred.npz", "no prediction")
    _check_listed(table, "biomarkers", s1, mask, "not a readable NIfTI file")
    _check_listed(table, "biomarkers", s2, t2, "map has shape (3, 3, 3)")
    assert len(pd.read_csv(tmp_path / SKIPPED_CSV)) == 3
    with pytest.raises(DataError, match="not a readable NIfTI"):
        study.measure_all(subjects, {}, progress=False, skipped=SkippedInputs("biomarkers", "raise"))


def test_biomarkers_predictor_bug_stops_the_loop(hip):
    from mskseg_lib.biomarkers import study

    _, subjects, _ = hip

    def broken(s):
        raise KeyError("label_volume")

    with pytest.raises(KeyError, match="label_volume"):
        study.measure_all(subjects, {"mine": broken}, progress=False)


# ----------------------------------------------------------------------------- AutoLabel
class _CornerDetector:
    """One box of class 0 in the same place on every slice."""

    def detect(self, images):
        return [Det(np.array([[8, 8, 40, 40]], np.float32), np.array([0]), np.array([0.9], np.float32))
                for _ in images]


def _autolabel_study(tiny_cfg, root: Path, subjects: pd.DataFrame, seg, **kw):
    from mskseg_lib.autolabel import study
    from mskseg_lib.from_profile import autolabel as fp_autolabel

    model = study.StudyModel("box_fill", "box fill", lambda: seg)
    return study.run_study(root, subjects, [model], {HIP: _CornerDetector()}, fp_autolabel.study_settings(tiny_cfg),
                           progress=False, **kw)


def test_autolabel_study_lists_a_truncated_image_and_a_missing_mask(tiny_cfg, hip, tmp_path):
    _, subjects, _ = hip
    subjects = subjects.sort_values("subject_id").reset_index(drop=True)
    image = _truncate(shutil.copy(subjects.loc[1, "image_nifti"], tmp_path / "image.nii.gz"))
    subjects.loc[1, "image_nifti"] = str(image)
    subjects.loc[2, "mask_nifti"] = str(tmp_path / "gone.nii.gz")
    root = tmp_path / "autolabel"
    seg = BoxFillSegmenter(128, 80)
    result = _autolabel_study(tiny_cfg, root, subjects, seg)
    good = subjects.loc[0, "subject_id"]
    assert result.runs["subject_id"].tolist() == [good] and set(result.runs["status"]) == {"computed"}
    assert (root / "scores" / "box_fill" / HIP / f"{good}.json").exists()
    _check_listed(result.skipped, "autolabel", subjects.loc[1, "subject_id"], image, "not a readable NIfTI")
    _check_listed(result.skipped, "autolabel", subjects.loc[2, "subject_id"], tmp_path / "gone.nii.gz", "not found")
    assert len(pd.read_csv(root / SKIPPED_CSV)) == 2
    assert not (root / "scores" / "box_fill" / HIP / f"{subjects.loc[1, 'subject_id']}.json").exists()


def test_autolabel_study_segmenter_failure_stops_the_study(tiny_cfg, hip, tmp_path):
    _, subjects, _ = hip
    seg = BoxFillSegmenter(128, 80)
    seg.decode = lambda embedding, prompts: (_ for _ in ()).throw(RuntimeError("decoder exploded"))
    with pytest.raises(RuntimeError, match="decoder exploded"):
        _autolabel_study(tiny_cfg, tmp_path / "autolabel", subjects, seg)


def test_autolabel_batch_writes_the_skipped_list(tmp_path):
    from mskseg_lib.autolabel.inputs import find_volumes
    from mskseg_lib.autolabel.pipeline import AutolabelSettings, autolabel, detector_prompts
    from mskseg_lib.data import raw_io
    from mskseg_lib.data.catalog import get_dataset

    spec = get_dataset(THIGH)
    vol, labels = phantom()
    scans = tmp_path / "scans"
    scans.mkdir()
    raw_io.write_nifti(scans / "case0.nii.gz", vol.data, vol.affine)
    with gzip.open(scans / "broken.nii.gz", "wb") as fh:
        fh.write(b"not a nifti header")
    settings = AutolabelSettings(spec, detector_image_size_px=64)
    det = OracleDetector(canonical_labels(vol, labels), 2, 64)
    source = detector_prompts(det, 64, len(spec.labels))
    report = autolabel(find_volumes(scans), tmp_path / "out", BoxFillSegmenter(128, (32, 40)), source, settings,
                       progress=False)
    status = {r["volume"]: r["status"] for r in report.rows}
    assert status == {"broken": "failed", "case0": "labelled"}
    _check_listed(report.skipped, "autolabel", "broken", scans / "broken.nii.gz", "not a readable NIfTI")
    written = pd.read_csv(tmp_path / "out" / SKIPPED_CSV)
    assert written["subject_id"].tolist() == ["broken"] and written["dataset"].tolist() == [THIGH]


# ----------------------------------------------------------------------------- video 3D
def test_video3d_study_lists_a_2d_image_and_scores_the_other(tiny_cfg, tmp_path):
    from mskseg_lib.video3d import study

    tiny_cfg["cohort"]["datasets"] = [KNEE]
    fp_data.prepare(tiny_cfg, progress=False)
    subjects, _ = load_tables(fp_data.prepared_dir(tiny_cfg))
    vols = study.study_volumes(subjects, [KNEE], "all", max_per_dataset=2).reset_index(drop=True)
    assert len(vols) == 2
    bad = _as_2d_nifti(shutil.copy(vols.loc[1, "image_nifti"], tmp_path / "image2d.nii.gz"))
    vols.loc[1, "image_nifti"] = str(bad)
    settings = study.Video3dSettings(schemes=("boxes_per_slice",))
    seg = BoxFillSegmenter(128, study.load_volume(vols.iloc[0], settings).image.shape[1:])

    def load(key):
        return study.VideoModel(key, "box fill", seg, None, 0, {"fake": 1})

    root = tmp_path / "video3d"
    result = study.run_study(root, vols, ["box_fill"], settings, loader=load, progress=False)
    assert set(result.structures["subject_id"]) == {vols.loc[0, "subject_id"]}
    _check_listed(result.skipped, "video3d", vols.loc[1, "subject_id"], bad, "expected a 3D volume")
    assert "image2d.nii.gz" in result.failed.iloc[0]["error"]
    assert len(pd.read_csv(root / SKIPPED_CSV)) == 1
    with pytest.raises(DataError, match="expected a 3D volume"):
        study.run_study(tmp_path / "v2", vols, ["box_fill"], settings, loader=load, progress=False,
                        on_bad_input="raise")
    seg.decode = lambda embedding, prompts: (_ for _ in ()).throw(RuntimeError("decoder exploded"))
    with pytest.raises(RuntimeError, match="decoder exploded"):
        study.run_study(tmp_path / "v3", vols.head(1), ["box_fill"], settings, loader=load, progress=False)


# ----------------------------------------------------------------------------- notebooks
def test_show_skipped_says_none_or_lists_every_stages_rows(capsys, monkeypatch):
    import builtins

    from mskseg_lib.reporting import show_skipped

    real_import = builtins.__import__

    def no_ipython(name, *args, **kwargs):
        if name.startswith("IPython"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ipython)
    show_skipped(None, pd.DataFrame(columns=STAGE_SKIPPED_COLUMNS))
    assert capsys.readouterr().out.strip() == "Inputs skipped: none"
    one = SkippedInputs("zero_shot")
    one.add("d", "s1", DataError("/data/s1/mask.nii.gz", "mask has shape (8, 8)"))
    two = SkippedInputs("biomarkers")
    two.add("d", "s2", DataError("/data/s2/t2.nii.gz", "map has shape (3, 3, 3)"))
    show_skipped(one.table(), None, two.table())
    out = capsys.readouterr().out
    assert out.startswith("Inputs skipped: 2") and "/data/s1/mask.nii.gz" in out and "map has shape" in out
