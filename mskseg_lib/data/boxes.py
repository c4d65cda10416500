"""Box prompts from masks: one box per label, and one per connected instance of a label.

Boxes are ``[x_min, y_min, x_max, y_max]`` in pixel indices of the slice (x = column,
y = row), inclusive of the last foreground pixel: the convention of MedSAM's box prompts.
A label split into several pieces on a slice (two menisci horns, left and right psoas) gets
one box around everything and one box per piece; evaluation picks the per-instance boxes for
multi-instance labels.

Two ways to perturb a box:

* ``shift_box_outward`` is the study's box shift (its ``npy_dataset.py``, MedSAM's convention):
  every side moves *outward* by its own uniform random integer 0..N pixels of the square mask
  grid (256 x 256 by default), then the box is clipped to the image; the shifted box always
  contains the original one. It is the default for finetuning augmentation and for the
  zero-shot shifted prompt conditions.
* ``jitter_box`` is a symmetric prompting error (each side in or out by up to N pixels): a
  named, secondary prompt condition kind (``kind: jitter``), not the study's definition.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

Box = list[int]


def mask_box(mask: np.ndarray) -> Box | None:
    """Tight box around the non-zero pixels of a 2D mask, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


def instance_boxes(mask: np.ndarray, connectivity: int = 2) -> list[Box]:
    """One box per connected component (8-connected by default), largest first."""
    structure = ndimage.generate_binary_structure(2, connectivity)
    lab, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return []
    sizes = np.bincount(lab.ravel())[1:]
    objects = ndimage.find_objects(lab)
    out = []
    for idx in np.argsort(-sizes, kind="stable"):
        sl = objects[idx]
        out.append([int(sl[1].start), int(sl[0].start), int(sl[1].stop - 1), int(sl[0].stop - 1)])
    return out


def slice_boxes(labels_2d: np.ndarray) -> tuple[dict[int, Box], dict[int, list[Box]], dict[int, int]]:
    """Per label value: its box, its instance boxes and its pixel count on one slice."""
    boxes: dict[int, Box] = {}
    inst: dict[int, list[Box]] = {}
    counts: dict[int, int] = {}
    values, n = np.unique(labels_2d, return_counts=True)
    for value, count in zip(values.tolist(), n.tolist()):
        if value == 0:
            continue
        m = labels_2d == value
        boxes[value] = mask_box(m)
        inst[value] = instance_boxes(m)
        counts[value] = int(count)
    return boxes, inst, counts


def shift_box_outward(box: list[float] | tuple[float, ...], max_shift_grid_px: int, rng: np.random.Generator,
                      limits_xy: tuple[float, float], step_xy: tuple[float, float] = (1.0, 1.0)) -> list[float]:
    """The study's box shift: each side moved outward by an independent integer 0..N grid pixels.

    Parameters
    ----------
    box : [x_min, y_min, x_max, y_max]
        The exact box (inclusive pixel indices of the frame it is given in).
    max_shift_grid_px : int
        N, the largest outward move of one side, in pixels of the mask grid.
    rng : numpy Generator
        Draws the four moves ``rng.integers(0, N + 1, 4)`` (x_min, y_min, x_max, y_max).
    limits_xy : (x_last, y_last)
        The last pixel index of the frame along x and y: sides are clipped to ``[0, last]``.
        The study clips x_max / y_max to W / H (one past the last pixel index of its 256-px
        mask); here the box stays a box of pixel indices (``W - 1``), which differs only for a
        box that ends within N grid pixels of the border.
    step_xy : (sx, sy)
        Frame pixels per grid pixel along x and y: 1 on the grid itself; on the original
        slice, the original pixels one grid pixel spans (so all models see the same box).

    Returns
    -------
    list of 4 floats: the shifted box, which contains ``box`` (clipping never cuts into it).
    """
    n = int(max_shift_grid_px)
    if n < 0:
        raise ValueError(f"max_shift_grid_px must be >= 0, got {max_shift_grid_px}")
    d = rng.integers(0, n + 1, size=4)
    x0, y0, x1, y1 = (float(v) for v in box)
    sx, sy = (float(v) for v in step_xy)
    x_last, y_last = (float(v) for v in limits_xy)
    return [min(x0, max(0.0, x0 - d[0] * sx)), min(y0, max(0.0, y0 - d[1] * sy)),
            max(x1, min(x_last, x1 + d[2] * sx)), max(y1, min(y_last, y1 + d[3] * sy))]


def jitter_box(box: Box, shift_px: float, rng: np.random.Generator, shape: tuple[int, int]) -> Box:
    """Move each side by a uniform random amount in [-shift_px, shift_px] (prompting error),
    keeping the box inside the image and non-degenerate. A secondary prompt condition
    (``kind: jitter``); the study's shift is ``shift_box_outward``."""
    x0, y0, x1, y1 = (np.asarray(box, float) + rng.uniform(-shift_px, shift_px, 4)).tolist()
    h, w = shape
    x0, x1 = sorted((float(np.clip(x0, 0, w - 1)), float(np.clip(x1, 0, w - 1))))
    y0, y1 = sorted((float(np.clip(y0, 0, h - 1)), float(np.clip(y1, 0, h - 1))))
    return [int(round(x0)), int(round(y0)), int(round(max(x1, x0 + 1))), int(round(max(y1, y0 + 1)))]
