"""Frozen-encoder training: every slice the samples use is encoded once, before the first epoch.

With the image encoder frozen (``partial``), its output is a fixed function of the slice, so the
decoder trains on precomputed embeddings. They come from (and go to) the embedding cache the
zero-shot runs share (``runs/<profile>/zero_shot/_embeddings`` under a profile), so a slice
notebook 02 encoded is not encoded again; without a cache folder they are computed in memory.
Under torchrun the ranks encode different subjects, then every rank reads all of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mskseg_lib import distributed as dist_utils
from mskseg_lib.data.preprocess import geometry_of
from mskseg_lib.evaluation.embedding_cache import CacheEntry, EmbeddingCache, cache_key, subject_embeddings
from mskseg_lib.finetuning.samples import BoxSampleDataset
from mskseg_lib.models.interface import Embedding, Segmenter

__all__ = ["precompute_embeddings"]

Store = dict[tuple, Embedding]


def _subject(segmenter: Segmenter, model_key: str, dataset: str, subject_id: str, g: pd.DataFrame,
             cache: EmbeddingCache | None, batch: int) -> dict[int, Embedding]:
    """Embeddings of the slices ``g`` of one subject by store index: cached ones loaded (on CPU),
    the others encoded in batches (and cached)."""
    size = segmenter.input_size_px
    stack = np.load(g["image_path"].iloc[0], mmap_mode="r")
    hw = [geometry_of(r, size).resized_shape for _, r in g.iterrows()]
    entry = (CacheEntry(cache, model_key, dataset, subject_id, cache_key(segmenter, g["image_path"].iloc[0]))
             if cache is not None else None)
    have, _ = subject_embeddings(segmenter, stack, g["store_index"], hw, batch, entry, device=torch.device("cpu"))
    return have


def _keep(store: Store, dataset: str, subject_id: str, g: pd.DataFrame, have: dict[int, Embedding]) -> None:
    """Put the slices the samples use into ``store`` as float16."""
    for k in g["store_index"]:
        if int(k) not in have:
            raise RuntimeError(f"embedding cache for {dataset}/{subject_id} lacks slice {k} after encoding")
        store[(dataset, subject_id, int(k))] = {n: v.to(torch.float16) for n, v in have[int(k)].items()}


def precompute_embeddings(segmenter: Segmenter, model_key: str, datasets: Sequence[BoxSampleDataset],
                          ctx: dist_utils.DistContext, *, cache_dir: Path | None = None,
                          encode_batch_size: int = 1, progress: bool = True) -> Store:
    """Frozen-encoder embeddings of every slice the samples of ``datasets`` use.

    Missing subjects are encoded by the ranks in turn (subject i by rank i mod world size) and
    cached; after a barrier every rank loads all of them (float16 in memory).

    Parameters
    ----------
    segmenter : the initial model (its encoder is not trained).
    model_key : its zoo key: the cache's folder for it.
    datasets : the training and validation samples.
    ctx : this process's place in the process group (world size 1 without torchrun).
    cache_dir : the shared embedding cache; None encodes in memory on every rank, caching nothing.
    encode_batch_size : slices per encoder call.
    progress : show a progress bar (rank 0).

    Returns
    -------
    dict
        ``(dataset, subject_id, store_index) -> {name: float16 tensor}``: the embedding of each
        slice, in the segmenter's own layout (e.g. ``image_embeddings`` ``(C, H, W)``).
    """
    cache = EmbeddingCache(Path(cache_dir)) if cache_dir is not None else None
    frames = pd.concat([d.samples for d in datasets], ignore_index=True)
    groups = list(frames.drop_duplicates(["dataset", "subject_id", "store_index"]).groupby(
        ["dataset", "subject_id"], sort=True))
    world = ctx.world_size if cache is not None else 1  # without a cache every rank encodes everything
    rank = ctx.rank if cache is not None else 0
    mine = [g for i, g in enumerate(groups) if i % world == rank]
    store: Store = {}
    bar = tqdm(total=sum(len(g) for _, g in mine), desc="encode training slices", unit="slice",
               disable=not (progress and ctx.is_main))  # counts slices (rate and ETA per slice), not subjects
    for (dataset, subject_id), g in mine:
        bar.set_postfix_str(f"{dataset} {subject_id}", refresh=False)
        have = _subject(segmenter, model_key, dataset, subject_id, g, cache, int(encode_batch_size))
        _keep(store, dataset, subject_id, g, have)  # this rank's subjects are not read back from disk
        bar.update(len(g))
    bar.close()
    if cache is None:
        return store
    dist_utils.barrier(ctx)
    for i, ((dataset, subject_id), g) in enumerate(groups):
        if i % ctx.world_size != ctx.rank:  # encoded by another rank
            key = cache_key(segmenter, g["image_path"].iloc[0])
            _keep(store, dataset, subject_id, g, cache.load(model_key, dataset, subject_id, key, torch.device("cpu")))
    return store
