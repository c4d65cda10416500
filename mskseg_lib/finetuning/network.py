"""A zoo segmenter as a trainable ``nn.Module``: freezing by strategy and a box-prompted forward.

* ``partial``: the image encoder (and the prompt encoder) frozen, the mask decoder trained; the
  encoder output is then a fixed function of the slice, so embeddings may be precomputed.
* ``full``: the image encoder and the mask decoder trained (the prompt encoder stays frozen in
  both, as in MedSAM's recipe).

Normalisation layers with running statistics (TinyViT's BatchNorm in LiteMedSAM) stay in eval
mode even when the encoder is trained: with 2 slices per step their batch statistics would be
noise, while their affine weights still learn. Every other module (SAM2's memory blocks) is
frozen. The forward decodes each sample's box against its own embedding, one decoder call per
sample, since SAM's decoder broadcasts one image over many prompts, not many over many.

The logits come out on the square mask grid (``mask_grid_px``) where the targets and the loss
live, as in the study's code: SAM, MedSAM and SAM2 decoders return 256 x 256 low-resolution
logits at 1024 px input and LiteMedSAM's returns 256 x 256 at 256 px, so with the default
256 grid the decoder's own output is used as it is; a model whose low-resolution output is
not the grid (the tiny test models) has its logits resized bilinearly to it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mskseg_lib.models.interface import Embedding, Prompts, Segmenter

STRATEGIES = {"partial": ("mask_decoder",), "full": ("encoder", "mask_decoder")}


class BoxPromptNet(torch.nn.Module):
    """``forward(boxes, images=None, embeddings=None) -> (B, G, G)`` logits for one box per sample.

    ``boxes`` are in model-input pixels; G is ``mask_grid_px`` (the input size S when None).
    """

    def __init__(self, segmenter: Segmenter, strategy: str, mask_grid_px: int | None = None):
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {sorted(STRATEGIES)}, got {strategy!r}")
        self.model = segmenter.model  # registered: the state dict is the zoo model's, under "model."
        object.__setattr__(self, "segmenter", segmenter)  # not a submodule (no duplicate parameters)
        self.strategy = strategy
        self.mask_grid_px = int(mask_grid_px or segmenter.input_size_px)
        self.trained_parts = STRATEGIES[strategy]
        fixed_single_mask_output(segmenter)
        self.set_trainable()

    def set_trainable(self) -> None:
        parts = self.segmenter.parts()
        for p in self.model.parameters():
            p.requires_grad_(False)
        for name in self.trained_parts:
            for p in parts[name].parameters():
                p.requires_grad_(True)
        if not self.encoder_trained:  # SAM2's high-res projections run inside the (frozen) encoding
            for name in ("conv_s0", "conv_s1"):
                for p in getattr(parts["mask_decoder"], name, torch.nn.Identity()).parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True) -> "BoxPromptNet":
        """Train mode only for the trained parts; running-statistics norms always in eval mode."""
        super().train(False)
        if mode:
            parts = self.segmenter.parts()
            for name in self.trained_parts:
                parts[name].train(True)
                for m in parts[name].modules():
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                        m.eval()
        self.training = mode
        return self

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @property
    def encoder_trained(self) -> bool:
        return "encoder" in self.trained_parts

    def embed(self, images: np.ndarray, valid_hw: list[tuple[int, int]]) -> list[Embedding]:
        x = self.segmenter.prepare(images, valid_hw)
        if self.encoder_trained:
            return self.segmenter.embed(x)
        with torch.no_grad():
            return [{k: v.detach() for k, v in e.items()} for e in self.segmenter.embed(x)]

    def forward(self, boxes: torch.Tensor, images: np.ndarray | None = None,
                valid_hw: list[tuple[int, int]] | None = None,
                embeddings: list[Embedding] | None = None) -> torch.Tensor:
        if embeddings is None:
            if images is None:
                raise ValueError("BoxPromptNet.forward needs images or embeddings")
            embeddings = self.embed(images, valid_hw or [])
        elif self.encoder_trained:
            raise ValueError("precomputed embeddings cannot train the encoder (strategy 'full')")
        box_np = boxes.detach().cpu().numpy().astype(np.float32)
        out = [self.segmenter.predict(e, Prompts(boxes=box_np[i:i + 1]), size_px=self.mask_grid_px)
               for i, e in enumerate(embeddings)]
        return torch.cat(out, dim=0)


def fixed_single_mask_output(segmenter: Segmenter) -> None:
    """Make the decoder's output the same in training and evaluation.

    SAM2 (``build_sam2``) switches, in eval mode only, to the multimask output its untrained IoU
    head rates best whenever the single mask looks unstable; a finetuned single-mask decoder
    must be scored on the output it was trained on. SAM's decoder has no such switch.
    """
    decoder = segmenter.parts()["mask_decoder"]
    if getattr(decoder, "dynamic_multimask_via_stability", False):
        decoder.dynamic_multimask_via_stability = False


def describe(net: BoxPromptNet) -> dict[str, Any]:
    n_all = sum(p.numel() for p in net.model.parameters())
    n_train = sum(p.numel() for p in net.trainable_parameters())
    return {"strategy": net.strategy, "trained_parts": list(net.trained_parts), "parameters": n_all,
            "trainable_parameters": n_train, "mask_grid_px": net.mask_grid_px}
