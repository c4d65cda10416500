"""Stages that do not read the prepared stacks (AutoLabel, video3d) find the embeddings other
stages stored, by what the encoder sees: the same model and the same pixels."""
from __future__ import annotations

import numpy as np
import torch

from mskseg_lib.evaluation.embedding_cache import CacheEntry, EmbeddingCache, encode_through_store, subject_embeddings


class _Stub:
    zoo_name = "stub"
    name = "stub"
    normalisation = "unit"
    device = torch.device("cpu")

    def __init__(self, sha: str | None = "ab" * 32):
        self.checkpoint = {"sha256": sha} if sha else {}
        self.calls = 0

    def encode(self, images, hw):
        self.calls += len(images)
        return [{"image_embed": torch.full((2, 2), float(np.asarray(im, np.float32).mean()))} for im in images]


def test_a_stored_slice_is_read_by_content_not_encoded_again(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (3, 16, 16), dtype=np.uint8)
    cache = EmbeddingCache(tmp_path / "store")
    model = _Stub()
    entry = CacheEntry(cache, "stub", "D", "S1", key="stack-key")
    stored, n = subject_embeddings(model, stack, [0, 2], [(16, 16)] * 2, 1, entry)  # what zero-shot does
    assert n == 2 and model.calls == 2
    embs, n = encode_through_store(model, stack, [(16, 16)] * 3, 2, cache)  # what video3d/AutoLabel do
    assert n == 1 and model.calls == 3  # only slice 1 was new
    assert torch.equal(embs[0]["image_embed"], stored[0]["image_embed"])
    assert torch.equal(embs[2]["image_embed"], stored[2]["image_embed"])
    again, n = encode_through_store(model, stack, [(16, 16)] * 3, 2, cache)
    assert n == 0 and model.calls == 3
    assert all(torch.equal(a["image_embed"], b["image_embed"]) for a, b in zip(again, embs))
    # another content size (padding) or other weights is another embedding
    _, n = encode_through_store(model, stack[:1], [(16, 8)], 1, cache)
    assert n == 1
    _, n = encode_through_store(_Stub("cd" * 32), stack[:1], [(16, 16)], 1, cache)
    assert n == 1
    # the per-subject files are not counted twice by the store's size per slice
    assert cache.bytes_per_slice("stub") is not None


def test_weights_of_unknown_digest_never_share(tmp_path):
    cache = EmbeddingCache(tmp_path / "store")
    stack = np.zeros((2, 8, 8), np.uint8)
    random_model = _Stub(sha=None)
    for _ in range(2):
        _, n = encode_through_store(random_model, stack, [(8, 8)] * 2, 2, cache)
        assert n == 2
    assert not (tmp_path / "store").exists()


def test_a_finetuned_encoder_stores_under_its_own_weights_and_is_found_by_content(tmp_path):
    from mskseg_lib.evaluation.zero_shot import _store_folder

    base = _Stub()
    assert _store_folder(base, "stub") == "stub"
    decoder_only = _Stub()
    decoder_only.embedding_source = {"model_key": "stub"}  # a frozen-encoder finetune reads the initial model's
    assert _store_folder(decoder_only, "finetuned") == "stub"
    tuned_a, tuned_b = _Stub("12" * 32), _Stub("34" * 32)
    for m in (tuned_a, tuned_b):
        m.checkpoint = {**m.checkpoint, "initial": {"sha256": "ab" * 32}}
    assert _store_folder(tuned_a, "finetuned") == "finetuned-" + "12" * 6
    assert _store_folder(tuned_a, "finetuned") != _store_folder(tuned_b, "finetuned")
    # what 03 scored with a finetuned encoder, AutoLabel finds by content: no second encode
    cache = EmbeddingCache(tmp_path / "store")
    stack = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)
    entry = CacheEntry(cache, _store_folder(tuned_a, "finetuned"), "D", "S1", key="stack-key")
    subject_embeddings(tuned_a, stack, [0, 1], [(8, 8)] * 2, 1, entry)
    _, n = encode_through_store(tuned_a, stack, [(8, 8)] * 2, 2, cache)
    assert n == 0 and tuned_a.calls == 2
    _, n = encode_through_store(tuned_b, stack, [(8, 8)] * 2, 2, cache)  # other weights: their own embeddings
    assert n == 2
