"""AutoLabel post-processing on masks whose answer is known: holes narrower than the kernel
close, wider ones stay, specks vanish, thin parts go with the blur, overlaps follow the rule."""
from __future__ import annotations

import numpy as np
import pytest

from mskseg_lib.autolabel import postprocess as pp
from mskseg_lib.data.catalog import get_dataset

THIGH = get_dataset("Thigh_2D_T1ax_Clinical_Anatomical_50")


def square(shape=(80, 80), top=20, left=20, size=40) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top:top + size, left:left + size] = True
    return m


def test_hole_narrower_than_kernel_closes_and_wider_stays():
    m = square()
    m[38:41, 38:41] = False  # 3x3 hole in the middle
    out = pp.clean_label_mask(m, kernel_px=7, min_component_px=0)
    assert out[38:41, 38:41].all()
    assert out[25:55, 25:55].all()  # interior untouched
    assert not out[:15].any() and not out[:, :15].any()  # no growth beyond the blur's reach
    big = square()
    big[30:50, 30:50] = False  # 20x20 hole, far wider than a 7 px kernel
    out = pp.clean_label_mask(big, kernel_px=7, min_component_px=0)
    assert not out[33:47, 33:47].any()


def test_area_of_a_clean_square_is_kept_but_corners_round():
    out = pp.clean_label_mask(square(), kernel_px=7, min_component_px=0)
    # edges stay exactly in place (blur of a straight edge is 0.5 on the edge); corners round off
    assert out[40, 20] and not out[40, 19] and out[40, 59] and not out[40, 60]
    assert not out[20, 20]
    assert 1600 - 40 < out.sum() <= 1600


def test_speck_disappears_and_big_component_stays():
    m = square()
    m[5:7, 70:72] = True  # 4-pixel speck
    out = pp.clean_label_mask(m, kernel_px=1, min_component_px=10)
    assert not out[5:7, 70:72].any()
    assert (out == square()).all()  # kernel 1: no closing, no blur


def test_blur_removes_parts_thinner_than_a_third_of_the_kernel():
    m = np.zeros((60, 60), bool)
    m[10:50, 29] = True  # a 1-pixel line
    assert not pp.clean_label_mask(m, kernel_px=15, min_component_px=0).any()
    m[10:50, 25:33] = True  # 8-pixel band survives a 7 px kernel
    assert pp.clean_label_mask(m, kernel_px=7, min_component_px=0)[20:40, 26:32].all()


@pytest.mark.parametrize("bad", [0, 4, 2.5, -3])
def test_kernel_must_be_odd_positive(bad):
    with pytest.raises(ValueError, match="odd integer"):
        pp.check_kernel(bad)


def test_overlap_keeps_original_label_then_smaller_area_wins():
    labels = np.zeros((60, 60), np.uint8)
    labels[10:50, 10:30] = 1  # big
    labels[10:50, 31:36] = 2  # small strip, one-pixel gap to the big one
    out = pp.postprocess_slice(labels, {1: 1, 2: 5}, min_component_px=0)
    # closing of label 2 alone does not reach into label 1's original pixels
    assert (out[15:45, 10:30] == 1).all()
    before = np.zeros((40, 40), np.uint8)
    cleaned = {1: np.zeros((40, 40), bool), 2: np.zeros((40, 40), bool)}
    cleaned[1][5:35, 5:35] = True  # area 900
    cleaned[2][15:20, 15:20] = True  # area 25, inside 1; neither was there before
    out = pp.resolve_overlaps(before, cleaned)
    assert (out[15:20, 15:20] == 2).all() and out[10, 10] == 1
    before[15:20, 15:20] = 1  # now label 1 had those pixels: it keeps them
    assert (pp.resolve_overlaps(before, cleaned)[15:20, 15:20] == 1).all()


def test_largest_component_3d_keeps_the_biggest_and_skips_multi_instance():
    vol = np.zeros((10, 30, 30), np.uint8)
    vol[2:8, 5:15, 5:15] = 1  # 600 voxels
    vol[0, 25:28, 25:28] = 1  # 9 voxels, far away
    vol[2:8, 20:25, 5:10] = 2
    vol[2:8, 20:25, 20:25] = 2  # two equal pieces of label 2 (multi-instance by anatomy)
    out = pp.largest_component_3d(vol, skip_values={2})
    assert out[0, 25:28, 25:28].sum() == 0 and (out[2:8, 5:15, 5:15] == 1).all()
    assert (out == 2).sum() == (vol == 2).sum()
    out = pp.largest_component_3d(vol)
    assert (out == 2).sum() == (vol == 2).sum() // 2


def test_label_kernels_follow_tissue_class_and_overrides():
    settings = pp.PostprocessSettings()  # the study's kernels: 7 fine, 11 muscle, 15 bone and fat
    assert dict(settings.kernel_px) == {"cartilage": 7, "nerve": 7, "muscle": 11, "bone": 15, "fat": 15}
    kernels = pp.label_kernels(THIGH, settings)
    for lab in THIGH.labels:
        assert kernels[lab.value] == settings.kernel_px[lab.tissue_class]
    name = THIGH.labels[0].name
    kernels = pp.label_kernels(THIGH, pp.PostprocessSettings(kernel_px_by_label={name: 3}))
    assert kernels[THIGH.labels[0].value] == 3
    with pytest.raises(pp.PostprocessError, match="not labels of"):
        pp.label_kernels(THIGH, pp.PostprocessSettings(kernel_px_by_label={"spleen": 3}))
    with pytest.raises(pp.PostprocessError, match="no kernel for tissue class"):
        pp.label_kernels(THIGH, pp.PostprocessSettings(kernel_px={}))


def test_postprocess_volume_disabled_is_identity_and_enabled_cleans_each_slice():
    vol = np.zeros((40, 40, 3), np.uint8)
    value = THIGH.labels[0].value
    vol[5:35, 5:35, :] = value
    vol[19:21, 19:21, 1] = 0  # a hole on slice 1 only
    vol[0, 0, 2] = value  # a speck on slice 2
    settings = pp.PostprocessSettings(enabled=False, min_component_px=5,
                                      kernel_px={c: 5 for c in ("cartilage", "nerve", "muscle", "bone", "fat")})
    assert (pp.postprocess_volume(vol, 2, THIGH, settings) == vol).all()
    out = pp.postprocess_volume(vol, 2, THIGH, settings.switched(True))
    assert (out[19:21, 19:21, 1] == value).all() and out[0, 0, 2] == 0


def test_structure_cut_by_the_image_edge_is_not_eroded_there():
    m = np.zeros((40, 40), bool)
    m[:, :20] = True  # fills the left half, touching three image edges
    out = pp.clean_label_mask(m, kernel_px=15, min_component_px=0)
    assert (out == m).all()
    full = np.ones((30, 30), bool)
    assert pp.clean_label_mask(full, kernel_px=9, min_component_px=0).all()
