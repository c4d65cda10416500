"""Stand-ins with known answers for the AutoLabel tests (imported by tests and the torchrun worker).

* ``BoxFillSegmenter``: a segmenter whose mask is exactly its box (logit +10 inside, -10 out),
  so a pipeline fed with a cuboid phantom's boxes must give the phantom back voxel for voxel.
* ``OracleDetector``: detections read off the phantom's display slices at the detector's input
  size (continuous box edges, as YOLO reports them).
* ``phantom``: an image/label pair of cuboids on a grid with a chosen, non-RAS orientation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mskseg_lib.data.boxes import slice_boxes
from mskseg_lib.data.preprocess import SliceGeometry, scale_box, to_display
from mskseg_lib.data.volume import Volume, affine_from_spacing, to_canonical
from mskseg_lib.models.interface import Prompts

THIGH = "Thigh_2D_T1ax_Clinical_Anatomical_50"  # axial: slices along canonical axis 2


class BoxFillSegmenter:
    name = "box-fill"
    autocast_bf16 = False

    def __init__(self, size_px: int = 128, slice_shape_px: int | tuple[int, int] = 40, resize_mode: str = "stretch"):
        """``slice_shape_px``: (rows, cols) of the volume's display slices (an int: square slices);
        ``resize_mode`` as the pipeline resizes them (``prepare.resize``)."""
        self.input_size_px = size_px
        rows, cols = (slice_shape_px, slice_shape_px) if isinstance(slice_shape_px, int) else slice_shape_px
        geom = SliceGeometry(int(rows), int(cols), size_px, resize_mode)
        self._fx, self._fy = geom.scale_cols, geom.scale_rows  # original -> model pixels, per axis
        self.device = torch.device("cpu")
        self.encoded = 0

    def encode(self, images, valid_hw=None):
        images = np.asarray(images)
        self.encoded += len(images)
        return [{"image_embed": torch.zeros(1)} for _ in images]

    def decode(self, embedding, prompts: Prompts) -> torch.Tensor:
        s = self.input_size_px
        centres = torch.arange(s, dtype=torch.float32)  # pixel i covers [i, i+1); inclusive boxes scaled
        out = torch.full((len(prompts), s, s), -10.0)
        for n, (x0, y0, x1, y1) in enumerate(prompts.boxes.tolist()):
            # an inclusive original box [x0, x1] covers [x0*f, (x1+1)*f) at model size, and the
            # pipeline's model box (mask_box_to_model) is [x0*f, (x1+1)*f - 1]: fill the pixel centres
            # inside [X0, X1 + 1)
            cols = (centres + 0.5 >= x0) & (centres + 0.5 < x1 + 1)
            rows = (centres + 0.5 >= y0) & (centres + 0.5 < y1 + 1)
            out[n][rows[:, None] & cols[None, :]] = 10.0
        return out


@dataclass
class Det:
    boxes_xyxy: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray


class OracleDetector:
    """Boxes of the canonical label volume's display slices, matched to the images by order."""

    name = "oracle"

    def __init__(self, labels_canonical: np.ndarray, slice_axis: int, size_px: int, extra_class: int | None = None,
                 per_instance: frozenset[int] = frozenset(), resize_mode: str = "stretch"):
        moved = np.moveaxis(labels_canonical, slice_axis, 0)
        self.slices = [to_display(moved[k]) for k in range(moved.shape[0])]
        self.size_px = size_px
        self.calls = 0
        self.extra_class = extra_class
        self.per_instance = per_instance  # labels boxed per connected piece (as the ground truth does)
        self.resize_mode = resize_mode  # how the export resized the detector's images

    def detect(self, images: np.ndarray) -> list[Det]:
        out = []
        for _ in images:
            lab = self.slices[self.calls % len(self.slices)]
            self.calls += 1
            geom = SliceGeometry(lab.shape[0], lab.shape[1], self.size_px, self.resize_mode)
            boxes, inst, _ = slice_boxes(lab)
            rows, classes = [], []
            for v in sorted(boxes):
                for x0, y0, x1, y1 in (inst[v] if v in self.per_instance else [boxes[v]]):
                    rows.append(scale_box([x0, y0, x1 + 1, y1 + 1], geom).tolist())
                    classes.append(v - 1)
            if self.extra_class is not None and rows:  # a class the dataset does not have
                rows.append(rows[0])
                classes.append(self.extra_class)
            out.append(Det(np.asarray(rows, np.float32).reshape(-1, 4), np.asarray(classes, np.int64),
                           np.ones(len(rows), np.float32)))
        return out


def phantom(shape=(40, 32, 6), spacing_mm=(0.8, 0.9, 4.0), orientation="LPS", seed: int = 0) -> tuple[Volume, np.ndarray]:
    """Image and labels (same voxel order) of two disjoint cuboids on an ``orientation`` grid."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    labels[4:20, 5:15, 1:5] = 1
    labels[24:36, 10:28, 0:4] = 2
    image = (100 + 400 * (labels == 1) + 800 * (labels == 2) + rng.normal(0, 5, shape)).astype(np.float32)
    affine = affine_from_spacing(spacing_mm, orientation)
    affine[:3, 3] = [-12.0, 30.0, 5.0]
    return Volume(image, affine, "phantom.nii.gz"), labels


def canonical_labels(volume: Volume, labels: np.ndarray) -> np.ndarray:
    return to_canonical(Volume(labels, volume.affine, volume.source)).data
