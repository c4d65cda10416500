"""Image embeddings on disk, one file per (model, subject), reused across prompt conditions.

The encoder is the expensive part (about 1 s per slice for LiteMedSAM on 2 CPU cores, 8-10 s
for SAM ViT-B); decoding a box costs tens of milliseconds. Keeping the embeddings lets later
prompt conditions (detector boxes in notebook 06, new jitters) decode without re-encoding.
Embeddings are stored as float16 (2 MiB per 256-channel 64x64 slice); when the cache is on,
freshly computed embeddings are rounded the same way before decoding, so a first run and a
cached rerun give identical masks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from mskseg_lib.atomic import atomic_path
from mskseg_lib.models.encoding import encode_in_batches
from mskseg_lib.models.interface import Embedding, Segmenter


def round_trip(embedding: Embedding) -> Embedding:
    """The embedding as it will be after a save and load (float16 precision, float32 dtype)."""
    return {k: v.to(torch.float16).to(torch.float32) for k, v in embedding.items()}


class EmbeddingCache:
    """``root/<model>/<dataset>/<subject>.pt`` holding {store_index: {name: float16 tensor}}.

    Each file also stores a ``key`` (the model's checkpoint digest and the slice stack's size
    and modification time): a re-prepared subject or different weights invalidate it.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, model_key: str, dataset: str, subject_id: str) -> Path:
        return self.root / model_key / dataset / f"{subject_id}.pt"

    def _read(self, p: Path, key: str) -> dict:
        if not p.exists():
            return {}
        stored = torch.load(p, map_location="cpu", weights_only=True)
        return stored["slices"] if stored.get("key") == key else {}

    def load(self, model_key: str, dataset: str, subject_id: str, key: str, device: torch.device) -> dict[int, Embedding]:
        """Cached embeddings of a subject (empty when absent or made from other inputs)."""
        stored = self._read(self.path(model_key, dataset, subject_id), key)
        return {int(i): {k: v.to(device=device, dtype=torch.float32) for k, v in e.items()} for i, e in stored.items()}

    def save(self, model_key: str, dataset: str, subject_id: str, key: str, embeddings: dict[int, Embedding]) -> Path:
        """Merge ``embeddings`` into the subject's file (atomic rewrite)."""
        p = self.path(model_key, dataset, subject_id)
        merged = self._read(p, key)
        for i, e in embeddings.items():
            merged[int(i)] = {k: v.detach().to("cpu", torch.float16) for k, v in e.items()}
        with atomic_path(p) as tmp:
            torch.save({"key": key, "slices": merged}, tmp)
        return p


def cache_key(model: object, stack_path: str | Path | None) -> str:
    """What the embeddings depend on: the weights' digest, the encoder input convention
    (``normalisation``) and the slice stack file.

    A model whose image encoder is another model's, unchanged (a decoder-only finetune), says so
    with ``embedding_source = {"model_key": ..., "sha256": ...}`` and shares that model's cache.
    """
    source = getattr(model, "embedding_source", None) or getattr(model, "checkpoint", None) or {}
    digest = source.get("sha256", getattr(model, "name", "?"))
    norm = getattr(model, "normalisation", None)
    if norm:
        digest = f"{digest}|{norm}"
    if stack_path is None or not Path(stack_path).exists():
        return f"{digest}|in-memory"
    st = Path(stack_path).stat()
    return f"{digest}|{Path(stack_path).name}|{st.st_size}|{st.st_mtime_ns}"


@dataclass(frozen=True)
class CacheEntry:
    """Where one subject's embeddings of one model live: ``cache.path(model_key, dataset, subject_id)``,
    valid while their inputs match ``key`` (:func:`cache_key`)."""

    cache: EmbeddingCache
    model_key: str
    dataset: str
    subject_id: str
    key: str


def subject_embeddings(model: Segmenter, stack: np.ndarray, store_indices: Sequence[int],
                       resized_hw: Sequence[tuple[int, int]], batch_size: int, entry: CacheEntry | None = None,
                       device: torch.device | None = None,
                       on_batch: Callable[[int], None] | None = None) -> tuple[dict[int, Embedding], int]:
    """Embeddings of some slices of one subject: from the cache where it has them, the others
    encoded in batches (and, with a cache, rounded as stored and saved).

    Parameters
    ----------
    model : Segmenter
    stack : ndarray, (N, S, S[, 3]) uint8
        The subject's model-size slice stack (memory-mapped is fine: only slices to encode are read).
    store_indices : sequence of int
        Positions in ``stack`` of the slices wanted.
    resized_hw : sequence of (int, int)
        Per wanted slice, the (rows, cols) pixels its content fills in the model input.
    batch_size : int
        Slices per encoder call.
    entry : CacheEntry, optional
        The subject's cache file; None: no cache, every slice encoded.
    device : torch.device, optional
        Where cached embeddings are loaded (default ``model.device``).
    on_batch : callable, optional
        Called after each encoder call with the number of slices it encoded (cached slices
        are not reported).

    Returns
    -------
    (dict, int)
        {store index: embedding} for every wanted slice, and how many slices were encoded.
    """
    wanted = [int(i) for i in store_indices]
    have = (entry.cache.load(entry.model_key, entry.dataset, entry.subject_id, entry.key, device or model.device)
            if entry is not None else {})
    todo = [j for j, i in enumerate(wanted) if i not in have]
    if todo:
        fresh = encode_in_batches(model, [stack[wanted[j]] for j in todo], [resized_hw[j] for j in todo], batch_size,
                                  on_batch)
        if entry is not None:
            fresh = [round_trip(e) for e in fresh]
            entry.cache.save(entry.model_key, entry.dataset, entry.subject_id, entry.key,
                             {wanted[j]: e for j, e in zip(todo, fresh)})
        have = {**have, **{wanted[j]: e for j, e in zip(todo, fresh)}}
    return have, len(todo)
