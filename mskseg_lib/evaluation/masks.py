"""From decoder logits to one multi-class mask at the original slice size.

1. The logits of the instances of one label are merged by their maximum (a pixel belongs to
   the label if any of its pieces claims it).
2. Each label's logits are cropped to the unpadded part of the model input and resized
   bilinearly to the original (rows, cols), as SAM's own ``postprocess_masks`` does, then
   thresholded at 0 (sigmoid 0.5).
3. Overlap rule: a pixel claimed by several labels goes to the label with the highest logit
   (the most confident prediction); ties go to the lower label value.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mskseg_lib.data.preprocess import SliceGeometry


def merge_instances(logits: torch.Tensor, labels: list[int]) -> tuple[torch.Tensor, list[int]]:
    """(N, S, S) logits of N prompts with their label values -> (L, S, S), one per label."""
    values = sorted(set(labels))
    index = torch.as_tensor(labels, device=logits.device)
    merged = torch.stack([logits[index == v].amax(dim=0) for v in values])
    return merged, values


def to_original(label_logits: torch.Tensor, geom: SliceGeometry) -> torch.Tensor:
    """(L, S, S) logits at model input -> (L, rows, cols) logits at the original slice size."""
    rows, cols = geom.resized_shape
    crop = label_logits[:, :rows, :cols].float()
    return F.interpolate(crop[None], size=(geom.rows_px, geom.cols_px), mode="bilinear", align_corners=False)[0]


def combine_labels(label_logits: torch.Tensor, values: list[int]) -> np.ndarray:
    """(L, H, W) logits -> (H, W) label map: 0 where no logit is positive, else the argmax label."""
    best, arg = label_logits.max(dim=0)
    lut = torch.as_tensor(values, dtype=torch.int16, device=label_logits.device)
    out = torch.where(best > 0, lut[arg], torch.zeros((), dtype=torch.int16, device=label_logits.device))
    return out.cpu().numpy().astype(np.uint8 if max(values) < 256 else np.int16)


def logits_to_label_map(logits: torch.Tensor, labels: list[int], geom: SliceGeometry) -> np.ndarray:
    """All three steps for the prompts of one slice."""
    merged, values = merge_instances(logits, labels)
    return combine_labels(to_original(merged, geom), values)
