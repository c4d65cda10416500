"""Encoding slices in batches: the one loop every stage uses to call a segmenter's image encoder.

The image encoder is the expensive part of a promptable segmenter (about 1 s per slice for
LiteMedSAM on 2 CPU cores, 8-10 s for SAM ViT-B); it is called on ``batch_size`` slices at a
time, each with the size of its unpadded content so the adapter can zero the padding.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from mskseg_lib.ledger import record_encodes
from mskseg_lib.models.interface import Embedding, Segmenter


def encode_in_batches(model: Segmenter, images: np.ndarray, resized_hw: Sequence[tuple[int, int]],
                      batch_size: int, on_batch: Callable[[int], None] | None = None) -> list[Embedding]:
    """One embedding per slice, ``batch_size`` slices per encoder call, in the slices' order.

    Parameters
    ----------
    model : Segmenter
        Any adapter of the zoo (or a stand-in with ``encode``).
    images : ndarray, (N, S, S) or (N, S, S, 3), uint8
        Model-size slices (S = ``model.input_size_px``); a memory-mapped stack works.
    resized_hw : sequence of (int, int)
        Per slice, the (rows, cols) in pixels its content fills inside the S x S input
        (``SliceGeometry.resized_shape``).
    batch_size : int
        Slices per ``encode`` call (>= 1).
    on_batch : callable, optional
        Called after each ``encode`` call with the number of slices it encoded (progress).

    Returns
    -------
    list of Embedding
        N embeddings, one per slice.
    """
    if len(images) != len(resized_hw):
        raise ValueError(f"{len(images)} slices but {len(resized_hw)} sizes")
    step = max(1, int(batch_size))
    out: list[Embedding] = []
    for i in range(0, len(images), step):
        chunk = np.asarray(images[i:i + step])
        t0 = time.perf_counter()
        batch = model.encode(chunk, list(resized_hw[i:i + step]))
        record_encodes(model, chunk, time.perf_counter() - t0)  # the run's ledger, when one is set
        out.extend(batch)
        if on_batch is not None:
            on_batch(len(batch))
    return out
