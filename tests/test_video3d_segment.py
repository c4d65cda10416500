"""``mskseg video3d`` in use: clicks given as voxels of the input file land on the right display
pixel for any orientation, detector seeds, propagation from clicks, and the CLI end to end."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from autolabel_fakes import THIGH, phantom
from video3d_fakes import ObjectSegmenter

from mskseg_lib.autolabel.pipeline import SliceBoxes, slicing
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.volume import Volume
from mskseg_lib.video3d import segment
from mskseg_lib.video3d.propagate import CarrySettings
from mskseg_lib.video3d.study import VideoModel

SPEC = get_dataset(THIGH)  # axial: slices along canonical axis 2


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "PIR", "ASL"])
def test_a_clicked_voxel_maps_to_its_display_pixel(orientation):
    vol, _ = phantom(shape=(14, 11, 9), orientation=orientation)
    marker = np.zeros(vol.shape, np.float32)
    rng = np.random.default_rng(1)
    for _ in range(5):
        ijk = tuple(int(rng.integers(0, n)) for n in vol.shape)
        marker[:] = 0
        marker[ijk] = 1000
        sl = slicing(Volume(marker + 1, vol.affine, "m.nii.gz"), SPEC, (0.0, 100.0))
        k, x, y = segment.source_voxel_to_display(sl, ijk)
        shown = sl.display_slice(k)
        assert shown[int(y), int(x)] == shown.max() and (shown == shown.max()).sum() == 1
    with pytest.raises(ValueError, match="outside the volume"):
        segment.source_voxel_to_display(sl, (99, 0, 0))


def test_clicks_group_per_label_and_are_checked():
    vol, _ = phantom(orientation="LPS")
    sl = slicing(vol, SPEC)
    clicks = [{"label": 1, "i": 10, "j": 10, "k": 2}, {"label": 1, "i": 30, "j": 20, "k": 2, "positive": False},
              {"label": 2, "i": 30, "j": 20, "k": 2}]
    prompts = segment.clicks_to_prompts(sl, clicks, SPEC)
    assert [(p.label, p.point_labels.tolist()) for p in prompts] == [(1, [1, 0]), (2, [1])]
    with pytest.raises(ValueError, match="click 0: missing k"):
        segment.clicks_to_prompts(sl, [{"label": 1, "i": 1, "j": 1}], SPEC)
    with pytest.raises(ValueError, match="label 42 is not a label of"):
        segment.clicks_to_prompts(sl, [{"label": 42, "i": 1, "j": 1, "k": 1}], SPEC)
    with pytest.raises(ValueError, match="one slice"):
        segment.clicks_to_prompts(sl, [{"label": 1, "i": 10, "j": 10, "k": 2}, {"label": 1, "i": 10, "j": 10, "k": 3}], SPEC)


def test_detector_seeds_take_each_labels_best_box():
    boxes = [SliceBoxes(np.array([[0, 0, 4, 4]], np.float32), np.array([1]), np.array([0.4], np.float32)),
             SliceBoxes(np.array([[1, 1, 5, 5], [2, 2, 3, 3]], np.float32), np.array([1, 2]), np.array([0.9, 0.2], np.float32)),
             SliceBoxes.empty()]
    seeds = segment.detector_seeds(boxes)
    assert [(s.label, s.frame, s.box.tolist()) for s in seeds] == [(1, 1, [1, 1, 5, 5]), (2, 1, [2, 2, 3, 3])]


def test_clicks_on_one_slice_recover_the_phantom_through_the_volume(tmp_path):
    """Two cuboids prompted by one click each on one slice; carrying with a perfect stand-in
    recovers both voxel for voxel, and the written file is on the input's grid."""
    vol, labels = phantom(orientation="LPS")
    vol.data = np.where(labels > 0, 1000.0, 10.0).astype(np.float32)
    sl = slicing(vol, SPEC)
    clicks = [{"label": 1, "i": 10, "j": 10, "k": 2}, {"label": 2, "i": 30, "j": 20, "k": 2}]
    seeds = segment.clicks_to_prompts(sl, clicks, SPEC)
    model = VideoModel("stand-in", "stand-in", ObjectSegmenter(size_px=64), None, 0, {})
    carry = CarrySettings(margin_px=1, min_area_px=2, min_area_fraction=0.05, min_consecutive_dice=0.5)
    run, scheme = segment.propagate(model, sl, seeds, carry)
    assert scheme == "point_carry"
    out = segment.write_result(tmp_path / "out.nii.gz", sl, run, {"test": True})
    img = nib.load(out)
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels)
    assert np.allclose(img.affine, vol.affine)
    record = json.loads((tmp_path / "out.video3d.json").read_text())
    assert record["voxels_per_label"] == {"1": int((labels == 1).sum()), "2": int((labels == 2).sum())}
    with pytest.raises(Exception, match="nii"):
        segment.write_result(tmp_path / "out.png", sl, run, {})


def test_cli_video3d_with_clicks_writes_a_label_volume(tmp_path, monkeypatch, capsys):
    from mskseg_lib import cli
    from mskseg_lib.video3d import study

    vol, labels = phantom(orientation="RAS")
    image = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.where(labels > 0, 1000.0, 10.0).astype(np.float32), vol.affine), str(image))
    clicks = tmp_path / "clicks.json"
    clicks.write_text(json.dumps([{"label": 1, "i": 10, "j": 10, "k": 2}]))
    monkeypatch.setattr(study, "load_video_model",
                        lambda key, models=None, device=None: VideoModel(key, key, ObjectSegmenter(size_px=64), None, 0, {}))
    out = tmp_path / "labels.nii.gz"
    rc = cli.main(["video3d", "--profile", "fixture", "--dataset", THIGH, "--input", str(image), "--output", str(out),
                   "--model", "lite_medsam", "--clicks", str(clicks)])
    assert rc == 0
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), (labels == 1).astype(np.uint8))
    name1 = SPEC.label_names()[1]  # the label tables ITK-SNAP and 3D Slicer load, beside the output
    assert f'    1   255    0    0     1.00  1  1    "{name1}"' in (tmp_path / "labels.itksnap.txt").read_text()
    assert f"\n1 {name1} 255 0 0 255\n" in (tmp_path / "labels.ctbl").read_text()
    x, y, z = (vol.affine @ [10.0, 10.0, 2.0, 1.0])[:3]  # the same click as a 3D Slicer markup (LPS)
    markup = tmp_path / "clicks.mrk.json"
    markup.write_text(json.dumps({"markups": [{"coordinateSystem": "LPS", "name": name1,
                                               "controlPoints": [{"label": "F-1", "position": [-x, -y, z]}]}]}))
    out2 = tmp_path / "labels_mrk.nii.gz"
    rc = cli.main(["video3d", "--profile", "fixture", "--dataset", THIGH, "--input", str(image), "--output", str(out2),
                   "--model", "lite_medsam", "--clicks", str(markup)])
    assert rc == 0
    np.testing.assert_array_equal(np.asarray(nib.load(out2).dataobj), (labels == 1).astype(np.uint8))
    capsys.readouterr()
    for name, text in (("bad.json", "{not json"), ("outside.json", json.dumps([{"label": 1, "i": 999, "j": 1, "k": 1}]))):
        bad = tmp_path / name
        bad.write_text(text)
        rc = cli.main(["video3d", "--profile", "fixture", "--dataset", THIGH, "--input", str(image), "--output", str(out),
                       "--model", "lite_medsam", "--clicks", str(bad)])
        err = capsys.readouterr().err
        assert rc != 0 and name in err and "Traceback" not in err
    rc = cli.main(["video3d", "--profile", "fixture", "--dataset", THIGH, "--input", str(image), "--output",
                   str(tmp_path / "x.png"), "--model", "lite_medsam", "--clicks", str(clicks)])
    assert rc != 0 and "must be a .nii" in capsys.readouterr().err


def test_segment_file_needs_exactly_one_prompt_source(tmp_path):
    with pytest.raises(segment.PromptSourceError, match="either a click list or detector weights"):
        segment.segment_file(tmp_path / "in.nii.gz", tmp_path / "out.nii.gz", THIGH, "lite_medsam")
    with pytest.raises(segment.PromptSourceError):
        segment.segment_file(tmp_path / "in.nii.gz", tmp_path / "out.nii.gz", THIGH, "lite_medsam",
                             clicks=tmp_path / "c.json", detector_weights=tmp_path / "best.pt")


AFFINE = np.array([[-0.5, 0.0, 0.0, 10.0], [0.0, 0.8, 0.0, -20.0], [0.0, 0.0, 3.0, 5.0], [0.0, 0.0, 0.0, 1.0]])


def _markup(system: str, position_mm: list[float], label: str = "F-1", name: str = "F", **point) -> dict:
    return {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                       "Schema/markups-schema-v1.0.3.json#",
            "markups": [{"type": "Fiducial", "coordinateSystem": system, "coordinateUnits": "mm", "name": name,
                         "controlPoints": [{"id": "1", "label": label, "position": position_mm, **point}]}]}


@pytest.mark.parametrize("system, position_mm", [("RAS", [5.0, -4.0, 11.0]), ("LPS", [-5.0, 4.0, 11.0]),
                                                 ("LPS", [-5.2, 4.3, 11.9])])
def test_slicer_markup_points_become_the_known_voxel(tmp_path, system, position_mm):
    """Voxel (10, 20, 2) of AFFINE lies at RAS (5, -4, 11) mm = LPS (-5, 4, 11) mm; a point a
    fraction of a voxel off still rounds to it. The label comes from the point or the list name."""
    name2 = SPEC.label_names()[2]
    path = tmp_path / "points.mrk.json"
    path.write_text(json.dumps(_markup(system, position_mm, label=name2)))
    assert segment.read_clicks(path, AFFINE, SPEC) == [{"label": 2, "i": 10, "j": 20, "k": 2, "positive": True}]
    path.write_text(json.dumps(_markup(system, position_mm, label="F-1", name="1", description="negative")))
    assert segment.read_clicks(path, AFFINE, SPEC) == [{"label": 1, "i": 10, "j": 20, "k": 2, "positive": False}]


def test_slicer_markups_give_the_seeds_of_the_same_voxel_clicks(tmp_path):
    vol, _ = phantom(orientation="LPS")
    sl = slicing(vol, SPEC)
    voxel_clicks = [{"label": 1, "i": 10, "j": 10, "k": 2}, {"label": 2, "i": 30, "j": 20, "k": 2}]
    ras = [(vol.affine @ [c["i"], c["j"], c["k"], 1.0])[:3] for c in voxel_clicks]
    doc = {"markups": [{"coordinateSystem": "LPS", "name": str(c["label"]),
                        "controlPoints": [{"label": f"F-{n}", "position": [-p[0], -p[1], p[2]]}]}
                       for n, (c, p) in enumerate(zip(voxel_clicks, ras))]}
    path = tmp_path / "clicks.mrk.json"
    path.write_text(json.dumps(doc))
    got = segment.clicks_to_prompts(sl, segment.read_clicks(path, sl.source_affine, SPEC), SPEC)
    want = segment.clicks_to_prompts(sl, voxel_clicks, SPEC)
    assert [(s.label, s.frame, s.points.tolist()) for s in got] == [(s.label, s.frame, s.points.tolist()) for s in want]


def test_slicer_markup_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.mrk.json"
    for doc, problem in ((_markup("IJK", [0, 0, 0]), "neither LPS nor RAS"),
                         (_markup("RAS", [5, -4, 11], label="F-1", name="nothing"), "is a label of"),
                         ({"markups": [{"controlPoints": [{"label": "1"}]}]}, "no position"),
                         ({"markups": []}, "non-empty 'markups'")):
        path.write_text(json.dumps(doc))
        with pytest.raises(segment.DataError, match=problem) as info:
            segment.read_clicks(path, AFFINE, SPEC)
        assert "bad.mrk.json" in str(info.value)
