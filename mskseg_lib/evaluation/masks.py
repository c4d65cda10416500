"""From decoder logits to one multi-class mask at the original slice size.

1. The logits of the instances of one label are merged by their maximum (a pixel belongs to
   the label if any of its pieces claims it).
2. Each label's logits are cropped to the part of the model input the slice occupies (the
   whole square under the study's ``stretch`` resize, the unpadded corner under ``pad``; see
   ``data.preprocess.SliceGeometry``) and resized bilinearly to the original (rows, cols), as
   SAM's own ``postprocess_masks`` does, then thresholded at 0 (sigmoid 0.5).
3. Overlap rule: a pixel claimed by several labels goes to the label whose predicted mask is
   smallest. MSK anatomy is nested (the subcutaneous-fat box of the thigh encloses every
   muscle; a femur box holds its cartilage rim), and a model prompted with the enclosing box
   often fills it: painting large masks first and smaller ones over them keeps the inner
   structures. Equal areas fall back to the higher logit.
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
    """(L, S, S) logits at model input -> (L, rows, cols) logits at the original slice size.

    Bilinear, centre-aligned (``align_corners=False``), from the region ``geom.resized_shape``
    (everything under ``stretch``; rows and columns then scale by different factors).
    """
    rows, cols = geom.resized_shape
    crop = label_logits[:, :rows, :cols].float()
    return F.interpolate(crop[None], size=(geom.rows_px, geom.cols_px), mode="bilinear", align_corners=False)[0]


def combine_labels(label_logits: torch.Tensor, values: list[int]) -> np.ndarray:
    """(L, H, W) logits -> (H, W) label map: 0 where no logit is positive; overlaps go to the
    label with the smallest predicted area (then the highest logit)."""
    fg = label_logits > 0
    area = fg.flatten(1).sum(dim=1).float()
    # score: smaller area dominates; the logit (squashed to (0, 1)) breaks ties between equal areas
    score = torch.where(fg, -area[:, None, None] + torch.sigmoid(label_logits.float()), torch.tensor(float("-inf")))
    best, arg = score.max(dim=0)
    lut = torch.as_tensor(values, dtype=torch.int16, device=label_logits.device)
    out = torch.where(torch.isfinite(best), lut[arg], torch.zeros((), dtype=torch.int16, device=label_logits.device))
    return out.cpu().numpy().astype(np.uint8 if max(values) < 256 else np.int16)


def logits_to_label_map(logits: torch.Tensor, labels: list[int], geom: SliceGeometry) -> np.ndarray:
    """All three steps for the prompts of one slice."""
    merged, values = merge_instances(logits, labels)
    return combine_labels(to_original(merged, geom), values)
