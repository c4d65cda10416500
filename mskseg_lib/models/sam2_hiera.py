"""SAM2 (hiera image encoder) behind the study's ``Segmenter`` interface.

The adapter reproduces what ``sam2.sam2_image_predictor.SAM2ImagePredictor`` does for one image
(``set_image`` / ``set_image_batch`` then ``predict(..., multimask_output=False)``) but splits it
the way the study needs it: ``encode`` runs the image encoder once per batch of slices and returns
one cacheable embedding dict per slice; ``decode`` runs the prompt encoder and mask decoder for all
N prompts of one slice in one call. The slices the study stores are already square at the model's
input size, so SAM2's resize is the identity and prompt coordinates need no rescaling.

Models are always built through ``sam2.build_sam.build_sam2`` (the same hydra config and
``instantiate`` path as the published models) with random initialisation; the weights are then
loaded with ``mskseg_lib.models.checkpoints.load_weights`` so that DDP/``torch.compile``/training
wrapper prefixes and ``{"model": ...}`` containers all load. ``TINY_SAM2_OVERRIDES`` shrinks a
config to a tiny random model that builds and runs in well under a second on a CPU, for tests.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from mskseg_lib.ledger import model_identity, record_work
from mskseg_lib.models.checkpoints import load_weights
from mskseg_lib.models.interface import (
    Embedding,
    Prompts,
    as_image_batch,
    inference_context,
    upsample_logits,
)
from mskseg_lib.models.registry import CheckpointSpec

# ImageNet statistics on 0-1 images, as in sam2.utils.transforms.SAM2Transforms.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Embedding keys: the stride-16 feature map and the two high-resolution maps (stride 4 and 8,
#: already projected by the mask decoder's ``conv_s0``/``conv_s1``) that SAM2's decoder uses.
EMBEDDING_KEYS: tuple[str, str, str] = ("image_embed", "high_res_0", "high_res_1")

#: Hydra overrides that shrink a SAM2 hiera config (written against ``sam2_hiera_t.yaml``; they
#: also fit the other sam2/sam2.1 hiera configs) to a tiny randomly initialised model for tests:
#: 256 px input, a 5-block hiera trunk (16 -> 32 -> 64 -> 128 channels, one global-attention
#: block, the rest windowed as in the real trunk), a 64-channel neck/prompt encoder/mask decoder
#: and a consistent (unused on the image path, but built) 64/32-channel memory attention and
#: memory encoder. Same build code path as the published models, only smaller.
TINY_SAM2_OVERRIDES: list[str] = [
    "++model.image_size=256",
    # Hiera trunk: stage dims 16/32/64/128, heads 1/2/4/8, 1+1+2+1 blocks; block 3 (the second
    # of stage 3; a stage's first, q-pooling block cannot be global) uses global attention.
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    # FPN neck: must list the trunk's channels from the coarsest stage down.
    "++model.image_encoder.neck.d_model=64",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=64",
    # Memory attention (video only): d_model = neck d_model, RoPE grid = 256 / 16.
    "++model.memory_attention.d_model=64",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.d_model=64",
    "++model.memory_attention.layer.dim_feedforward=128",
    "++model.memory_attention.layer.self_attention.embedding_dim=64",
    "++model.memory_attention.layer.self_attention.feat_sizes=[16,16]",
    "++model.memory_attention.layer.cross_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[16,16]",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=32",
    # Memory encoder (video only): pixel features at the neck's 64 channels, 32-channel memory.
    "++model.memory_encoder.in_dim=64",
    "++model.memory_encoder.out_dim=32",
    "++model.memory_encoder.position_encoding.num_pos_feats=32",
    "++model.memory_encoder.mask_downsampler.embed_dim=64",
    "++model.memory_encoder.fuser.layer.dim=64",
    "++model.memory_encoder.fuser.num_layers=1",
]


@contextlib.contextmanager
def sam2_hydra() -> Iterator[None]:
    """Hydra initialised on the ``sam2`` config module for the duration of the block.

    ``import sam2`` initialises hydra's global state once (``initialize_config_module("sam2")``)
    and ``build_sam2`` relies on it through ``compose``. Anything else that clears or re-initialises
    hydra (another library, a test) would break later builds, and leaving sam2's state behind
    could break theirs, so every build runs in a fresh sam2 hydra context and the previous global
    state (whatever it was, or none) is restored afterwards.
    """
    import sam2  # noqa: F401  (its __init__ sets hydra's version base)
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("sam2", version_base="1.2"):
            yield
    finally:
        restore_gh_from_backup(backup)


def build_sam2_model(
    config_file: str,
    checkpoint: str | Path | None,
    device: torch.device,
    overrides: list[str] | None = None,
) -> torch.nn.Module:
    """Build a SAM2 model from a hydra config in the sam2 package, optionally with weights.

    The model is built by ``sam2.build_sam.build_sam2`` with ``ckpt_path=None`` (random
    initialisation, on the CPU) so that the architecture comes from exactly the code path of the
    published models; ``checkpoint`` is then loaded with our ``load_weights`` (strict, wrapper
    containers and prefixes removed, mismatches reported with the file name) rather than sam2's
    loader, which only accepts ``{"model": state_dict}`` with bare keys. ``overrides`` are extra
    hydra overrides (e.g. ``TINY_SAM2_OVERRIDES``). Returns the model on ``device`` in eval mode.
    """
    from sam2.build_sam import build_sam2

    with sam2_hydra():
        model = build_sam2(
            config_file,
            ckpt_path=None,
            device="cpu",
            mode="eval",
            hydra_overrides_extra=list(overrides or []),
        )
    if checkpoint is not None:
        load_weights(model, checkpoint)
    model = model.to(device)
    model.eval()
    return model


class Sam2Segmenter:
    """A SAM2 image model as a ``Segmenter``: batched image encoding, batched prompt decoding.

    ``encode`` and ``decode`` together give the same logits as ``SAM2ImagePredictor.set_image``
    + ``predict(..., multimask_output=False, return_logits=True)`` on the same slice (checked in
    ``tests/test_models_sam2.py``), including SAM2's post-processing choice of falling back to the
    most stable multimask output when the single mask is unstable (``build_sam2``'s default
    ``apply_postprocessing``).
    """

    def __init__(self, model: torch.nn.Module, name: str, device: torch.device, autocast_bf16: bool = True,
                 normalisation: str = "imagenet_unit"):
        if normalisation not in ("imagenet_unit", "unit"):
            raise ValueError(f"{name}: unknown normalisation {normalisation!r} (imagenet_unit or unit)")
        self.model = model
        self.name = name
        self.device = torch.device(device)
        self.autocast_bf16 = autocast_bf16
        self.normalisation = normalisation
        self.input_size_px = int(model.image_size)

    def _preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """(B, S, S) slices in 0-255 -> (B, 3, S, S) float on the device.

        ``imagenet_unit`` (SAM2's own predictor): the arithmetic of ``SAM2Transforms``,
        ``ToTensor`` (divide by 255), ``Resize`` (the identity here: the slices are already at
        the model size), ``Normalize`` (subtract the ImageNet mean, divide by the std, per
        channel). ``unit`` (the MSK study's input): each slice min-max scaled to 0-1, no mean/std,
        as the study's code feeds its preprocessed slices to ``forward_image``. The grey slice is
        repeated into 3 channels either way.
        """
        if self.normalisation == "unit":
            from mskseg_lib.models.sam_vit import to_input_tensor

            return to_input_tensor(batch, "unit", self.device)
        x = torch.as_tensor(np.ascontiguousarray(batch)).to(torch.float32).div(255)
        x = x[:, None].expand(-1, 3, -1, -1).to(self.device)
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=self.device)[None, :, None, None]
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=self.device)[None, :, None, None]
        return (x - mean) / std

    def encode(self, images: np.ndarray, valid_hw: list[tuple[int, int]] | None = None) -> list[Embedding]:
        """Run the image encoder once on a batch of slices; one embedding dict per slice.

        ``images``: uint8 (or float 0-255) slices ``(B, S, S)`` at the model's input size.
        ``valid_hw`` is accepted for the interface and ignored: SAM2 resizes every image to a
        square and normalises the whole square (no padding-aware normalisation as in SAM), so
        the padded border is treated like image content, exactly as SAM2's predictor would.

        Mirrors ``SAM2ImagePredictor.set_image_batch``: ``forward_image``,
        ``_prepare_backbone_features``, ``no_mem_embed`` added to the lowest-resolution features
        (the image-only "no memory" condition), reshaped to per-slice feature maps. Each dict
        holds ``image_embed`` (C, S/16, S/16), ``high_res_0`` (C/8, S/4, S/4) and
        ``high_res_1`` (C/4, S/8, S/8) as independent (cloned) tensors on the model's device.
        """
        with inference_context(self.device, self.autocast_bf16):
            return self.embed(self.prepare(images, valid_hw))

    def parts(self) -> dict[str, torch.nn.Module]:
        """The trainable blocks by role (finetuning freezes or trains them by name)."""
        return {"encoder": self.model.image_encoder, "prompt_encoder": self.model.sam_prompt_encoder,
                "mask_decoder": self.model.sam_mask_decoder}

    def prepare(self, images: np.ndarray, valid_hw: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """uint8 slices (B, S, S) -> the normalised encoder input on the device."""
        return self._preprocess(as_image_batch(images, self.input_size_px, self.name))

    def embed(self, img: torch.Tensor) -> list[Embedding]:
        """Differentiable image encoding of a prepared batch (used by ``encode`` and by training)."""
        model = self.model
        backbone_out = model.forward_image(img)
        _, vision_feats, _, feat_sizes = model._prepare_backbone_features(backbone_out)
        if model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
        n = img.shape[0]
        # HW x B x C -> B x C x H x W, lowest resolution last (as set_image_batch does; the
        # predictor hard-codes the 1024-px sizes, the model reports the actual ones).
        feats = [feat.permute(1, 2, 0).reshape(n, -1, *size) for feat, size in zip(vision_feats, feat_sizes)]
        return [{"image_embed": feats[-1][i].clone(), "high_res_0": feats[0][i].clone(),
                 "high_res_1": feats[1][i].clone()} for i in range(n)]

    def _prompt_points(self, prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes and clicks as SAM2's single point input: (N, K, 2) coords, (N, K) labels.

        As ``SAM2ImagePredictor._predict``: a box becomes its two corners with labels 2 and 3,
        placed before the clicks. The predictor maps pixel coordinates of the original image to
        model-input pixels (x / w * image_size); for slices already at the model's size that is
        the identity, so the coordinates are passed through unchanged.
        """
        coords, labels = [], []
        n = len(prompts)
        if prompts.boxes is not None:
            coords.append(torch.as_tensor(prompts.boxes, dtype=torch.float32).reshape(n, 2, 2))
            labels.append(torch.tensor([[2, 3]], dtype=torch.int32).repeat(n, 1))
        if prompts.points is not None:
            coords.append(torch.as_tensor(prompts.points, dtype=torch.float32))
            labels.append(torch.as_tensor(prompts.point_labels, dtype=torch.int32))
        return torch.cat(coords, dim=1).to(self.device), torch.cat(labels, dim=1).to(self.device)

    def decode(self, embedding: Embedding, prompts: Prompts) -> torch.Tensor:
        """Logits (N, S, S) float32 for all N prompts of one slice, in one decoder call.

        Prompt encoder and mask decoder exactly as ``SAM2ImagePredictor._predict`` with
        ``multimask_output=False`` (the image embedding is repeated over the N prompts, the
        high-resolution features broadcast), then bilinear upsampling of the low-resolution
        logits to the input size (the predictor's ``postprocess_masks`` without hole filling).
        """
        t0 = time.perf_counter()
        with inference_context(self.device, self.autocast_bf16):
            out = self.predict(embedding, prompts)
        record_work("box", model_identity(self), len(out), time.perf_counter() - t0)
        return out

    def predict(self, embedding: Embedding, prompts: Prompts, size_px: int | None = None) -> torch.Tensor:
        """Differentiable decoding of all prompts of one slice (``decode`` without inference mode),
        as (N, s, s) logits with ``s = size_px`` (default: the input size; finetuning asks for its
        mask grid, 256 = the decoder's own low-resolution logits at 1024 px input)."""
        model = self.model
        dtype = next(model.parameters()).dtype
        image_embed = embedding["image_embed"].to(self.device, dtype)[None]
        high_res = [embedding[k].to(self.device, dtype)[None] for k in ("high_res_0", "high_res_1")]
        points = self._prompt_points(prompts)
        sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=None)
        low_res, _iou, _, _ = model.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
            repeat_image=points[0].shape[0] > 1,
            high_res_features=high_res,
        )
        return upsample_logits(low_res, size_px or self.input_size_px)


def load_sam2_segmenter(
    spec: CheckpointSpec,
    checkpoint: str | Path | None,
    device: torch.device,
    autocast_bf16: bool = True,
    overrides: list[str] | None = None,
    normalisation: str | None = None,
) -> Sam2Segmenter:
    """The ``Sam2Segmenter`` for a registry entry of the ``sam2`` family.

    ``checkpoint`` is the weights file (``None``: random weights, for tests); ``overrides`` are
    extra hydra overrides; ``normalisation`` the encoder input convention (default: the
    registry's, SAM2's own ``imagenet_unit``). Without overrides the built model's input size must equal the
    registry's ``input_size_px``, so a config/registry mismatch cannot pass silently.
    """
    if spec.family != "sam2" or not spec.sam2_config:
        raise ValueError(f"{spec.name} is not a SAM2 model (family {spec.family!r}, config {spec.sam2_config!r})")
    model = build_sam2_model(spec.sam2_config, checkpoint, device, overrides)
    if not overrides and int(model.image_size) != spec.input_size_px:
        raise ValueError(
            f"{spec.name}: config {spec.sam2_config} builds a {model.image_size}-px model but the "
            f"registry says {spec.input_size_px} px"
        )
    return Sam2Segmenter(model, spec.name, device, autocast_bf16, normalisation or spec.normalisation)
