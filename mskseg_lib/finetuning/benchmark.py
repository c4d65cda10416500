"""What a finetuning step costs: frozen encoder on cached embeddings vs the full model.

``bench_finetune`` times, on real training samples of one dataset, (1) the image encoder per
slice, (2) a frozen-encoder training step (decoder forward + backward + AdamW on precomputed
embeddings) and (3) a full training step (encoder and decoder), each with the settings' batch
size, after one warm-up step. The numbers size the profiles' grids (``mskseg bench finetune``);
they are measured, never asserted by a test.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mskseg_lib.data.tables import load_tables
from mskseg_lib.finetuning.engine import SegLoss, _forward
from mskseg_lib.finetuning.network import BoxPromptNet
from mskseg_lib.finetuning.samples import BoxSampleDataset, build_samples, choose_subjects, embedding_key
from mskseg_lib.finetuning.settings import TrainSettings
from mskseg_lib.models.interface import set_cpu_threads
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.models.zoo import load_model
from mskseg_lib.provenance import collect_versions


def _time_steps(net: BoxPromptNet, ds: BoxSampleDataset, store: dict | None, batch: int, steps: int,
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
    store = {}
    for i in range(len(ds)):
        item = ds[i]
        emb = seg.encode(item["image"].numpy()[None], [item["valid_hw"]])[0]
        store[embedding_key(ds.samples.iloc[i])] = emb
    out["encode_s_per_slice"] = round((time.perf_counter() - t0) / len(ds), 4)
    out["partial_s_per_step"] = round(_time_steps(BoxPromptNet(seg, "partial", grid), ds, store, batch, steps,
                                                  seg.device), 4)
    seg = load_model(model_key, models)  # fresh weights for the full model
    out["full_s_per_step"] = round(_time_steps(BoxPromptNet(seg, "full", grid), ds, None, batch, steps, seg.device), 4)
    out["full_vs_partial"] = round(out["full_s_per_step"] / out["partial_s_per_step"], 2)
    out["device"] = str(seg.device)
    out["versions"] = collect_versions()
    return out
