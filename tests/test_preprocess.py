"""Intensity clipping, resizing and small-object removal on arrays with known answers."""
import numpy as np
import pytest

from mskseg_lib.data.preprocess import (
    SliceGeometry, clean_mask_volume, clip_to_uint8, from_display, remove_small_components,
    resize_slice, to_display, unresize_mask,
)


def test_clip_uses_percentiles_of_nonzero_voxels():
    v = np.zeros((10, 10, 10), np.float32)
    v[:, :, 5:] = np.arange(1, 501, dtype=np.float32).reshape(10, 10, 5)  # 1..500, half zeros
    out = clip_to_uint8(v, (10.0, 90.0))
    lo, hi = np.percentile(np.arange(1, 501), [10, 90])  # zeros must not count
    assert out.dtype == np.uint8
    assert out[v <= lo].max() == 0 and out[v >= hi].min() == 255
    mid = (lo + hi) / 2
    k = np.argmin(np.abs(v - mid))
    assert abs(int(out.flat[k]) - 255 * (v.flat[k] - lo) / (hi - lo)) <= 1


def test_clip_constant_volume_is_zero():
    assert not clip_to_uint8(np.full((4, 4, 4), 7.0)).any()


def test_resize_keeps_aspect_and_pads():
    img = np.zeros((64, 128), np.uint8)
    img[16:48, 32:96] = 200
    out = resize_slice(img, 256)
    assert out.shape == (256, 256)
    assert not out[128:].any()  # padding below the 128-row resized image
    inner = out[36:92, 68:188]  # the rectangle scaled by 2, away from its cubic-blurred edge
    assert inner.min() >= 190 and out[:28].max() <= 10
    mask = (img > 0).astype(np.uint8) * 3
    m = resize_slice(mask, 256, is_mask=True)
    assert set(np.unique(m)) == {0, 3}  # nearest neighbour: no new label values
    assert m.sum() // 3 == 64 * 128
    geom = SliceGeometry(64, 128, 256)
    assert np.array_equal(unresize_mask(m, geom), mask)


def test_small_components_removed_in_2d_and_3d():
    lab = np.zeros((20, 20), np.int16)
    lab[2:12, 2:12] = 1  # 100 px
    lab[15:17, 15:17] = 1  # 4 px speck
    lab[15:18, 2:5] = 2  # 9 px of another label
    out = remove_small_components(lab, 10)
    assert (out == 1).sum() == 100 and (out == 2).sum() == 0
    vol = np.zeros((10, 10, 10), np.int16)
    vol[1:6, 1:6, 1:6] = 1  # 125 voxels
    vol[8, 8, 8] = 1
    cleaned = clean_mask_volume(vol, slice_axis=2, min_voxels=50, min_px=1)
    assert cleaned.sum() == 125


def test_thin_diagonal_structure_is_one_component():
    lab = np.eye(12, dtype=np.int16)  # diagonal line: 8-connected, not 4-connected
    assert remove_small_components(lab, 10).sum() == 12


def test_display_round_trip():
    a = np.arange(12).reshape(3, 4)
    assert np.array_equal(from_display(to_display(a)), a)
    assert to_display(a).shape == (4, 3)
