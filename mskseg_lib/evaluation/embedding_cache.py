"""Image embeddings on disk: one memory-mapped file per (model, slice), shared by every notebook.

The encoder is the expensive part (about 1 s per slice for LiteMedSAM on 2 CPU cores, 8-10 s
for SAM ViT-B); decoding a box costs tens of milliseconds. Every stage that encodes a prepared
slice with a model (zero-shot, the scoring of finetuned frozen-encoder models, frozen-encoder
training, AutoLabel, the mixed-effects physics run) goes through this store, so a slice is
encoded once per model for the whole run.

Layout: ``<root>/<model>/<dataset>/<subject>/<store index>.safetensors``, float16 tensors with
the embedding's names, and in the file's metadata the ``key`` of what the embedding depends on
(:func:`cache_key`: the weights' digest, the input convention, the slice stack file). Files are
read lazily and memory-mapped (safetensors), so a training run over thousands of 1024-px slices
holds only its batch in memory; each slice is written to a temporary name and renamed, so a
killed run leaves either a whole file or none, and a file that cannot be read (or has another
key) counts as absent and is encoded again. When the store is on, freshly computed embeddings
are rounded to float16 as stored before decoding, so a first run and a rerun give identical masks.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mskseg_lib.atomic import atomic_path
from mskseg_lib.ledger import model_identity
from mskseg_lib.models.encoding import encode_in_batches
from mskseg_lib.models.interface import Embedding, Segmenter

SUFFIX = ".safetensors"
CONTENT_DIR = "_content"  # the same files by content digest: found by any stage that feeds the same input


def content_digest(model: object, image: np.ndarray, resized_hw: tuple[int, int]) -> str:
    """Digest of what an encoder call depends on: the model's identity (weights digest, input
    convention), the input slice's pixels and the size its content fills."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{model_identity(model)}|{int(resized_hw[0])}x{int(resized_hw[1])}|".encode())
    arr = np.ascontiguousarray(np.asarray(image))
    h.update(f"{arr.shape}{arr.dtype}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def round_trip(embedding: Embedding) -> Embedding:
    """The embedding as it will be after a save and load (float16 precision, float32 dtype)."""
    return {k: v.to(torch.float16).to(torch.float32) for k, v in embedding.items()}


class EmbeddingCache:
    """The per-slice embedding store under ``root`` (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def folder(self, model_key: str, dataset: str, subject_id: str) -> Path:
        return self.root / model_key / dataset / str(subject_id)

    def path(self, model_key: str, dataset: str, subject_id: str, index: int) -> Path:
        return self.folder(model_key, dataset, subject_id) / f"{int(index)}{SUFFIX}"

    @staticmethod
    def _read(p: Path, key: str | None, device: torch.device | str = "cpu") -> Embedding | None:
        """The embedding in ``p`` as float32 on ``device``; None when absent, unreadable or of another
        key (``key=None``: any key, for content-addressed files whose name is their key)."""
        if not p.exists():
            return None
        try:
            with safe_open(str(p), framework="pt", device="cpu") as fh:
                if key is not None and (fh.metadata() or {}).get("key") != key:
                    return None
                return {name: fh.get_tensor(name).to(device=device, dtype=torch.float32) for name in fh.keys()}
        except Exception:  # a truncated or foreign file: encode again
            return None

    @staticmethod
    def _has(p: Path, key: str) -> bool:
        if not p.exists():
            return False
        try:
            with safe_open(str(p), framework="pt", device="cpu") as fh:
                return (fh.metadata() or {}).get("key") == key
        except Exception:
            return False

    def indices(self, model_key: str, dataset: str, subject_id: str, key: str) -> set[int]:
        """Store indices of a subject whose embeddings are stored under ``key`` (headers only)."""
        folder = self.folder(model_key, dataset, subject_id)
        if not folder.is_dir():
            return set()
        return {int(p.stem) for p in folder.glob(f"*{SUFFIX}") if p.stem.isdigit() and self._has(p, key)}

    def load(self, model_key: str, dataset: str, subject_id: str, key: str, device: torch.device,
             indices: Sequence[int] | None = None) -> dict[int, Embedding]:
        """Stored embeddings of a subject ({store index: embedding}); only ``indices`` when given."""
        wanted = (sorted(self.indices(model_key, dataset, subject_id, key)) if indices is None
                  else [int(i) for i in indices])
        out = {}
        for i in wanted:
            emb = self._read(self.path(model_key, dataset, subject_id, i), key, device)
            if emb is not None:
                out[i] = emb
        return out

    def save(self, model_key: str, dataset: str, subject_id: str, key: str, embeddings: dict[int, Embedding]) -> Path:
        """Write each slice's embedding to its own file (float16; temporary name, then rename)."""
        folder = self.folder(model_key, dataset, subject_id)
        folder.mkdir(parents=True, exist_ok=True)
        for i, e in embeddings.items():
            tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in e.items()}
            with atomic_path(self.path(model_key, dataset, subject_id, i)) as tmp:
                save_file(tensors, str(tmp), metadata={"key": key})
        return folder

    def content_path(self, digest: str) -> Path:
        """Where the embedding of an encoder input with this content digest lives (``content_digest``:
        the model's identity is part of it, so every model shares one folder)."""
        return self.root / CONTENT_DIR / digest[:2] / f"{digest}{SUFFIX}"

    def link_content(self, source: Path, digest: str) -> None:
        """Make ``source`` findable by content too: a hard link (no extra disk), else a copy."""
        target = self.content_path(digest)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)

    def bytes_per_slice(self, model_key: str) -> float | None:
        """Mean file size of the model's stored slices (None when it has none)."""
        sizes = [p.stat().st_size for p in (self.root / model_key).rglob(f"*{SUFFIX}") if CONTENT_DIR not in p.parts]
        return float(np.mean(sizes)) if sizes else None


class LazyEmbeddings(Mapping):
    """``(dataset, subject_id, store_index) -> embedding`` read from the store on each access
    (float32 on CPU), for training over more slices than memory holds."""

    def __init__(self, cache: EmbeddingCache, model_key: str, keys: Mapping[tuple, str]):
        self.cache, self.model_key, self._keys = cache, model_key, dict(keys)

    def __getitem__(self, item: tuple) -> Embedding:
        dataset, subject_id, index = item
        emb = self.cache._read(self.cache.path(self.model_key, dataset, subject_id, index), self._keys[item])
        if emb is None:
            raise KeyError(f"{self.model_key} {dataset}/{subject_id} slice {index}: not in the embedding store "
                           f"{self.cache.root} (deleted during the run?)")
        return emb

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


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
    """Where one subject's embeddings of one model live: ``cache.folder(model_key, dataset,
    subject_id)``, valid while their inputs match ``key`` (:func:`cache_key`)."""

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
    have = (entry.cache.load(entry.model_key, entry.dataset, entry.subject_id, entry.key, device or model.device,
                             indices=wanted) if entry is not None else {})
    todo = [j for j, i in enumerate(wanted) if i not in have]
    if todo:
        fresh = encode_in_batches(model, [stack[wanted[j]] for j in todo], [resized_hw[j] for j in todo], batch_size,
                                  on_batch)
        if entry is not None:
            fresh = [round_trip(e) for e in fresh]
            entry.cache.save(entry.model_key, entry.dataset, entry.subject_id, entry.key,
                             {wanted[j]: e for j, e in zip(todo, fresh)})
            for j in todo:  # findable by content: AutoLabel and video3d feed the same slices
                entry.cache.link_content(entry.cache.path(entry.model_key, entry.dataset, entry.subject_id, wanted[j]),
                                         content_digest(model, stack[wanted[j]], resized_hw[j]))
        have = {**have, **{wanted[j]: e for j, e in zip(todo, fresh)}}
    return have, len(todo)


def encode_through_store(model: Segmenter, images: np.ndarray, resized_hw: Sequence[tuple[int, int]],
                         batch_size: int, cache: EmbeddingCache | None,
                         device: torch.device | None = None) -> tuple[list[Embedding], int]:
    """Embeddings of model-size slices, looked up in the store by content first (``content_digest``),
    the rest encoded in batches, rounded as stored and saved by content; no store: all encoded.

    For stages that do not work on the prepared slice stacks (AutoLabel's volumes, video3d's
    frames): a slice that any stage already encoded with the same model is read, not encoded.

    Returns
    -------
    (list of Embedding, int)
        One embedding per input slice, in order, and how many were encoded.
    """
    if cache is None or model_identity(model).split("@", 1)[1].startswith("unverified"):
        # no store, or weights of unknown digest (random test models): nothing to share safely
        return encode_in_batches(model, images, resized_hw, batch_size), len(images)
    digests = [content_digest(model, images[i], resized_hw[i]) for i in range(len(images))]
    out: list[Embedding | None] = [cache._read(cache.content_path(d), None, device or model.device)
                                   for d in digests]
    todo = [i for i, e in enumerate(out) if e is None]
    if todo:
        fresh = encode_in_batches(model, np.stack([images[i] for i in todo]), [resized_hw[i] for i in todo],
                                  batch_size)
        for i, e in zip(todo, fresh):
            e = round_trip(e)
            out[i] = e
            path = cache.content_path(digests[i])
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                save_file({k: v.detach().to("cpu", torch.float16).contiguous() for k, v in e.items()}, str(tmp),
                          metadata={"key": f"content:{digests[i]}"})
    return [e for e in out if e is not None], len(todo)
