"""Frozen-encoder training: every slice the samples use is encoded once, before the first epoch.

With the image encoder frozen (``partial``), its output is a fixed function of the slice, so the
decoder trains on precomputed embeddings. They come from (and go to) the per-slice embedding
store the zero-shot runs share (``runs/<profile>/zero_shot/_embeddings`` under a profile), so a
slice notebook 02 encoded is not encoded again, and training reads them lazily from disk
(memory-mapped), holding only a batch in memory however many slices it uses. Without a store
folder they are computed and held in memory. Under torchrun the ranks encode different subjects,
then every rank reads all of them from the store.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mskseg_lib import distributed as dist_utils
from mskseg_lib.data.preprocess import geometry_of
from mskseg_lib.evaluation.embedding_cache import CacheEntry, EmbeddingCache, LazyEmbeddings, cache_key, subject_embeddings
from mskseg_lib.finetuning.samples import BoxSampleDataset
from mskseg_lib.models.interface import Embedding, Segmenter

__all__ = ["precompute_embeddings"]

Store = Mapping[tuple, Embedding]


def _encode_missing(segmenter: Segmenter, model_key: str, dataset: str, subject_id: str, g: pd.DataFrame,
                    cache: EmbeddingCache | None, key: str, batch: int) -> dict[int, Embedding]:
    """The slices ``g`` of one subject: with a store, encode (and store) only those it lacks and
    return nothing; without one, encode all and return them."""
    size = segmenter.input_size_px
    stack = np.load(g["image_path"].iloc[0], mmap_mode="r")
    if cache is not None:
        have = cache.indices(model_key, dataset, subject_id, key)
        g = g[~g["store_index"].astype(int).isin(have)]
        if g.empty:
            return {}
    hw = [geometry_of(r, size).resized_shape for _, r in g.iterrows()]
    entry = CacheEntry(cache, model_key, dataset, subject_id, key) if cache is not None else None
    done, _ = subject_embeddings(segmenter, stack, g["store_index"], hw, batch, entry, device=torch.device("cpu"))
    return {} if cache is not None else done


def precompute_embeddings(segmenter: Segmenter, model_key: str, datasets: Sequence[BoxSampleDataset],
                          ctx: dist_utils.DistContext, *, cache_dir: Path | None = None,
                          encode_batch_size: int = 1, progress: bool = True) -> Store:
    """Frozen-encoder embeddings of every slice the samples of ``datasets`` use.

    Slices the store lacks are encoded by the ranks in turn (subject i by rank i mod world size)
    and stored; after a barrier every rank reads them all lazily.

    Parameters
    ----------
    segmenter : the initial model (its encoder is not trained).
    model_key : its zoo key: the store's folder for it.
    datasets : the training and validation samples.
    ctx : this process's place in the process group (world size 1 without torchrun).
    cache_dir : the shared embedding store; None encodes in memory on every rank, storing nothing.
    encode_batch_size : slices per encoder call.
    progress : show a progress bar (rank 0), counting slices.

    Returns
    -------
    Mapping
        ``(dataset, subject_id, store_index) -> {name: tensor}``: the embedding of each slice, in
        the segmenter's own layout (e.g. ``image_embeddings`` ``(C, H, W)``); read from the store
        on access (:class:`~mskseg_lib.evaluation.embedding_cache.LazyEmbeddings`), or float16 in
        memory without a store.
    """
    cache = EmbeddingCache(Path(cache_dir)) if cache_dir is not None else None
    frames = pd.concat([d.samples for d in datasets], ignore_index=True)
    groups = list(frames.drop_duplicates(["dataset", "subject_id", "store_index"]).groupby(
        ["dataset", "subject_id"], sort=True))
    world = ctx.world_size if cache is not None else 1  # without a store every rank encodes everything
    rank = ctx.rank if cache is not None else 0
    mine = [g for i, g in enumerate(groups) if i % world == rank]
    keys = {(dataset, subject_id): cache_key(segmenter, g["image_path"].iloc[0]) for (dataset, subject_id), g in groups}
    memory: dict[tuple, Embedding] = {}
    bar = tqdm(total=sum(len(g) for _, g in mine), desc="encode training slices", unit="slice",
               disable=not (progress and ctx.is_main))  # counts slices (rate and ETA per slice), not subjects
    for (dataset, subject_id), g in mine:
        bar.set_postfix_str(f"{dataset} {subject_id}", refresh=False)
        done = _encode_missing(segmenter, model_key, dataset, subject_id, g, cache, keys[(dataset, subject_id)],
                               int(encode_batch_size))
        for k, emb in done.items():
            memory[(dataset, subject_id, int(k))] = {n: v.to(torch.float16) for n, v in emb.items()}
        bar.update(len(g))
    bar.close()
    if cache is None:
        return memory
    dist_utils.barrier(ctx)
    lazy = {(dataset, subject_id, int(k)): keys[(dataset, subject_id)]
            for (dataset, subject_id), g in groups for k in g["store_index"]}
    stored = {(d, sid): cache.indices(model_key, d, sid, keys[(d, sid)]) for (d, sid), _ in groups}
    missing = [k for k in lazy if k[2] not in stored[(k[0], k[1])]][:3]
    if missing:
        raise RuntimeError(f"embedding store {cache.root} lacks {missing} after encoding")
    return LazyEmbeddings(cache, model_key, lazy)
