"""video3d: prompt schemes from masks, propagation engines and scores, with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from video3d_fakes import ObjectSegmenter, moving_phantom

from mskseg_lib.data.boxes import mask_box
from mskseg_lib.evaluation.metrics import dice
from mskseg_lib.video3d import prompts as P
from mskseg_lib.video3d.propagate import SliceEncoder, run_carry, run_per_slice, run_video
from mskseg_lib.video3d.scoring import slice_scores, structure_scores


# ---------------------------------------------------------------------------------------- prompts
def test_interior_point_is_the_centroid_of_a_disc_and_inside_a_ring():
    yy, xx = np.mgrid[:41, :41]
    disc = (yy - 20) ** 2 + (xx - 12) ** 2 <= 25
    assert P.interior_point(disc).tolist() == [12.0, 20.0]
    ring = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 144) & ((yy - 20) ** 2 + (xx - 20) ** 2 >= 81)
    x, y = P.interior_point(ring).astype(int)
    assert ring[y, x]  # the centroid (20, 20) is in the hole; the point is on the ring
    assert abs(np.hypot(x - 20, y - 20) - 9) < 1.01  # ... at its inner edge, nearest the centroid
    with pytest.raises(ValueError, match="empty"):
        P.interior_point(np.zeros((4, 4), bool))


def test_prompt_slice_is_the_middle_of_the_joint_extent_where_both_structures_are():
    _, labels = moving_phantom()
    assert P.prompt_slice(labels, [1, 2]) == 10
    lone = labels.copy()
    lone[[0, 1, 2]] = 0
    lone[0:3, 5:8, 5:8] = 3  # a third structure on slices 0-2 only
    seeds = P.single_slice_prompts(lone, [1, 2, 3], negatives=True)
    frames = {s.label: s.frame for s in seeds}
    # joint extent 0-18 -> centre 9, where 1 and 2 are; 3 is absent there: its own central slice
    assert frames == {1: 9, 2: 9, 3: 1}
    s3 = next(s for s in seeds if s.label == 3)
    assert s3.point_labels.tolist() == [1]  # no other structure on slice 1 -> no negatives


def test_negative_points_are_the_other_structures_points():
    _, labels = moving_phantom()
    s1, s2 = P.single_slice_prompts(labels, [1, 2], negatives=True)
    assert s1.point_labels.tolist() == [1, 0] and s2.point_labels.tolist() == [1, 0]
    np.testing.assert_array_equal(s1.points[1], s2.points[0])
    np.testing.assert_array_equal(s2.points[1], s1.points[0])
    for s in (s1, s2):
        x, y = s.points[0].astype(int)
        assert labels[s.frame, y, x] == s.label
    plain = P.single_slice_prompts(labels, [1, 2], negatives=False)
    assert [len(p.points) for p in plain] == [1, 1]


def test_per_slice_prompts_cover_every_slice_of_every_structure():
    _, labels = moving_phantom()
    boxes = P.per_slice_prompts(labels, [1, 2], "box")
    pairs = {(k, p.label) for k, ps in boxes.items() for p in ps}
    assert pairs == {(k, v) for v in (1, 2) for k in P.present_slices(labels, v)}
    k, p = 7, next(p for p in boxes[7] if p.label == 2)
    assert p.box.tolist() == mask_box(labels[k] == 2)
    points = P.per_slice_prompts(labels, [1, 2], "point")
    assert sum(len(v) for v in points.values()) == len(pairs)
    with pytest.raises(ValueError, match="'point' or 'box'"):
        P.per_slice_prompts(labels, [1], "mask")


def test_click_prompts_group_by_label_and_slice_and_need_a_positive_click():
    clicks = [{"label": 1, "slice": 5, "x": 3, "y": 4}, {"label": 1, "slice": 5, "x": 9, "y": 9, "positive": False},
              {"label": 2, "slice": 6, "x": 1, "y": 2}]
    out = P.click_prompts(clicks)
    assert [(p.label, p.frame, p.point_labels.tolist()) for p in out] == [(1, 5, [1, 0]), (2, 6, [1])]
    with pytest.raises(ValueError, match="click 0: missing slice"):
        P.click_prompts([{"label": 1, "x": 1, "y": 1}])
    with pytest.raises(ValueError, match="at least one positive"):
        P.click_prompts([{"label": 1, "slice": 0, "x": 1, "y": 1, "positive": False}])


# ------------------------------------------------------------------------------------ propagation
@pytest.mark.parametrize("kind", ["box", "point"])
def test_carrying_recovers_a_smoothly_moving_phantom_and_stops_where_it_ends(kind):
    image, labels = moving_phantom()
    seg = ObjectSegmenter(size_px=64)
    enc = SliceEncoder(seg, image)
    run = run_carry(enc, P.seed_prompts(labels, [1, 2], kind), kind, margin_px=2, min_area_px=4)
    np.testing.assert_array_equal(run.labels, labels)  # every slice, both directions, no leak
    assert run.reach == {1: (2, 18), 2: (4, 16)}
    assert run.prompt_slices == {1: 10, 2: 10}
    # slices 1 and 19 were tried (nothing found there, so it stopped); 0 and 20 never
    assert run.encoded_slices == 19 and sorted(enc.encode_seconds) == list(range(1, 20))


def test_carrying_stops_at_the_area_floor():
    image, labels = moving_phantom()
    enc = SliceEncoder(ObjectSegmenter(size_px=64), image)
    # a floor above the discs' end areas (radius 3-4 px: ~30-50 px) but below their middle (~300 px)
    run = run_carry(enc, P.seed_prompts(labels, [1, 2], "box"), "box", min_area_px=4, min_area_fraction=0.3)
    lo1, hi1 = run.reach[1]
    assert 2 < lo1 < 10 < hi1 < 18
    truth = labels.copy()
    truth[:lo1][truth[:lo1] == 1] = 0
    truth[hi1 + 1:][truth[hi1 + 1:] == 1] = 0
    np.testing.assert_array_equal(run.labels == 1, truth == 1)


def test_each_slice_is_encoded_once_across_schemes():
    image, labels = moving_phantom()
    seg = ObjectSegmenter(size_px=64)
    enc = SliceEncoder(seg, image)
    ref = {v: 10 for v in (1, 2)}
    boxes = run_per_slice(enc, P.per_slice_prompts(labels, [1, 2], "box"), ref)
    points = run_per_slice(enc, P.per_slice_prompts(labels, [1, 2], "point"), ref)
    run_carry(enc, P.seed_prompts(labels, [1, 2], "box"), "box")  # the third scheme shares the encodings
    np.testing.assert_array_equal(boxes.labels, labels)
    np.testing.assert_array_equal(points.labels, labels)
    assert sum(seg.encoded) == 19  # slices 1-19, each once for all three schemes
    assert boxes.encoded_slices == points.encoded_slices == 17  # the slices with a structure


def test_decode_refuses_two_prompts_for_one_structure():
    image, labels = moving_phantom()
    enc = SliceEncoder(ObjectSegmenter(size_px=64), image)
    p = P.ObjectPrompt(1, 10, box=np.array([0, 0, 5, 5]))
    with pytest.raises(ValueError, match="one prompt per structure"):
        enc.decode(10, [p, p])


def test_sam2_video_run_encodes_each_frame_once_and_labels_only_prompted_structures():
    from mskseg_lib.video3d.predictor import build_tiny_video_predictor

    image, labels = moving_phantom(n_slices=9, size=48)
    predictor = build_tiny_video_predictor()
    run = run_video(predictor, image, P.single_slice_prompts(labels, [1, 2], negatives=True))
    assert run.labels.shape == labels.shape and run.labels.dtype == np.int16
    assert set(np.unique(run.labels)) <= {0, 1, 2}
    assert run.encoded_slices == 9  # prompted frame once (on adding prompts), every other frame once
    lone = labels.copy()
    lone[:, 40:, 40:] = 0
    lone[0:2, 40:44, 40:44] = 3
    seeds = P.single_slice_prompts(lone, [1, 3], negatives=False)
    assert {s.frame for s in seeds} == {0, 3}  # no slice has both: 1 on its centre, 3 on its own
    two = run_video(predictor, image, seeds)
    assert two.encoded_slices == 18  # two prompted slices -> two passes over the frames


# ---------------------------------------------------------------------------------------- scores
def test_structure_scores_known_dice_volumes_and_combined():
    gt = np.zeros((20, 20, 20), np.int16)
    gt[0:10, 0:10, 0:10] = 1
    gt[10:20, 10:20, 10:20] = 2
    pred = np.zeros_like(gt)
    pred[0:5, 0:10, 0:10] = 1  # half of structure 1
    pred[10:20, 10:20, 10:20] = 1  # structure 2 found but called 1
    rows = structure_scores(pred, gt, [1, 2, 5], {1: "femur", 2: "tibia"}, (2.0, 2.0, 2.0)).set_index("structure")
    assert list(rows.index) == ["femur", "tibia", "combined"]  # 5 absent from the manual mask: not scored
    assert rows.loc["femur", "dice"] == pytest.approx(2 * 500 / (1000 + 1500))
    assert rows.loc["tibia", "dice"] == pytest.approx(0.0)
    assert rows.loc["combined", "dice"] == pytest.approx(2 * 1500 / (2000 + 1500))  # labels ignored
    assert rows.loc["femur", "gt_volume_cm3"] == pytest.approx(1000 * 0.008)
    assert rows.loc["combined", "pred_volume_cm3"] == pytest.approx(1500 * 0.008)
    with pytest.raises(ValueError, match="differ in shape"):
        structure_scores(pred[:-1], gt, [1], {}, (1, 1, 1))


def test_combined_is_the_femur_tibia_union_and_all_structures_adds_the_patella():
    """Knee phantom: femur (label 1) and tibia (3) found exactly, patella (5) missed and a
    patella-sized false positive elsewhere. The study's combined (femur + tibia union) is 1.0;
    the all-bones union counts the patella: 2 * 2000 / (2125 + 2125) = 0.9412."""
    gt = np.zeros((20, 20, 20), np.int16)
    gt[0:10, 0:10, 0:10] = 1  # femur, 1000 voxels
    gt[10:20, 0:10, 0:10] = 3  # tibia, 1000 voxels
    gt[0:5, 15:20, 15:20] = 5  # patella, 125 voxels
    pred = np.where(gt == 5, 0, gt).astype(np.int16)
    pred[15:20, 15:20, 15:20] = 5  # the patella predicted in the wrong place
    names = {1: "femur", 3: "tibia", 5: "patella"}
    rows = structure_scores(pred, gt, [1, 3, 5], names, (1.0, 1.0, 1.0)).set_index("structure")
    assert list(rows.index) == ["femur", "tibia", "patella", "combined", "all_structures"]
    assert rows.loc["combined", "dice"] == pytest.approx(1.0)
    assert rows.loc["combined", "union_of"] == "femur, tibia"
    assert rows.loc["combined", "gt_volume_cm3"] == pytest.approx(2.0)
    assert rows.loc["patella", "dice"] == pytest.approx(0.0)
    assert rows.loc["all_structures", "dice"] == pytest.approx(2 * 2000 / (2125 + 2125))
    assert rows.loc["all_structures", "union_of"] == "femur, tibia, patella"
    # a volume with none of the combined structures (the spine) joins its own structures
    spine = structure_scores(pred, gt, [1, 3, 5], {1: "L1", 3: "L2", 5: "L3"}, (1.0, 1.0, 1.0)).set_index("structure")
    assert list(spine.index) == ["L1", "L2", "L3", "combined"]
    assert spine.loc["combined", "dice"] == pytest.approx(2 * 2000 / (2125 + 2125))
    assert spine.loc["combined", "union_of"] == "L1, L2, L3"


def test_slice_scores_offsets_and_one_sided_slices():
    gt = np.zeros((6, 4, 4), np.int16)
    gt[1:4, :2, :2] = 1
    pred = np.zeros_like(gt)
    pred[2:5, :2, :2] = 1
    pred[2, :2, 2:] = 1  # slice 2: 8 predicted, 4 manual, 4 overlap
    rows = slice_scores(pred, gt, [1, 2], {1: "femur"}, {1: 2})
    assert rows["slice_index"].tolist() == [1, 2, 3, 4]
    assert rows["offset"].tolist() == [-1, 0, 1, 2]
    assert rows["dice"].tolist() == pytest.approx([0.0, 2 * 4 / 12, 1.0, 0.0])
    assert np.isnan(dice(np.zeros(3), np.zeros(3)))  # the one Dice: two empty masks are not scored


def test_point_sets_of_different_lengths_are_padded_and_an_area_floor_of_zero_is_safe():
    image, labels = moving_phantom()
    enc = SliceEncoder(ObjectSegmenter(size_px=64), image)
    s1, s2 = P.single_slice_prompts(labels, [1, 2], negatives=True)
    s2 = P.ObjectPrompt(2, s2.frame, s2.points[:1], s2.point_labels[:1])  # 2 points vs 1 point
    label_map, _ = enc.decode(10, [s1, s2])
    np.testing.assert_array_equal(label_map, labels[10])
    run = run_carry(enc, [s1, s2], "point", min_area_px=0)
    np.testing.assert_array_equal(run.labels, labels)


class FakeVideoPredictor:
    """Fixed logits per object and frame: object 1 claims the left 6 columns (+2), object 2
    columns 4-9 (+5, so it wins the overlap), object 3 the bottom rows (+1) only on frames it
    reaches. Records the passes it was asked for."""

    image_size = 32

    def __init__(self):
        self.passes, self.resets, self.prompts = [], 0, []

    def reset_state(self, state):
        self.resets += 1
        state["objs"] = []

    def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None, box=None):
        state["objs"].append(obj_id)
        self.prompts.append((frame_idx, obj_id))

    def propagate_in_video(self, state, start_frame_idx, reverse=False):
        import torch

        self.passes.append((start_frame_idx, reverse, tuple(state["objs"])))
        order = range(start_frame_idx, -1, -1) if reverse else range(start_frame_idx, state["num_frames"])
        for f in order:
            logits = torch.full((len(state["objs"]), 1, 8, 10), -3.0)
            for i, obj in enumerate(state["objs"]):
                if obj == 1:
                    logits[i, 0, :, :6] = 2.0
                elif obj == 2:
                    logits[i, 0, :, 4:] = 5.0
                else:
                    logits[i, 0, 6:, :] = 1.0
            yield f, list(state["objs"]), logits


def test_video_passes_merge_by_highest_logit_over_every_frame():
    from mskseg_lib.video3d.propagate import _track

    pred = FakeVideoPredictor()
    state = {"num_frames": 5, "video_height": 8, "video_width": 10}
    seeds = [P.ObjectPrompt(1, 2, np.array([[1, 1]]), np.array([1])),
             P.ObjectPrompt(2, 2, np.array([[8, 1]]), np.array([1])),
             P.ObjectPrompt(3, 4, np.array([[5, 7]]), np.array([1]))]
    labels = _track(pred, state, seeds)
    assert pred.passes == [(2, False, (1, 2)), (2, True, (1, 2)), (4, False, (3,)), (4, True, (3,))]
    assert pred.resets == 2  # a fresh tracking state per prompted slice
    expected = np.zeros((8, 10), np.int16)
    expected[:, :4] = 1
    expected[:, 4:] = 2  # 5 > 2 on the overlap, and 5 > 1 where object 3 also claims
    for f in range(5):  # every frame, before and after the prompted ones
        np.testing.assert_array_equal(labels[f], expected)
