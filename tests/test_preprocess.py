"""Intensity clipping, resizing and small-object removal on arrays with known answers."""
import cv2
import numpy as np
import pytest
import torch

from mskseg_lib.data.preprocess import (
    SliceGeometry,
    clean_mask_volume,
    clip_to_uint8,
    from_display,
    geometry_of,
    remove_small_components,
    resize_slice,
    scale_box,
    to_display,
    unresize_mask,
    unscale_box,
)
from mskseg_lib.evaluation.masks import logits_to_label_map, to_original


def test_clip_default_is_the_study_1st_99th_percentile_of_nonzero_voxels():
    # 101 non-zero voxels 1..101 and 99 zeros: the 1st/99th percentiles of the non-zero ones are
    # exactly 2 and 100 (NumPy's linear interpolation), then (v - 2) / 98 * 255 truncated
    v = np.zeros(200, np.float32)
    v[:101] = np.arange(1, 102)
    out = clip_to_uint8(v.reshape(10, 20))
    got = dict(zip(v.tolist(), out.ravel().tolist()))
    assert out.dtype == np.uint8
    assert got[0.0] == 0 and got[1.0] == 0 and got[2.0] == 0  # zeros ignored, clipped below the 1st
    assert got[3.0] == 2  # 255 / 98 = 2.60 -> 2 (np.uint8 truncates, as the study's code)
    assert got[51.0] == 127  # 49 / 98 * 255 = 127.5 -> 127, not 128
    assert got[60.0] == 150  # 58 / 98 * 255 = 150.92
    assert got[100.0] == 255 and got[101.0] == 255  # clipped above the 99th


def _beta3(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    out = np.zeros_like(t)
    a, b = t < 1, (t >= 1) & (t < 2)
    out[a] = 2 / 3 - t[a] ** 2 + t[a] ** 3 / 2
    out[b] = (2 - t[b]) ** 3 / 6
    return out


def _cardinal_cubic_spline(x: np.ndarray) -> np.ndarray:
    """The interpolating cubic spline of a unit impulse (Unser 1999): sum_k sqrt(3) z^|k| beta3(x - k),
    z = sqrt(3) - 2. It rings beyond 2 px, where the Keys kernel of cv2's INTER_CUBIC is zero."""
    k = np.arange(-40, 41)
    z = np.sqrt(3) - 2
    return (np.sqrt(3) * z ** np.abs(k) * _beta3(np.asarray(x, float)[..., None] - k)).sum(-1)


def test_image_resize_is_the_cubic_spline_not_cv2_bicubic():
    # an impulse of 127 on a flat 128 background, enlarged 4x: the answer is the tensor product of
    # cardinal cubic splines, clipped to the slice's range (skimage's clip), rounded to uint8
    n, size, c = 64, 256, 32
    img = np.full((n, n), 128, np.uint8)
    img[c, c] = 255
    out = resize_slice(img, size).astype(float)
    d = (np.arange(size) + 0.5) * n / size - 0.5 - c  # output pixel centres in input pixels from the impulse
    truth = np.clip(128 + 127 * _cardinal_cubic_spline(d)[:, None] * _cardinal_cubic_spline(d)[None, :], 128, 255)
    near = np.ix_(np.abs(d) <= 8, np.abs(d) <= 8)
    assert np.abs(out - truth)[near].max() <= 0.5 + 1e-9
    # 2.1-2.6 px from the impulse the spline still rings (+3 to +5 grey levels); cv2's kernel has ended
    ring = (np.abs(d) >= 2.1) & (np.abs(d) <= 2.6)
    row = int(np.argmin(np.abs(d)))
    bicubic = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
    assert (bicubic[row, ring] == 128).all()
    assert (out[row, ring] >= 131).all()


def test_spline_reproduces_a_quadratic_on_a_stretched_non_square_slice():
    # f = 10 + y + x(x-1)/2 is an integer on the pixel grid (no quantisation) and a polynomial of
    # degree <= 3, which a cubic spline reproduces exactly away from the border
    rows, cols, size = 40, 20, 256
    y, x = np.mgrid[:rows, :cols]
    img = (10 + y + x * (x - 1) // 2).astype(np.uint8)
    out = resize_slice(img, size).astype(float)
    assert out.shape == (size, size)
    oy = (np.arange(size) + 0.5) * rows / size - 0.5  # centre-aligned, each axis on its own
    ox = (np.arange(size) + 0.5) * cols / size - 0.5
    truth = 10 + oy[:, None] + ox[None, :] * (ox[None, :] - 1) / 2
    inner = np.ix_((oy >= 7) & (oy <= rows - 8), (ox >= 7) & (ox <= cols - 8))
    assert np.abs(out - truth)[inner].max() <= 0.5 + 0.02


def test_stretch_fills_the_square_with_no_padding():
    img = np.full((60, 40), 200, np.uint8)
    out = resize_slice(img, 256)
    assert out.shape == (256, 256) and (out == 200).all()  # no zero rows or columns anywhere
    mask = np.full((60, 40), 3, np.uint8)
    assert (resize_slice(mask, 256, is_mask=True) == 3).all()
    geom = SliceGeometry(60, 40, 256)
    assert geom.resize_mode == "stretch" and geom.resized_shape == (256, 256)
    assert (geom.scale_rows, geom.scale_cols) == (256 / 60, 256 / 40)
    padded = resize_slice(img, 256, resize_mode="pad")
    assert SliceGeometry(60, 40, 256, "pad").resized_shape == (256, 171)
    assert (padded[:, :171] == 200).all() and not padded[:, 171:].any()
    with pytest.raises(ValueError, match="resize mode"):
        SliceGeometry(60, 40, 256, "crop")


@pytest.mark.parametrize("mode", ["stretch", "pad"])
def test_box_and_mask_round_trip_original_model_original(mode):
    rng = np.random.default_rng(0)
    rows, cols, size = 60, 40, 256
    labels = np.zeros((rows, cols), np.uint8)
    labels[5:31, 3:20] = 1
    labels[20:55, 22:37] = 2
    labels[rng.random((rows, cols)) < 0.05] = 3  # single pixels survive too
    geom = SliceGeometry(rows, cols, size, mode)
    model = resize_slice(labels, size, is_mask=True, resize_mode=mode)
    assert np.array_equal(unresize_mask(model, geom), labels)  # nearest both ways: exact
    # decoder-style logits (+10 inside, -10 outside) of each label, mapped back bilinearly
    logits = torch.stack([torch.where(torch.from_numpy(model == v), 10.0, -10.0) for v in (1, 2, 3)])
    assert np.array_equal(logits_to_label_map(logits, [1, 2, 3], geom), labels)
    assert to_original(logits, geom).shape == (3, rows, cols)
    boxes = np.array([[3, 5, 19, 30], [22, 20, 36, 54], [0, 0, cols - 1, rows - 1]], float)
    in_model = scale_box(boxes, geom)
    assert np.allclose(unscale_box(in_model, geom), boxes, rtol=0, atol=1e-12)
    # the scaled box edges enclose exactly the model pixels of the label (pixel edges x0 .. x1 + 1)
    for v, (x0, y0, x1, y1) in zip((1, 2), boxes[:2]):
        ys, xs = np.nonzero(model == v)
        lo = scale_box([x0, y0], geom)
        hi = scale_box([x1 + 1, y1 + 1], geom)
        assert lo[0] - 0.5 <= xs.min() <= lo[0] + 0.5 and lo[1] - 0.5 <= ys.min() <= lo[1] + 0.5
        assert hi[0] - 1.5 <= xs.max() <= hi[0] - 0.5 and hi[1] - 1.5 <= ys.max() <= hi[1] - 0.5


def test_geometry_of_a_table_row_reads_its_resize_mode():
    import pandas as pd

    rows = pd.DataFrame([{"rows_px": 60, "cols_px": 40, "resize_mode": "pad"},
                         {"rows_px": 60, "cols_px": 40, "resize_mode": "stretch"}])
    assert geometry_of(rows.iloc[0], 256).resized_shape == (256, 171)
    assert geometry_of(next(rows.itertuples()), 256).resize_mode == "pad"
    assert geometry_of({"rows_px": 60, "cols_px": 40}, 256).resized_shape == (256, 256)  # hand-built: default


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


def test_pad_mode_keeps_aspect_and_pads():
    img = np.zeros((64, 128), np.uint8)
    img[16:48, 32:96] = 200
    out = resize_slice(img, 256, resize_mode="pad")
    assert out.shape == (256, 256)
    assert not out[128:].any()  # padding below the 128-row resized image
    inner = out[36:92, 68:188]  # the rectangle scaled by 2, away from its cubic-blurred edge
    assert inner.min() >= 190 and out[:28].max() <= 10
    mask = (img > 0).astype(np.uint8) * 3
    m = resize_slice(mask, 256, is_mask=True, resize_mode="pad")
    assert set(np.unique(m)) == {0, 3}  # nearest neighbour: no new label values
    assert m.sum() // 3 == 64 * 128
    geom = SliceGeometry(64, 128, 256, "pad")
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


@pytest.mark.parametrize("shape, size_px, mode", [((64, 64), 1024, "stretch"), ((64, 48), 256, "stretch"),
                                                   ((32, 32), 256, "pad"), ((100, 120), 1024, "stretch"),
                                                   ((512, 512), 256, "stretch")])
def test_mask_box_to_model_is_the_box_of_the_resized_mask(shape, size_px, mode):
    """A box prompt covers the structure's pixels after the resize, as the study boxes the resized
    mask: exactly the nearest-resized mask's box for integer scales (64 -> 1024: x16, so a structure
    ending at pixel 40 ends at 16 * 41 - 1 = 655, where ``scale_box`` stops at 640), within a model
    pixel otherwise; a shrinking resize never turns a box inside out."""
    from mskseg_lib.data.preprocess import mask_box_to_model, model_box_to_mask

    rows, cols = shape
    mask = np.zeros(shape, np.uint8)
    y0, y1, x0, x1 = rows // 4, rows // 2, cols // 3, cols - 8
    mask[y0:y1 + 1, x0:x1 + 1] = 1
    geom = SliceGeometry(rows, cols, size_px, mode)
    got = mask_box_to_model([x0, y0, x1, y1], geom)
    resized = resize_slice(mask, size_px, is_mask=True, resize_mode=mode)
    yy, xx = np.nonzero(resized)
    want = np.array([xx.min(), yy.min(), xx.max(), yy.max()], float)
    exact = all(float(f).is_integer() for f in (geom.scale_cols, geom.scale_rows))
    assert np.allclose(got, want, atol=1e-9 if exact else 1.0)
    assert np.allclose(model_box_to_mask(got, geom), [x0, y0, x1, y1])
    if shape == (64, 64):
        assert got[2] == 16 * (x1 + 1) - 1 and scale_box([x0, y0, x1, y1], geom)[2] == 16 * x1
    one_px = mask_box_to_model([10, 10, 10, 10], geom)
    assert one_px[2] >= one_px[0] and one_px[3] >= one_px[1]
