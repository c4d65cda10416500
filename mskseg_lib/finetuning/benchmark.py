"""What a finetuning step costs: frozen encoder on stored embeddings vs re-encoding vs the full model.

``bench_finetune`` times, on real training samples of one dataset, (1) the image encoder per
slice, (2) a frozen-encoder training step reading its embeddings from the per-slice store on
disk (decoder forward + backward + AdamW), (3) the same step re-encoding every slice (what a run
without the store does every epoch), and (4) a full training step (encoder and decoder), each
with the settings' batch size, after one warm-up step; the ratio (3)/(2) is what the store saves
per frozen-encoder epoch. ``store_cost`` gives the store's disk and memory per 1,000 slices for
SAM ViT-B and SAM2 hiera-b+ (one slice encoded by each architecture; random weights where the
checkpoint is absent, which have the same shapes). The numbers size the profiles' grids
(``mskseg bench finetune``); they are measured, never asserted by a test.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation.embedding_cache import EmbeddingCache, LazyEmbeddings
from mskseg_lib.finetuning.engine import SegLoss, _forward
from mskseg_lib.finetuning.network import BoxPromptNet
from mskseg_lib.finetuning.samples import BoxSampleDataset, build_samples, choose_subjects, embedding_key
from mskseg_lib.finetuning.settings import TrainSettings
from mskseg_lib.models.interface import set_cpu_threads
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.models.zoo import load_model
from mskseg_lib.provenance import collect_versions


def _time_steps(net: BoxPromptNet, ds: BoxSampleDataset, store: Mapping | None, batch: int, steps: int,
                device: torch.device) -> float:
    """Mean seconds per optimizer step of ``batch`` samples (one warm-up step not counted)."""
    opt = torch.optim.AdamW(net.trainable_parameters(), lr=1e-6)
    loss_fn = SegLoss()
    net.train()
    times = []
    for s in range(steps + 1):
        idx = [(s * batch + j) % len(ds) for j in range(batch)]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits, targets = _forward(net, ds, idx, store, device, amp=False)
        loss_fn(logits, targets).backward()
        opt.step()
        if s:
            times.append(time.perf_counter() - t0)
    return float(np.mean(times))


def bench_finetune(prepared_dir: Path, model_key: str = "lite_medsam", dataset: str | None = None, steps: int = 4,
                   *, settings: TrainSettings = TrainSettings(), models: ModelSettings = ModelSettings()
                   ) -> dict[str, Any]:
    """Seconds per encoded slice, per frozen-encoder step and per full step.

    Parameters
    ----------
    prepared_dir : the prepared data.
    model_key : the zoo model to time.
    dataset : whose training samples are used (default: the first prepared dataset).
    steps : timed optimizer steps per strategy (after one warm-up step).
    settings : ``batch_size``, ``mask_grid_px`` and ``seed`` (which training subjects) are used.
    models : where the weights are, device and CPU threads.

    Returns
    -------
    dict
        model, dataset, batch_size, steps, cpu_threads, encode_s_per_slice, partial_s_per_step,
        full_s_per_step, full_vs_partial (ratio), device, versions.
    """
    threads = set_cpu_threads(models.cpu_threads)
    subjects, slices = load_tables(prepared_dir)
    dataset = dataset or sorted(subjects["dataset"].unique())[0]
    batch = int(settings.batch_size)
    n = batch * (steps + 1)
    chosen = choose_subjects(subjects, [dataset], "train", "all", int(settings.seed))
    out: dict[str, Any] = {"model": model_key, "dataset": dataset, "batch_size": batch, "steps": steps,
                           "cpu_threads": threads}
    seg = load_model(model_key, models)
    grid = int(settings.mask_grid_px)
    samples = build_samples(chosen, slices, 0, seg.input_size_px, grid).head(n)
    ds = BoxSampleDataset(samples, seg.input_size_px, grid)
    t0 = time.perf_counter()
    embeddings = {}
    for i in range(len(ds)):
        item = ds[i]
        emb = seg.encode(item["image"].numpy()[None], [item["valid_hw"]])[0]
        embeddings[embedding_key(ds.samples.iloc[i])] = emb
    out["encode_s_per_slice"] = round((time.perf_counter() - t0) / len(ds), 4)
    with tempfile.TemporaryDirectory(dir=prepared_dir) as folder:  # the store on the same disk as the data
        cache = EmbeddingCache(Path(folder))
        for (d, sid, k), emb in embeddings.items():
            cache.save(model_key, d, sid, "bench", {k: emb})
        store = LazyEmbeddings(cache, model_key, {key: "bench" for key in embeddings})
        out["partial_s_per_step"] = round(_time_steps(BoxPromptNet(seg, "partial", grid), ds, store, batch, steps,
                                                      seg.device), 4)
    out["partial_reencode_s_per_step"] = round(_time_steps(BoxPromptNet(seg, "partial", grid), ds, None, batch, steps,
                                                           seg.device), 4)
    out["frozen_epoch_store_vs_reencode"] = round(out["partial_reencode_s_per_step"] / out["partial_s_per_step"], 2)
    seg = load_model(model_key, models)  # fresh weights for the full model
    out["full_s_per_step"] = round(_time_steps(BoxPromptNet(seg, "full", grid), ds, None, batch, steps, seg.device), 4)
    out["full_vs_partial"] = round(out["full_s_per_step"] / out["partial_s_per_step"], 2)
    out["device"] = str(seg.device)
    out["versions"] = collect_versions()
    return out


def store_cost(model_key: str, models: ModelSettings = ModelSettings(), batch_size: int = 2) -> dict[str, Any]:
    """Disk and memory of the embedding store per 1,000 slices for one zoo model.

    One slice is encoded (random weights of the same architecture where the checkpoint is
    absent) and stored; the file's size is the disk cost. Held in memory (float16, as a run
    without the store keeps them) 1,000 slices take about the same; read lazily from the store,
    training holds only its batch.

    Returns
    -------
    dict
        ``model, weights`` ("checkpoint" or "random"), ``tensors`` (name -> shape),
        ``disk_mib_per_1000_slices``, ``ram_mib_per_1000_slices_in_memory``,
        ``ram_mib_lazy_per_batch`` and ``encode_s`` (this one slice, this device).
    """
    from mskseg_lib.models.checkpoints import CheckpointMissing
    from mskseg_lib.models.interface import pick_device
    from mskseg_lib.models.registry import get_spec

    spec = get_spec(model_key)
    try:
        seg, weights = load_model(model_key, models), "checkpoint"
    except CheckpointMissing:
        device = pick_device(models.device)
        if spec.family == "sam2":
            from mskseg_lib.models.sam2_hiera import load_sam2_segmenter

            seg = load_sam2_segmenter(spec, None, device, models.autocast_bf16)
        else:
            from mskseg_lib.models.sam_vit import VIT_B, load_sam_segmenter

            seg = load_sam_segmenter(spec.display_name, None, spec.normalisation, device, models.autocast_bf16, VIT_B)
        weights = "random"
    size = seg.input_size_px
    image = np.zeros((1, size, size), np.uint8)
    image[0, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 200
    t0 = time.perf_counter()
    with torch.inference_mode():
        emb = seg.encode(image, [(size, size)])[0]
    seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(Path(folder))
        cache.save(model_key, "bench", "s", "bench", {0: emb})
        disk = cache.path(model_key, "bench", "s", 0).stat().st_size
    ram = sum(v.numel() * 2 for v in emb.values())  # float16
    return {"model": model_key, "weights": weights, "tensors": {k: list(v.shape) for k, v in emb.items()},
            "disk_mib_per_1000_slices": round(disk * 1000 / 2**20, 1),
            "ram_mib_per_1000_slices_in_memory": round(ram * 1000 / 2**20, 1),
            "ram_mib_lazy_per_batch": round(ram * batch_size / 2**20, 2), "encode_s": round(seconds, 2)}
