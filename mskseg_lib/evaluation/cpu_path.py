"""Which way of running an encoder is fastest on this CPU while giving the same masks.

``bench_cpu_path`` runs one model on real slices with ground-truth boxes in several execution
variants (``VARIANTS``: float32; bf16 autocast; channels-last memory format; ``torch.compile``;
and their combinations) and reports, per variant, the encoder's seconds per slice (median of
the timed repeats, batch of one, after a warm-up call whose time, the compile time for the
compiled variants, is reported apart) and how well its masks agree with float32's: foreground
Dice between the float32 mask and the variant's mask, pooled over every box (background
agreement is meaningless: most pixels are background). A variant is *acceptable* when that Dice
is at least ``min_dice`` (0.995). The numbers are measured, never asserted by a test.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from mskseg_lib.data.boxes import slice_boxes
from mskseg_lib.data.preprocess import clip_to_uint8, display_slice, resize_slice
from mskseg_lib.models.interface import Prompts

VARIANTS = ("fp32", "bf16", "channels_last", "channels_last_bf16", "compile", "compile_bf16", "compile_channels_last")


@dataclass(frozen=True)
class BoxedSlice:
    """One model-size slice and the boxes of its structures (model pixels, xyxy)."""

    image: np.ndarray  # (S, S) uint8
    boxes: np.ndarray  # (K, 4) float32


def real_slices(volumes: Sequence[tuple[Path, Path]], size_px: int, per_volume: int = 4,
                slice_axis: int = 2) -> list[BoxedSlice]:
    """``per_volume`` slices spread through the labelled slices of each (image, labels) NIfTI
    pair, clipped and resized as ``prepare`` does (1st-99th percentile, stretch, cubic spline),
    with one box per label present (resized with the slice)."""
    out = []
    for image_path, label_path in volumes:
        image = clip_to_uint8(np.asarray(nib.load(str(image_path)).dataobj, dtype=np.float32))
        labels = np.asarray(nib.load(str(label_path)).dataobj).astype(np.int16)
        labelled = [k for k in range(labels.shape[slice_axis]) if display_slice(labels, slice_axis, k).any()]
        if not labelled:
            continue
        picks = sorted({labelled[int(round(i))] for i in np.linspace(0, len(labelled) - 1, per_volume)})
        for k in picks:
            mask = resize_slice(display_slice(labels, slice_axis, k), size_px, is_mask=True)
            boxes, _, _ = slice_boxes(mask)
            if boxes:
                out.append(BoxedSlice(resize_slice(display_slice(image, slice_axis, k), size_px),
                                      np.asarray(list(boxes.values()), np.float32)))
    return out


@contextlib.contextmanager
def _autocast(on: bool) -> Iterator[None]:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
        yield


def _masks(segmenter: Any, embed: Callable[[torch.Tensor], list], slices: Sequence[BoxedSlice], bf16: bool,
           channels_last: bool, repeats: int) -> tuple[list[np.ndarray], float, float]:
    """Masks (K, S, S) bool per slice, median encoder seconds per slice, first-call seconds."""
    masks, times, first = [], [], None
    with torch.inference_mode():
        for s in slices:
            x = segmenter.prepare(s.image[None])
            x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            for _ in range(repeats + (1 if first is None else 0)):
                t0 = time.perf_counter()
                with _autocast(bf16):
                    emb = embed(x)[0]
                dt = time.perf_counter() - t0
                if first is None:
                    first = dt
                else:
                    times.append(dt)
            emb = {k: v.float() for k, v in emb.items()}
            logits = segmenter.predict(emb, Prompts(boxes=s.boxes))
            masks.append(np.asarray(logits.float().cpu() > 0))
    return masks, float(statistics.median(times)), float(first)


def foreground_dice(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Dice of the foreground pooled over every mask (1.0 when both are empty)."""
    inter = sum(int(np.logical_and(x, y).sum()) for x, y in zip(a, b))
    total = sum(int(x.sum()) + int(y.sum()) for x, y in zip(a, b))
    return 1.0 if total == 0 else 2.0 * inter / total


def bench_cpu_path(load: Callable[[], Any], slices: Sequence[BoxedSlice], variants: Sequence[str] = VARIANTS,
                   repeats: int = 2, min_dice: float = 0.995) -> list[dict[str, Any]]:
    """Per variant: ``variant, s_per_slice, first_call_s, dice_vs_fp32, acceptable, speedup``.

    Parameters
    ----------
    load : callable returning a fresh SAM-layout segmenter (``prepare``, ``embed``, ``predict``,
        ``model.image_encoder``) on the CPU, so no variant sees another's memory format.
    slices : the slices and boxes (``real_slices``).
    variants : names from ``VARIANTS``; ``fp32`` is always run first (the reference).
    repeats : timed encoder calls per slice after the first.
    """
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown CPU variants {unknown}; known: {list(VARIANTS)}")
    order = ["fp32"] + [v for v in variants if v != "fp32"]
    rows, reference = [], None
    for name in order:
        seg = load()
        encoder = seg.model.image_encoder
        seg.channels_last = "channels_last" in name  # the segmenter's own CPU default is channels-last
        encoder.to(memory_format=torch.channels_last if seg.channels_last else torch.contiguous_format)
        embed = seg.embed
        if name.startswith("compile"):
            compiled = torch.compile(encoder)
            seg.model.image_encoder = compiled
        masks, per_slice, first = _masks(seg, embed, slices, name.endswith("bf16"),
                                      "channels_last" in name, repeats)
        if reference is None:
            reference = (masks, per_slice)
        dice = foreground_dice(reference[0], masks)
        rows.append({"variant": name, "s_per_slice": round(per_slice, 4), "first_call_s": round(first, 2),
                     "dice_vs_fp32": round(dice, 5), "acceptable": bool(dice >= min_dice),
                     "speedup": round(reference[1] / per_slice, 3)})
    return rows


def fastest_acceptable(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The acceptable variant with the lowest seconds per slice (``fp32`` always qualifies)."""
    ok = [r for r in rows if r["acceptable"]]
    return min(ok, key=lambda r: r["s_per_slice"])
