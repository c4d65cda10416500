"""The zero-shot engine: every selected slice encoded once per model, every prompt of every
condition decoded from that one embedding, scored against the ground truth at original size.

Per model and subject (``evaluate_subject``):

1. load the subject's model-ready slices (memory-mapped) and its canonical ground-truth mask;
2. encode the slices in batches (or load their embeddings from the cache);
3. per slice, build the ground-truth box prompts of every condition and decode them all in one
   call; merge instances, map to the original slice size, combine labels (``masks``);
4. score each label with MONAI (``metrics``); per label also the Dice over the stack of
   evaluated slices ("3D Dice"; over the whole volume when every labelled slice is evaluated,
   since unlabelled slices get no prompt and no prediction).

The run folder (``runs_dir/zero_shot/<tag>``) holds a config snapshot, per-subject results
(written atomically; the slice table last, so its presence marks a finished subject), the
predicted label stacks, the merged tables and a manifest with versions and timings. A rerun
with the same settings skips finished subjects; one with different settings is refused.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

from mskseg_lib.atomic import atomic_path, save_csv, save_parquet, write_json, write_text
from mskseg_lib.config import resolve_path
from mskseg_lib.data import raw_io
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.preprocess import SliceGeometry, geometry_of, mask_box_to_model, to_display
from mskseg_lib.data.slice_store import load_stack
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation import aggregate
from mskseg_lib.evaluation.embedding_cache import EmbeddingCache, cache_key, round_trip
from mskseg_lib.evaluation.masks import logits_to_label_map
from mskseg_lib.evaluation.metrics import label_metrics
from mskseg_lib.evaluation.prompting import Condition, apply_condition, gt_box_prompts, parse_conditions
from mskseg_lib.models.interface import Prompts, Segmenter, set_cpu_threads
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.zoo import load_model, model_availability
from mskseg_lib.provenance import write_manifest

log = logging.getLogger(__name__)
SETTINGS_KEYS = ("conditions", "mask_grid_px", "split", "datasets", "max_subjects_per_dataset", "max_slices_per_subject",
                 "instance_prompts", "hd95", "cache_embeddings")


class RunMismatch(RuntimeError):
    """An existing run folder was made with other settings; resuming it would mix results."""


@dataclass
class ZeroShotRun:
    run_dir: Path
    models: pd.DataFrame  # availability: model_key, model, status, checkpoint, detail
    slices: pd.DataFrame  # one row per (model, condition, slice, label)
    volumes: pd.DataFrame  # one row per (model, condition, subject, label): 3D Dice
    timings: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- selection
def select_slices(cfg: Mapping[str, Any], subjects: pd.DataFrame, slices: pd.DataFrame) -> pd.DataFrame:
    """The slices the profile's ``zero_shot`` section asks for (split, datasets, caps).

    Subjects are taken in id order; within a subject, ``max_slices_per_subject`` slices are
    spread evenly through its labelled slices (so apex, middle and periphery all count).
    """
    z = cfg["zero_shot"]
    sel = subjects
    if z["split"] != "all":
        splits = [z["split"]] if isinstance(z["split"], str) else list(z["split"])
        sel = sel[sel["split"].isin(splits)]
    if z["datasets"] != "all":
        wanted = [z["datasets"]] if isinstance(z["datasets"], str) else list(z["datasets"])
        unknown = sorted(set(wanted) - set(subjects["dataset"]))
        if unknown:
            raise ValueError(f"zero_shot.datasets: not in the prepared data: {unknown}")
        sel = sel[sel["dataset"].isin(wanted)]
    sel = sel.sort_values(["dataset", "subject_id"])
    if z["max_subjects_per_dataset"] > 0:
        sel = sel.groupby("dataset", sort=False).head(z["max_subjects_per_dataset"])
    keys = set(zip(sel["dataset"], sel["subject_id"]))
    out = slices[[k in keys for k in zip(slices["dataset"], slices["subject_id"])]]
    cap = z["max_slices_per_subject"]
    if cap > 0:
        parts = []
        for _, g in out.sort_values("slice_index").groupby(["dataset", "subject_id"], sort=True):
            idx = np.unique(np.round(np.linspace(0, len(g) - 1, min(cap, len(g)))).astype(int))
            parts.append(g.iloc[idx])
        out = pd.concat(parts) if parts else out.iloc[:0]
    return out.sort_values(["dataset", "subject_id", "slice_index"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- one subject
def ground_truth_slices(mask_nifti: str | Path, slice_axis: int, slice_indices: list[int]) -> list[np.ndarray]:
    """Ground-truth label slices in display orientation at the original size."""
    labels = np.asarray(raw_io.read_array("nifti", Path(mask_nifti), "mask").data)
    moved = np.moveaxis(labels, slice_axis, 0)
    return [to_display(moved[k]).astype(np.int16) for k in slice_indices]


def encode_in_batches(model: Segmenter, images: np.ndarray, geoms: list[SliceGeometry], batch: int) -> list:
    """One embedding per slice, encoded ``batch`` slices at a time (each slice's unpadded size given)."""
    out = []
    for i in range(0, len(images), batch):
        out.extend(model.encode(np.asarray(images[i:i + batch]), [g.resized_shape for g in geoms[i:i + batch]]))
    return out


def evaluate_subject(model: Segmenter, model_key: str, slice_rows: pd.DataFrame, subject: Mapping[str, Any],
                     conditions: list[Condition], *, seed: int, instance_prompts: bool = True, hd95: bool = False,
                     cache: EmbeddingCache | None = None, encode_batch_size: int = 1,
                     images: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray], dict]:
    """Score one subject: (slice-label rows, 3D label rows, predicted stacks per condition, timings).

    ``images`` may be given (already loaded model-size slices, in ``slice_rows`` order) to time
    the model without data loading; otherwise they are read from the slice store.
    """
    t: dict[str, float] = {"load_s": 0.0, "encode_s": 0.0, "decode_s": 0.0, "post_s": 0.0}
    rows = slice_rows.sort_values("slice_index").reset_index(drop=True)
    dataset, subject_id = str(rows["dataset"].iloc[0]), str(rows["subject_id"].iloc[0])
    spec = get_dataset(dataset)
    tissue = {lab.value: lab.tissue_class for lab in spec.labels}
    names = spec.label_names()
    size = model.input_size_px
    t0 = time.perf_counter()
    key = cache_key(model, subject.get(f"slices_{size}_image"))
    if images is None:
        stack, _ = load_stack_or_raise(subject, size)
        images = np.stack([stack[int(i)] for i in rows["store_index"]])
    gts = ground_truth_slices(subject["mask_nifti"], int(subject["slice_axis"]), rows["slice_index"].astype(int).tolist())
    geoms = [geometry_of(r, size) for _, r in rows.iterrows()]  # stretched or padded, as prepared
    t["load_s"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    cache_model = (getattr(model, "embedding_source", None) or {}).get("model_key", model_key)
    cached = cache.load(cache_model, dataset, subject_id, key, model.device) if cache else {}
    todo = [i for i, s in enumerate(rows["store_index"]) if int(s) not in cached]
    fresh = encode_in_batches(model, images[todo], [geoms[i] for i in todo], encode_batch_size) if todo else []
    if cache is not None:
        fresh = [round_trip(e) for e in fresh]
        if todo:
            cache.save(cache_model, dataset, subject_id, key, {int(rows["store_index"][i]): e for i, e in zip(todo, fresh)})
    emb = dict(zip(todo, fresh))
    embeddings = [emb[i] if i in emb else cached[int(rows["store_index"][i])] for i in range(len(rows))]
    t["encode_s"] += time.perf_counter() - t0
    t["encoded_slices"] = len(todo)

    records, preds = [], {c.name: [] for c in conditions}
    for i, row in rows.iterrows():
        base = gt_box_prompts(row, instance_prompts)
        per_cond = [apply_condition(base, c, row, seed) for c in conditions]
        flat = [p for ps in per_cond for p in ps]
        boxes = np.stack([mask_box_to_model(p.box_px, geoms[i]) for p in flat]).astype(np.float32)
        t0 = time.perf_counter()
        logits = model.decode(embeddings[i], Prompts(boxes=boxes))
        t["decode_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        start = 0
        values = sorted({p.label for p in base})
        spacing = (float(row["pixel_spacing_row_mm"]), float(row["pixel_spacing_col_mm"]))
        for cond, ps in zip(conditions, per_cond):
            part = logits[start:start + len(ps)]
            start += len(ps)
            pred = logits_to_label_map(part, [p.label for p in ps], geoms[i])
            preds[cond.name].append(pred)
            scores = label_metrics(pred, gts[i], values, spacing, hd95)
            n_boxes = {v: sum(p.label == v for p in ps) for v in values}
            for v in values:
                records.append({"model_key": model_key, "condition": cond.name, "dataset": dataset,
                                "subject_id": subject_id, "slice_index": int(row["slice_index"]),
                                "label_value": v, "label_name": names.get(v, str(v)), "tissue_class": tissue.get(v, ""),
                                "n_boxes": n_boxes[v], **scores[v]})
        t["post_s"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    gt_stack = np.stack(gts)
    volume_rows = []
    present = sorted({int(v) for v in np.unique(gt_stack) if v})
    for cond in conditions:
        pstack = np.stack(preds[cond.name])
        scores = label_metrics(pstack, gt_stack, present)
        for v in present:
            volume_rows.append({"model_key": model_key, "condition": cond.name, "dataset": dataset,
                                "subject_id": subject_id, "label_value": v, "label_name": names.get(v, str(v)),
                                "tissue_class": tissue.get(v, ""), "dice_3d": scores[v]["dice"],
                                "iou_3d": scores[v]["iou"], "gt_voxels": scores[v]["gt_px"],
                                "pred_voxels": scores[v]["pred_px"], "n_slices_evaluated": len(rows),
                                "n_slices_labelled": int(subject.get("n_processed_slices", len(rows)))})
    t["post_s"] += time.perf_counter() - t0
    stacks = {c: np.stack(p) for c, p in preds.items()}
    stacks["slice_index"] = rows["slice_index"].to_numpy()
    return pd.DataFrame(records), pd.DataFrame(volume_rows), stacks, t


def load_stack_or_raise(subject: Mapping[str, Any], size_px: int) -> tuple[np.ndarray, np.ndarray]:
    col = f"slices_{size_px}_image"
    if col not in subject or not isinstance(subject[col], str):
        raise ValueError(f"{subject['dataset']}/{subject['subject_id']}: no {size_px} px slices were prepared; "
                         f"add {size_px} to prepare.slice_sizes_px and rerun prepare")
    images = np.load(subject[col], mmap_mode="r")
    masks = np.load(subject[f"slices_{size_px}_mask"], mmap_mode="r")
    return images, masks


# ----------------------------------------------------------------------------- the run
def zero_shot_variant(cfg: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """A copy of ``cfg`` whose ``zero_shot`` section has ``overrides`` applied (unknown keys refused).

    Other analyses (notebook 04's physics check: one model over every subject) reuse the engine,
    its resumable run folders (under their own ``tag``) and the shared embedding cache this way.
    """
    unknown = sorted(set(overrides) - set(cfg["zero_shot"]))
    if unknown:
        raise KeyError(f"zero_shot_variant: unknown zero_shot keys {unknown}")
    out = copy.deepcopy(dict(cfg))
    out["zero_shot"] = {**out["zero_shot"], **overrides}
    return out


def run_dir_for(cfg: Mapping[str, Any]) -> Path:
    return resolve_path(cfg, "runs_dir") / "zero_shot" / cfg["zero_shot"]["tag"]


def _settings(cfg: Mapping[str, Any]) -> dict:
    """What a run folder's results depend on besides the data files: the zero-shot settings, the
    encoder input convention and the preparation (resize mode, clipping) that made the slices."""
    z, p = cfg["zero_shot"], cfg["prepare"]
    return {"seed": cfg["seed"], **{k: z[k] for k in SETTINGS_KEYS},
            "input_normalisation": cfg["models"]["input_normalisation"],
            "prepare": {"resize": p["resize"], "clip_percentiles": p["clip_percentiles"],
                        "per_dataset": p["per_dataset"]}}


def _check_or_start(run_dir: Path, cfg: Mapping[str, Any]) -> None:
    settings = _settings(cfg)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    marker = run_dir / "settings.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if old.get("fingerprint") != digest:
            raise RunMismatch(f"{run_dir}: made with other zero_shot settings ({old.get('settings')}); "
                              "choose a new zero_shot.tag or delete the folder")
    else:
        write_json(marker, {"fingerprint": digest, "settings": settings})
    write_text(run_dir / "config.yaml", yaml.safe_dump(dict(cfg), sort_keys=False))


def run_zero_shot(cfg: Mapping[str, Any], model_keys: list[str] | None = None, *, selection: pd.DataFrame | None = None,
                  run_dir: Path | None = None, progress: bool = True,
                  model_loader: Callable[[str], Segmenter] | None = None) -> ZeroShotRun:
    """Evaluate the profile's models zero-shot; resumable. ``model_loader`` replaces the zoo
    (tests pass tiny models); ``selection`` replaces the profile's slice selection."""
    z = cfg["zero_shot"]
    conditions = parse_conditions(z["conditions"], z["mask_grid_px"])
    model_keys = list(model_keys or z["models"])
    run_dir = Path(run_dir) if run_dir else run_dir_for(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_or_start(run_dir, cfg)
    threads = set_cpu_threads(cfg["models"]["cpu_threads"])
    t_start = time.perf_counter()
    subjects, slices = load_tables(cfg)
    selection = select_slices(cfg, subjects, slices) if selection is None else selection
    if selection.empty:
        raise ValueError("zero_shot: the selection is empty (check zero_shot.split / datasets and prepare)")
    subj_index = subjects.set_index(["dataset", "subject_id"])
    availability = model_availability(cfg, model_keys) if model_loader is None else pd.DataFrame(
        [{"model_key": k, "model": k, "status": "available", "checkpoint": "", "detail": ""} for k in model_keys])
    # shared by every run of the profile: a new prompt condition under a new tag decodes only
    cache = EmbeddingCache(resolve_path(cfg, "runs_dir") / "zero_shot" / "_embeddings") if z["cache_embeddings"] else None
    timings: dict[str, float] = {}
    checkpoints = {}
    groups = list(selection.groupby(["dataset", "subject_id"], sort=True))
    for row in availability.itertuples():
        if row.status != "available":
            log.warning("%s: %s", row.model_key, row.detail)
            continue
        t_model = time.perf_counter()
        out_dir = run_dir / "models" / row.model_key
        pending = [(key, g) for key, g in groups
                   if not (out_dir / "subjects" / f"{key[0]}__{key[1]}.parquet").exists()]
        info_path = out_dir / "model.json"
        if pending or not info_path.exists():  # a finished model is not loaded (nor its file hashed) again
            model = model_loader(row.model_key) if model_loader else load_model(cfg, row.model_key)
            write_json(info_path, {"name": getattr(model, "name", row.model_key),
                                   "checkpoint": getattr(model, "checkpoint", None)})
        info = json.loads(info_path.read_text())
        availability.loc[availability["model_key"] == row.model_key, "model"] = info["name"]
        checkpoints[row.model_key] = info["checkpoint"]
        totals = {"load_s": 0.0, "encode_s": 0.0, "decode_s": 0.0, "post_s": 0.0, "encoded_slices": 0, "slices": 0}
        for (dataset, subject_id), g in tqdm(pending, desc=f"zero-shot {row.model_key}", disable=not progress):
            final = out_dir / "subjects" / f"{dataset}__{subject_id}.parquet"
            subject = dict(subj_index.loc[(dataset, subject_id)])
            subject.update(dataset=dataset, subject_id=subject_id)
            res, vol, stacks, t = evaluate_subject(
                model, row.model_key, g, subject, conditions, seed=int(cfg["seed"]),
                instance_prompts=z["instance_prompts"], hd95=z["hd95"], cache=cache,
                encode_batch_size=cfg["models"]["encode_batch_size"])
            with atomic_path(out_dir / "predictions" / f"{dataset}__{subject_id}.npz") as tmp:
                np.savez_compressed(tmp, **stacks)
            save_parquet(vol, out_dir / "subjects" / f"{dataset}__{subject_id}.3d.parquet")
            save_parquet(res.assign(seconds=sum(v for k, v in t.items() if k.endswith("_s"))), final)
            for k in totals:
                totals[k] += t.get(k, 0) if k != "slices" else len(g)
        totals["wall_s"] = time.perf_counter() - t_model
        timings[row.model_key] = {k: round(v, 3) for k, v in totals.items()}
        model = None
    slices_df, volumes_df = collect_results(run_dir, model_keys)
    display = dict(zip(availability["model_key"], availability["model"]))
    for df in (slices_df, volumes_df):
        if not df.empty:
            df.insert(1, "model", df["model_key"].map(display))
    save_csv(availability, run_dir / "models.csv", index=False)
    save_csv(slices_df, run_dir / "slice_label_metrics.csv", index=False)
    save_csv(volumes_df, run_dir / "volume_label_metrics.csv", index=False)
    summary = {"models": availability[["model_key", "model", "status"]].to_dict("records"),
               "conditions": [c.__dict__ for c in conditions], "n_slices": int(len(selection)),
               "n_subjects": len(groups)}
    if not slices_df.empty:
        subj = aggregate.subject_table(slices_df, volumes_df)
        ds = aggregate.dataset_table(subj, slices_df)
        save_csv(subj, run_dir / "subject_metrics.csv", index=False)
        save_csv(ds, run_dir / "dataset_metrics.csv", index=False)
        save_csv(aggregate.grouped_table(slices_df, "tissue_class"), run_dir / "tissue_metrics.csv", index=False)
        save_csv(aggregate.grouped_table(slices_df, "label_name"), run_dir / "label_metrics.csv", index=False)
        summary["mean_dice_by_arm"] = ds.groupby("arm")["dice_mean_tissue"].mean().round(4).to_dict()
        summary["datasets"] = ds[["arm", "dataset", "n_subjects", "dice_mean_tissue", "subject_dice_mean", "subject_dice_sd",
                                  "dice_3d_mean"]].round(4).to_dict("records")
    write_json(run_dir / "summary.json", summary)
    timings_all = {"total_s": round(time.perf_counter() - t_start, 3), "cpu_threads": threads, "models": timings}
    write_manifest(run_dir / "manifest.json", profile=cfg["profile"], seed=cfg["seed"], config=dict(cfg),
                   timings={"total_s": timings_all["total_s"]},
                   extra={"per_model": timings, "checkpoints": checkpoints, "cpu_threads": threads,
                          "n_slices_selected": int(len(selection)), "n_subjects_selected": len(groups)})
    return ZeroShotRun(run_dir, availability, slices_df, volumes_df, timings_all)


def collect_results(run_dir: Path, model_keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All finished subjects' results of the given models in a run folder."""
    slices, volumes = [], []
    for key in model_keys:
        folder = Path(run_dir) / "models" / key / "subjects"
        for p in sorted(folder.glob("*.parquet")):
            (volumes if p.name.endswith(".3d.parquet") else slices).append(pd.read_parquet(p))
    s = pd.concat(slices, ignore_index=True) if slices else pd.DataFrame()
    v = pd.concat(volumes, ignore_index=True) if volumes else pd.DataFrame()
    return s, v


def load_predictions(run_dir: Path, model_key: str, dataset: str, subject_id: str) -> dict[str, np.ndarray]:
    with np.load(Path(run_dir) / "models" / model_key / "predictions" / f"{dataset}__{subject_id}.npz") as z:
        return {k: z[k] for k in z.files}


def spec_input_size(model_key: str) -> int:
    return get_spec(model_key).input_size_px
