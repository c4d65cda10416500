"""``mskseg bench zero-shot``: is the pipeline as fast as the model allows, and what does
encoding once per slice buy?

Three timings on the same slices (ground-truth box prompts, one condition):

* **floor**: the model's own compute in isolation: for each slice, ``encode`` plus one
  ``decode`` of all its prompts, with images and boxes already in memory. Measured twice
  (before and after the pipeline) and averaged, so a drift in machine speed does not bias the
  ratio.
* **pipeline**: ``run_zero_shot`` over those slices in a temporary run folder (slice store,
  ground truth from NIfTI, prompts, decoding, mapping back, MONAI metrics, atomic writes,
  tables, manifest), the model already loaded. ``ratio = pipeline / floor``.
* **re-encode**: the naive design, ``encode`` + one-prompt ``decode`` for every prompt, on a
  subset of the slices. ``speedup = re-encode / floor`` on those slices, next to the speed-up
  the floor's own components predict: sum N (enc + dec_1) / sum (enc + dec_N).
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mskseg_lib.data.preprocess import geometry_of, mask_box_to_model
from mskseg_lib.data.slice_store import subject_stacks
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation.prompting import gt_box_prompts
from mskseg_lib.evaluation.zero_shot import ZeroShotSettings, run_zero_shot
from mskseg_lib.models.interface import Prompts, set_cpu_threads
from mskseg_lib.models.zoo import load_model
from mskseg_lib.provenance import collect_versions


def pick_slices(slices: pd.DataFrame, n_slices: int, min_prompts: int, seed: int) -> pd.DataFrame:
    """``n_slices`` slices with at least ``min_prompts`` box prompts, spread over datasets."""
    n_prompts = slices.apply(lambda r: len(gt_box_prompts(r)), axis=1)
    rich = slices.assign(n_prompts=n_prompts.values)[n_prompts.values >= min_prompts]
    if rich.empty:
        raise ValueError(f"no prepared slice has >= {min_prompts} box prompts")
    rng = np.random.default_rng(seed)
    rich = rich.assign(r=rng.random(len(rich))).sort_values("r")
    rich = rich.assign(k=rich.groupby("dataset").cumcount()).sort_values(["k", "r"])
    return rich.head(n_slices).drop(columns=["r", "k"]).sort_values(["dataset", "subject_id", "slice_index"])


def _inputs(model, subjects: pd.DataFrame, sel: pd.DataFrame) -> list[tuple[np.ndarray, Prompts]]:
    index = subjects.set_index(["dataset", "subject_id"])
    out = []
    for r in sel.itertuples():
        stack, _ = subject_stacks({**index.loc[(r.dataset, r.subject_id)], "dataset": r.dataset,
                                        "subject_id": r.subject_id}, model.input_size_px)
        geom = geometry_of(r, model.input_size_px)
        boxes = np.stack([mask_box_to_model(p.box_px, geom) for p in gt_box_prompts(pd.Series(r._asdict()))])
        out.append((np.array(stack[int(r.store_index)])[None], Prompts(boxes=boxes.astype(np.float32))))
    return out


def _floor(model, inputs) -> dict[str, list[float]]:
    enc, dec_n, dec_1 = [], [], []
    for image, prompts in inputs:
        t0 = time.perf_counter()
        emb = model.encode(image)[0]
        t1 = time.perf_counter()
        model.decode(emb, prompts)
        t2 = time.perf_counter()
        model.decode(emb, prompts.subset(0))
        t3 = time.perf_counter()
        enc.append(t1 - t0)
        dec_n.append(t2 - t1)
        dec_1.append(t3 - t2)
    return {"encode": enc, "decode_all": dec_n, "decode_one": dec_1}


def bench_zero_shot(prepared_dir: Path, model_key: str = "lite_medsam", settings: ZeroShotSettings | None = None,
                    n_slices: int = 12, min_prompts: int = 5, reencode_slices: int = 4) -> dict:
    """Time the zero-shot pipeline against the model's own compute (see the module docstring).

    Parameters
    ----------
    prepared_dir : Path
        The prepared data.
    model_key : str
        Zoo name.
    settings : ZeroShotSettings, optional
        Seed (slice pick), model settings and prompting; the pipeline run uses exact boxes only,
        no HD95 and no embedding cache.
    n_slices, min_prompts, reencode_slices : int
        Slices timed, box prompts each must have, slices of the re-encode comparison.

    Returns
    -------
    dict
        Seconds per step, ratios, speed-ups, versions and targets (JSON-serialisable).
    """
    settings = settings or ZeroShotSettings()
    threads = set_cpu_threads(settings.models.cpu_threads)
    subjects, slices = load_tables(Path(prepared_dir))
    sel = pick_slices(slices, n_slices, min_prompts, int(settings.seed))
    model = load_model(model_key, settings.models)
    inputs = _inputs(model, subjects, sel)
    _floor(model, inputs[:1])  # warm-up (allocator, kernels)
    floor_a = _floor(model, inputs)

    run_settings = dataclasses.replace(settings, conditions=({"name": "gt_box", "jitter_px": 0},),
                                       cache_embeddings=False, hd95=False)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_zero_shot(prepared_dir, Path(tmp) / "bench", [model_key], sel.drop(columns=["n_prompts"]), run_settings,
                      progress=False, model_loader=lambda key: model)
        pipeline_s = time.perf_counter() - t0
    floor_b = _floor(model, inputs)

    per_slice_floor = [(a + b + c + d) / 2 for a, b, c, d in
                       zip(floor_a["encode"], floor_a["decode_all"], floor_b["encode"], floor_b["decode_all"])]
    floor_s = float(np.sum(per_slice_floor))
    enc = (np.array(floor_a["encode"]) + np.array(floor_b["encode"])) / 2
    dec_n = (np.array(floor_a["decode_all"]) + np.array(floor_b["decode_all"])) / 2
    dec_1 = (np.array(floor_a["decode_one"]) + np.array(floor_b["decode_one"])) / 2
    n_prompts = np.array([len(p) for _, p in inputs])

    k = min(reencode_slices, len(inputs))
    t0 = time.perf_counter()
    for image, prompts in inputs[:k]:
        for i in range(len(prompts)):
            model.decode(model.encode(image)[0], prompts.subset(i))
    reencode_s = time.perf_counter() - t0
    cached_s = float(np.sum(per_slice_floor[:k]))
    predicted = float(np.sum(n_prompts[:k] * (enc[:k] + dec_1[:k])) / np.sum(enc[:k] + dec_n[:k]))
    return {
        "model": model_key, "device": str(model.device), "cpu_threads": threads, "versions": collect_versions(),
        "n_slices": len(inputs), "datasets": sorted(sel["dataset"].unique()),
        "prompts_per_slice_mean": float(n_prompts.mean()),
        "encode_s_per_slice": float(enc.mean()), "decode_s_per_prompt": float((dec_n / n_prompts).mean()),
        "decode_one_prompt_s": float(dec_1.mean()),
        "floor_s": floor_s, "pipeline_s": pipeline_s, "ratio_pipeline_to_floor": pipeline_s / floor_s,
        "slices_per_s_pipeline": len(inputs) / pipeline_s, "slices_per_s_floor": len(inputs) / floor_s,
        "reencode_slices": k, "reencode_s": reencode_s, "cached_s": cached_s,
        "speedup_cached_vs_reencode": reencode_s / cached_s, "speedup_predicted_by_floor": predicted,
        "targets": {"ratio_max": 1.15},
    }
