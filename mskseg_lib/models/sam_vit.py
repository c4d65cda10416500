"""SAM ViT-B/L/H and MedSAM ViT-B: one architecture family (segment-anything), two input conventions.

* SAM: RGB 0-255, minus the ImageNet mean and over its std (``Sam.preprocess``), padding
  applied *after* normalisation, so the padded region is zero in normalised units. Given each
  slice's unpadded size (``valid_hw``), ``encode`` reproduces that exactly.
* MedSAM: each slice min-max scaled to 0-1, no mean/std (MedSAM's inference script).

``decode_sam_style`` is the shared prompt path (prompt encoder + mask decoder, many prompts of
one slice against one embedding); LiteMedSAM uses it too. ``VIT_B``, ``VIT_L`` and ``VIT_H`` are
the published encoders (embedding width, depth, heads, global-attention blocks; the rest is
shared), looked up by the registry's ``architecture`` in ``SAM_ARCHITECTURES``. ``TINY_SAM`` is
a randomly initialised miniature of the architecture for tests, built by the same ``build_sam_vit``.
"""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from mskseg_lib.ledger import model_identity, record_work
from mskseg_lib.models.checkpoints import load_weights
from mskseg_lib.models.interface import Embedding, Prompts, as_image_batch, inference_context, upsample_logits

VIT_B: dict[str, Any] = {"img_size": 1024, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12,
                         "global_attn_indexes": (2, 5, 8, 11), "window_size": 14, "prompt_dim": 256,
                         "decoder_depth": 2, "decoder_mlp_dim": 2048, "decoder_heads": 8}
VIT_L: dict[str, Any] = {**VIT_B, "embed_dim": 1024, "depth": 24, "num_heads": 16,
                         "global_attn_indexes": (5, 11, 17, 23)}
VIT_H: dict[str, Any] = {**VIT_B, "embed_dim": 1280, "depth": 32, "num_heads": 16,
                         "global_attn_indexes": (7, 15, 23, 31)}
#: registry ``architecture`` -> encoder settings (as ``segment_anything.build_sam`` builds them)
SAM_ARCHITECTURES: dict[str, dict[str, Any]] = {"vit_b": VIT_B, "vit_l": VIT_L, "vit_h": VIT_H}
TINY_SAM: dict[str, Any] = {"img_size": 128, "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2,
                            "global_attn_indexes": (1,), "window_size": 4, "prompt_dim": 32,
                            "decoder_depth": 1, "decoder_mlp_dim": 64, "decoder_heads": 2}
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def sam_architecture(name: str) -> dict[str, Any]:
    """The encoder settings of a registry ``architecture`` (``vit_b``, ``vit_l``, ``vit_h``)."""
    try:
        return SAM_ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown SAM architecture {name!r}; known: {', '.join(SAM_ARCHITECTURES)}") from None


def build_sam_vit(arch: dict[str, Any] = VIT_B) -> Sam:
    """A SAM model (random weights) of the given ViT architecture, as ``segment_anything`` builds it."""
    dim, size = arch["prompt_dim"], arch["img_size"]
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=arch["depth"], embed_dim=arch["embed_dim"], img_size=size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=arch["num_heads"],
            patch_size=arch["patch_size"], qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=tuple(arch["global_attn_indexes"]), window_size=arch["window_size"], out_chans=dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim, image_embedding_size=(size // arch["patch_size"],) * 2,
            input_image_size=(size, size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=arch["decoder_depth"], embedding_dim=dim,
                                          mlp_dim=arch["decoder_mlp_dim"], num_heads=arch["decoder_heads"]),
            transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=list(SAM_PIXEL_MEAN), pixel_std=list(SAM_PIXEL_STD),
    )


def to_input_tensor(images: np.ndarray, normalisation: str, device: torch.device,
                    valid_hw: list[tuple[int, int]] | None = None) -> torch.Tensor:
    """uint8 (B,S,S) slices -> float (B,3,S,S) in the model's convention.

    ``sam_mean_std``: (x - mean) / std with the padding (outside ``valid_hw``) set to 0 after
    normalising, as SAM pads; ``unit``: per-slice min-max to 0-1 (MedSAM, LiteMedSAM).
    """
    x = torch.as_tensor(np.ascontiguousarray(images), device=device).float()
    if normalisation == "sam_mean_std":
        mean = torch.tensor(SAM_PIXEL_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(SAM_PIXEL_STD, device=device).view(1, 3, 1, 1)
        x = (x[:, None].expand(-1, 3, -1, -1) - mean) / std
        if valid_hw is not None:
            for i, (h, w) in enumerate(valid_hw):
                x[i, :, h:, :] = 0.0
                x[i, :, :, w:] = 0.0
        return x.contiguous()
    if normalisation == "unit":
        lo = x.amin(dim=(1, 2), keepdim=True)
        hi = x.amax(dim=(1, 2), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-8)
        return x[:, None].expand(-1, 3, -1, -1).contiguous()
    raise ValueError(f"unknown normalisation {normalisation!r}")


def prompt_tensors(prompts: Prompts, device: torch.device) -> tuple[Any, Any]:
    """(points, boxes) arguments of SAM's prompt encoder for N prompts."""
    points = None
    if prompts.points is not None:
        points = (torch.as_tensor(prompts.points, device=device), torch.as_tensor(prompts.point_labels, device=device))
    boxes = None if prompts.boxes is None else torch.as_tensor(prompts.boxes, device=device)
    return points, boxes


def decode_sam_style(prompt_encoder: torch.nn.Module, mask_decoder: torch.nn.Module, embedding: Embedding,
                     prompts: Prompts, size_px: int, device: torch.device) -> torch.Tensor:
    """All prompts of one slice in one decoder call (the embedding is broadcast, not re-encoded)."""
    points, boxes = prompt_tensors(prompts, device)
    sparse, dense = prompt_encoder(points=points, boxes=boxes, masks=None)
    low_res, _ = mask_decoder(
        image_embeddings=embedding["image_embed"][None].to(device),
        image_pe=prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return upsample_logits(low_res, size_px)


class SamSegmenter:
    """SAM-layout model (SAM, MedSAM, LiteMedSAM) behind the common interface."""

    def __init__(self, name: str, model: torch.nn.Module, normalisation: str, device: torch.device, autocast_bf16: bool = True):
        self.name = name
        self.model = model.to(device).eval()
        self.normalisation = normalisation
        self.device = device
        self.autocast_bf16 = autocast_bf16
        self.input_size_px = int(model.image_encoder.img_size)
        # CPU: channels-last convolutions are 1.4x faster for LiteMedSAM's TinyViT with the same
        # masks (``mskseg bench cpu-path``); ``compile_encoder`` adds torch.compile to inference
        # encodes (not to training, whose weights are saved by name)
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            self.model.image_encoder.to(memory_format=torch.channels_last)
        self.compile_encoder = False
        self._compiled: torch.nn.Module | None = None

    def parts(self) -> dict[str, torch.nn.Module]:
        """The trainable blocks by role (finetuning freezes or trains them by name)."""
        return {"encoder": self.model.image_encoder, "prompt_encoder": self.model.prompt_encoder,
                "mask_decoder": self.model.mask_decoder}

    def prepare(self, images: np.ndarray, valid_hw: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """uint8 slices (B, S, S) -> the encoder's input tensor on the device (channels-last on CPU)."""
        x = to_input_tensor(as_image_batch(images, self.input_size_px, self.name), self.normalisation,
                            self.device, valid_hw)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def embed(self, x: torch.Tensor) -> list[Embedding]:
        """Differentiable image encoding of a prepared batch (used by ``encode`` and by training)."""
        return [{"image_embed": e} for e in self.model.image_encoder(x)]

    def predict(self, embedding: Embedding, prompts: Prompts, size_px: int | None = None) -> torch.Tensor:
        """Differentiable decoding of all prompts of one slice: (N, s, s) logits, ``s = size_px``
        (the input size S by default; finetuning asks for its mask grid, e.g. the decoder's own
        256-px low-resolution logits of a 1024-px model, which then need no resizing)."""
        return decode_sam_style(self.model.prompt_encoder, self.model.mask_decoder, embedding, prompts,
                                size_px or self.input_size_px, self.device)

    def encode(self, images: np.ndarray, valid_hw: list[tuple[int, int]] | None = None) -> list[Embedding]:
        with inference_context(self.device, self.autocast_bf16):
            x = self.prepare(images, valid_hw)
            if not self.compile_encoder:
                return [{k: v.float() for k, v in e.items()} for e in self.embed(x)]
            if self._compiled is None:  # compiled on first use (tens of seconds), then reused
                self._compiled = torch.compile(self.model.image_encoder)
            return [{"image_embed": e.float()} for e in self._compiled(x)]

    def decode(self, embedding: Embedding, prompts: Prompts) -> torch.Tensor:
        """Logits (N, S, S) of all prompts of one slice from its embedding. On CPU one prompt per
        decoder pass: the decoder repeats the 64x64 image tokens per prompt and its cost per prompt
        grows with N (LiteMedSAM: 52 ms at N = 1, 67 at 4, 82 at 8), while each prompt's
        output does not depend on the others; on CUDA all prompts in one pass."""
        t0 = time.perf_counter()
        with inference_context(self.device, self.autocast_bf16):
            if self.device.type == "cpu" and len(prompts) > 1:
                out = torch.cat([self.predict(embedding, prompts.subset(i)) for i in range(len(prompts))])
            else:
                out = self.predict(embedding, prompts)
        record_work("box", model_identity(self), len(out), time.perf_counter() - t0)
        return out


def load_sam_segmenter(name: str, checkpoint: Path | None, normalisation: str, device: torch.device,
                       autocast_bf16: bool = True, arch: dict[str, Any] = VIT_B) -> SamSegmenter:
    """Build the ViT architecture and load ``checkpoint`` (random weights when None: tests only)."""
    model = build_sam_vit(arch)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return SamSegmenter(name, model, normalisation, device, autocast_bf16)
