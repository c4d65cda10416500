"""AutoLabel pipeline with stand-ins whose answer is known (``tests/autolabel_fakes.py``):
a box-filling segmenter prompted with a cuboid phantom's boxes must return the phantom voxel
for voxel, in the source's orientation and affine, from NIfTI and from a DICOM series."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from autolabel_fakes import THIGH, BoxFillSegmenter, OracleDetector, canonical_labels, phantom
from subprocess_env import pythonpath

from mskseg_lib import distributed as dist
from mskseg_lib.autolabel import pipeline as pl
from mskseg_lib.autolabel.inputs import VolumeInput, find_volumes, read_volume
from mskseg_lib.autolabel.postprocess import PostprocessSettings
from mskseg_lib.data import raw_io
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.dicom_io import write_dicom_series
from mskseg_lib.data.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SPEC = get_dataset(THIGH)
DET_PX = 64
NO_PP = PostprocessSettings(enabled=False, min_component_px=0, kernel_px={})


def settings(postprocess=NO_PP, every_n=2) -> pl.AutolabelSettings:
    return pl.AutolabelSettings(SPEC, DET_PX, (0.5, 99.5), postprocess, every_n)


def oracle_source(volume, labels, extra_class=None) -> pl.detector_prompts:
    det = OracleDetector(canonical_labels(volume, labels), SPEC.slice_axis_canonical, DET_PX, extra_class)
    return pl.detector_prompts(det, DET_PX, n_labels=len(SPEC.labels))


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "PIR"])
def test_segment_volume_returns_phantom_through_detector_boxes(orientation):
    vol, labels = phantom(orientation=orientation)
    sl = pl.slicing(vol, SPEC)
    seg = BoxFillSegmenter(128, sl.display_slice(0).shape)
    out, t = pl.segment_volume(sl, seg, [oracle_source(vol, labels)])
    assert np.array_equal(sl.to_source(out["detector"].labels), labels)
    # encoded once per slice holding a box, never for empty slices
    n_with = int(np.any(canonical_labels(vol, labels) > 0, axis=(0, 1)).sum())
    assert seg.encoded == n_with == t["encoded_slices"]


def test_both_prompt_sources_decode_from_one_encoding():
    vol, labels = phantom()
    sl = pl.slicing(vol, SPEC)
    seg = BoxFillSegmenter(128, sl.display_slice(0).shape)
    gt = pl.mask_prompts(canonical_labels(vol, labels), sl.slice_axis, SPEC)
    out, t = pl.segment_volume(sl, seg, [oracle_source(vol, labels), gt])
    assert seg.encoded == t["encoded_slices"] == 5  # slices 0-4 hold labels; once for both sources
    for name in ("detector", "gt_box"):
        assert np.array_equal(sl.to_source(out[name].labels), labels)


def test_unknown_detector_class_is_dropped():
    vol, labels = phantom()
    sl = pl.slicing(vol, SPEC)
    src = oracle_source(vol, labels, extra_class=len(SPEC.labels) + 3)
    boxes = src([sl.display_slice(k) for k in range(sl.n_slices)], list(range(sl.n_slices)))
    assert all(set(b.labels.tolist()) <= {1, 2} for b in boxes)


def test_source_slice_maps_canonical_index_back():
    vol, _ = phantom(orientation="LPI")  # axis 2 points inferior: canonical slice k is source n-1-k
    sl = pl.slicing(vol, SPEC)
    assert sl.source_slice(0) == (2, 5) and sl.source_slice(5) == (2, 0)
    vol, _ = phantom(orientation="RAS")
    assert pl.slicing(vol, SPEC).source_slice(1) == (2, 1)


def _write_inputs(folder: Path, n: int = 2, orientation: str = "LPS") -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    truths = []
    for i in range(n):
        vol, labels = phantom(orientation=orientation, seed=i)
        raw_io.write_nifti(folder / f"case{i}.nii.gz", vol.data, vol.affine)
        truths.append(labels)
    return truths


def test_autolabel_folder_writes_source_grid_resumes_and_skips_corrupt(tmp_path):
    truths = _write_inputs(tmp_path / "in")
    (tmp_path / "in" / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    items = find_volumes(tmp_path / "in")
    assert [i.name for i in items] == ["broken", "case0", "case1"]
    vol0 = read_volume(items[1])
    seg = BoxFillSegmenter(128, pl.slicing(vol0, SPEC).display_slice(0).shape)
    # the oracle serves both phantoms in turn: same geometry, same labels
    src = oracle_source(vol0, truths[0])
    report = pl.autolabel(items, tmp_path / "out", seg, src, settings(), model_ids={"segmenter": "box-fill"},
                          progress=False)
    status = {r["volume"]: r["status"] for r in report.rows}
    assert status == {"broken": "failed", "case0": "labelled", "case1": "labelled"}
    assert "broken.nii.gz" in report.failed[0]["message"] and "NIfTI" in report.failed[0]["message"]
    for i, truth in enumerate(truths):
        img = nib.load(tmp_path / "out" / f"case{i}.nii.gz")
        src_img = nib.load(tmp_path / "in" / f"case{i}.nii.gz")
        assert img.shape == src_img.shape and np.allclose(img.affine, src_img.affine)
        assert np.array_equal(np.asarray(img.dataobj), truth)
        det = json.loads((tmp_path / "out" / f"case{i}.detections.json").read_text())
        assert [s["source_index"] for s in det["slices"]] == [0, 1, 2, 3, 4]
        assert det["slices"][1]["label_names"] == ["subcutaneous_fat", "extensors"]
        names = SPEC.label_names()  # ITK-SNAP and 3D Slicer label tables beside the labels
        assert f'"{names[2]}"' in (tmp_path / "out" / f"case{i}.itksnap.txt").read_text()
        assert f"\n2 {names[2]} 0 255 0 255\n" in (tmp_path / "out" / f"case{i}.ctbl").read_text()
    overlays = sorted(p.name for p in (tmp_path / "out" / "overlays" / "case0").iterdir())
    assert overlays == ["slice_0000.png", "slice_0002.png", "slice_0004.png"]  # every 2nd of 6
    merged = json.loads((tmp_path / "out" / "autolabel_report.json").read_text())
    assert merged["n_labelled"] == 2 and merged["n_failed"] == 1
    assert len(pd.read_csv(tmp_path / "out" / "autolabel_report.csv")) == 3

    mtime = (tmp_path / "out" / "case0.nii.gz").stat().st_mtime_ns
    again = pl.autolabel(items, tmp_path / "out", seg, src, settings(), model_ids={"segmenter": "box-fill"},
                         progress=False)
    assert {r["volume"]: r["status"] for r in again.rows}["case0"] == "skipped (done)"
    assert (tmp_path / "out" / "case0.nii.gz").stat().st_mtime_ns == mtime
    changed = pl.autolabel(items[1:2], tmp_path / "out", seg, src, settings(every_n=3),
                           model_ids={"segmenter": "box-fill"}, progress=False)
    assert changed.rows[0]["status"] == "labelled"  # a changed setting relabels


def test_a_store_makes_a_second_labelling_of_the_same_volume_encode_nothing(tmp_path):
    """With an embedding store (notebook 06 passes the run's), a volume whose slices were already
    encoded with this model is labelled from stored embeddings: zero encodes, the same labels."""
    from mskseg_lib.evaluation.embedding_cache import EmbeddingCache

    truths = _write_inputs(tmp_path / "in", n=1)
    items = find_volumes(tmp_path / "in")
    vol = read_volume(items[0])
    seg = BoxFillSegmenter(128, pl.slicing(vol, SPEC).display_slice(0).shape)
    seg.checkpoint = {"sha256": "ab" * 32}  # weights of known digest: the store may share them
    store = EmbeddingCache(tmp_path / "store")
    src = oracle_source(vol, truths[0])
    pl.autolabel(items, tmp_path / "first", seg, src, settings(), progress=False, cache=store)
    n_slices = seg.encoded
    assert n_slices > 0
    report = pl.autolabel(items, tmp_path / "second", seg, src, settings(), progress=False, cache=store)
    assert report.rows[0]["status"] == "labelled" and seg.encoded == n_slices  # nothing encoded again
    assert np.array_equal(np.asarray(nib.load(tmp_path / "second" / "case0.nii.gz").dataobj), truths[0])
    pl.autolabel(items, tmp_path / "third", seg, src, settings(), progress=False)  # no store: encoded
    assert seg.encoded == 2 * n_slices


def test_dicom_series_round_trip_keeps_affine_and_shape(tmp_path):
    from test_dicom_io import HEADER

    vol, labels = phantom(orientation="LPS")
    series = tmp_path / "in" / "series01"
    write_dicom_series(np.round(vol.data - vol.data.min()).astype(np.uint16), vol.affine, series, HEADER, rng_seed=1)
    items = find_volumes(tmp_path / "in")
    assert items == [VolumeInput("series01", series, "dicom")]
    read = read_volume(items[0])
    assert np.allclose(read.affine, vol.affine, atol=1e-4) and read.shape == vol.shape
    sl = pl.slicing(read, SPEC)
    seg = BoxFillSegmenter(128, sl.display_slice(0).shape)
    pl.autolabel(items, tmp_path / "out", seg, oracle_source(vol, labels), settings(), progress=False)
    out = nib.load(tmp_path / "out" / "series01.nii.gz")
    assert out.shape == vol.shape and np.allclose(out.affine, vol.affine, atol=1e-4)
    assert np.array_equal(np.asarray(out.dataobj), labels)


def test_find_volumes_errors_and_patient_folders(tmp_path):
    with pytest.raises(DataError, match="input not found"):
        find_volumes(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no NIfTI files or DICOM series"):
        find_volumes(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a NIfTI file"):
        find_volumes(tmp_path / "notes.txt")
    _write_inputs(tmp_path / "pat" / "p1", n=1)
    _write_inputs(tmp_path / "pat" / "p2", n=1)
    assert [v.name for v in find_volumes(tmp_path / "pat")] == ["p1_case0", "p2_case0"]


def test_read_volume_rejects_nan(tmp_path):
    vol, _ = phantom()
    data = vol.data.copy()
    data[0, 0, 0] = np.nan
    raw_io.write_nifti(tmp_path / "nan.nii.gz", data, vol.affine)
    with pytest.raises(DataError, match="nan.nii.gz.*NaN"):
        read_volume(find_volumes(tmp_path / "nan.nii.gz")[0])


def test_postprocessing_applies_in_the_pipeline(tmp_path):
    truths = _write_inputs(tmp_path / "in", n=1)
    items = find_volumes(tmp_path / "in")
    vol = read_volume(items[0])
    seg = BoxFillSegmenter(128, pl.slicing(vol, SPEC).display_slice(0).shape)
    pp = PostprocessSettings(enabled=True, min_component_px=0,
                             kernel_px={c: 5 for c in ("fat", "muscle", "bone", "nerve", "cartilage")})
    pl.autolabel(items, tmp_path / "out", seg, oracle_source(vol, truths[0]), settings(pp), progress=False)
    out = np.asarray(nib.load(tmp_path / "out" / "case0.nii.gz").dataobj)
    # cuboid corners round off under the blur, nothing else changes
    diff = out != truths[0]
    assert 0 < diff.sum() <= 4 * 3 * 2 * 9 and not (out[truths[0] == 0] > 0).any()


def test_rank_share_covers_every_volume_once():
    items = [VolumeInput(f"v{i}", Path(f"v{i}.nii.gz"), "nifti") for i in range(7)]
    shares = [dist.share(items, dist.DistContext(r, 3, 0, torch.device("cpu"), "gloo")) for r in range(3)]
    names = [i.name for s in shares for i in s]
    assert sorted(names) == sorted(i.name for i in items) and len(names) == len(set(names))


def test_torchrun_two_ranks_split_the_volumes(tmp_path):
    _write_inputs(tmp_path / "in", n=5)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath(ROOT, ROOT / "tests")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "autolabel_rank_worker.py"), str(tmp_path / "in"), str(tmp_path / "out")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "autolabel_report.json").read_text())
    assert report["world_size"] == 2
    by_rank = {}
    for row in report["volumes"]:
        by_rank.setdefault(row["rank"], []).append(row["volume"])
    names = [v for vs in by_rank.values() for v in vs]
    assert sorted(names) == [f"case{i}" for i in range(5)] and len(names) == len(set(names))
    assert set(by_rank) == {0, 1} and all(r["status"] == "labelled" for r in report["volumes"])
    assert all((tmp_path / "out" / f"case{i}.nii.gz").exists() for i in range(5))


def test_unexpected_error_in_one_volume_is_reported_and_the_batch_goes_on(tmp_path):
    _write_inputs(tmp_path / "in", n=2)
    items = find_volumes(tmp_path / "in")
    vol = read_volume(items[0])
    seg = BoxFillSegmenter(128, pl.slicing(vol, SPEC).display_slice(0).shape)

    class Flaky:
        name = "detector"
        calls = 0

        def __call__(self, images, indices):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("out of memory")
            return [pl.SliceBoxes.empty() for _ in images]

    report = pl.autolabel(items, tmp_path / "out", seg, Flaky(), settings(), progress=False)
    rows = {r["volume"]: r for r in report.rows}
    assert rows["case0"]["status"] == "failed" and rows["case0"]["message"] == "RuntimeError: out of memory"
    assert "Traceback" in rows["case0"]["traceback"] and rows["case1"]["status"] == "labelled"


def test_output_folder_inside_the_input_is_not_an_input(tmp_path):
    _write_inputs(tmp_path / "in", n=1)
    _write_inputs(tmp_path / "in" / "out", n=1)  # as if a previous run wrote its labels there
    assert [v.name for v in find_volumes(tmp_path / "in", exclude=tmp_path / "in" / "out")] == ["case0"]


def test_settings_demand_the_export_image_size(tmp_path):
    from mskseg_lib.config import ProfileError, load_profile
    from mskseg_lib.from_profile.autolabel import autolabel_settings

    cfg = load_profile("fixture")
    assert autolabel_settings(cfg, SPEC.name).detector_image_size_px == cfg["prepare"]["yolo_image_size_px"]
    cfg["autolabel"]["detector"]["image_size_px"] = 128
    with pytest.raises(ProfileError, match="yolo_image_size_px"):
        autolabel_settings(cfg, SPEC.name)


def test_enabled_postprocessing_without_a_kernel_for_a_tissue_is_refused_up_front():
    from mskseg_lib.autolabel.postprocess import PostprocessError

    with pytest.raises(PostprocessError, match="no kernel for tissue class"):
        pl.AutolabelSettings(SPEC, DET_PX, postprocess=PostprocessSettings(kernel_px={"fat": 5}))
    assert pl.AutolabelSettings(SPEC, DET_PX, postprocess=PostprocessSettings(enabled=False, kernel_px={}))


def test_volume_kind_names_what_autolabel_reads_as_it_is(tmp_path):
    """A NIfTI file and a DICOM series folder are readable volumes; an NPZ export, an empty
    folder and a missing path are not (notebook 06 picks its demo volume by this, not by how the
    synthetic cohort happens to export a dataset)."""
    import nibabel as nib

    from mskseg_lib.autolabel.inputs import volume_kind
    from mskseg_lib.data.dicom_io import write_dicom_series

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), tmp_path / "a.nii.gz")
    write_dicom_series(np.ones((4, 4, 3), np.float32), np.eye(4), tmp_path / "series", {})
    np.savez(tmp_path / "b.npz", image=np.zeros((4, 4, 3)))
    (tmp_path / "empty").mkdir()
    kinds = [volume_kind(tmp_path / n) for n in ("a.nii.gz", "series", "b.npz", "empty", "absent.nii.gz")]
    assert kinds == ["nifti", "dicom", None, None, None]
