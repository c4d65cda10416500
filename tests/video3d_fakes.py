"""Stand-ins with known answers for the video3d tests.

* ``ObjectSegmenter``: an image-only segmenter that returns the bright connected object under
  its prompt (the component containing the point, or the one overlapping the box most), at the
  model's input size. A perfect "segment the thing I point at" model: propagation that carries
  its prompts correctly must recover a phantom exactly, and must stop where the object ends.
* ``moving_phantom``: slices (N, H, W) uint8 with two discs whose centres move smoothly across
  slices and whose radii shrink to nothing at their ends, and the matching label stack.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from mskseg_lib.models.interface import Prompts


class ObjectSegmenter:
    name = "object-under-prompt"
    autocast_bf16 = False

    def __init__(self, size_px: int = 64, threshold: int = 128):
        self.input_size_px = size_px
        self.threshold = threshold
        self.device = torch.device("cpu")
        self.encoded: list[int] = []

    def encode(self, images, valid_hw=None):
        images = np.asarray(images)
        self.encoded.append(len(images))
        return [{"image": torch.as_tensor(im.copy())} for im in images]

    def decode(self, embedding, prompts: Prompts) -> torch.Tensor:
        image = embedding["image"].numpy()
        comps, n = ndimage.label(image > self.threshold)
        out = torch.full((len(prompts), *image.shape), -10.0)
        for i in range(len(prompts)):
            pick = 0
            if prompts.boxes is not None:
                x0, y0, x1, y1 = np.round(prompts.boxes[i]).astype(int)
                inside = comps[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1]
                counts = np.bincount(inside.ravel(), minlength=n + 1)
                counts[0] = 0
                pick = int(np.argmax(counts)) if counts.max() > 0 else 0
            else:
                x, y = np.round(prompts.points[i][prompts.point_labels[i] == 1][0]).astype(int)
                if 0 <= y < image.shape[0] and 0 <= x < image.shape[1]:
                    pick = int(comps[y, x])
            if pick:
                out[i][torch.as_tensor(comps == pick)] = 10.0
        return out


def moving_phantom(n_slices: int = 21, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two discs (labels 1 and 2) drifting 1 px per slice in opposite directions.

    Disc 1 spans slices 2..18 and disc 2 slices 4..16, each largest at the middle slice (10) and
    shrinking to a small disc at its ends; the image is 200 inside the discs plus noise, 20
    outside.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((n_slices, size, size), np.int16)
    mid = n_slices // 2
    for value, (first, last), (cy, cx), drift in ((1, (2, n_slices - 3), (20, 20), 1), (2, (4, n_slices - 5), (44, 42), -1)):
        half = (last - first) / 2.0
        for k in range(first, last + 1):
            radius = 3.0 + 7.0 * (1.0 - abs(k - mid) / (half + 1.0))
            c = (cy + drift * (k - mid), cx + drift * (k - mid) * 0.5)
            labels[k][(yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= radius ** 2] = value
    image = np.where(labels > 0, 200, 20) + rng.integers(0, 20, labels.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels
