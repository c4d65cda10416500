"""The zero-shot engine: every selected slice encoded once per model, every prompt of every
condition decoded from that one embedding, scored against the ground truth at original size.

A researcher calls it with a handful of arguments, no profile needed::

    run = run_zero_shot(prepared_dir, run_dir, ["lite_medsam"], SliceSelection(split="test"),
                        ZeroShotSettings())

(``mskseg_lib.from_profile.zero_shot.zero_shot_inputs(cfg)`` gives the same arguments from a
profile.) Per model and subject (``evaluate_subject``):

1. load the subject's model-ready slices (memory-mapped) and its canonical ground-truth mask;
2. encode the slices in batches (or load their embeddings from the cache);
3. per slice, build the ground-truth box prompts of every condition and decode them all in one
   call; merge instances, map to the original slice size, combine labels (``masks``);
4. score each label with the project's one Dice (``metrics``); per label also the Dice over the
   stack of evaluated slices ("3D Dice"; over the whole volume when every labelled slice is
   evaluated, since unlabelled slices get no prompt and no prediction).

The run folder holds a settings fingerprint (``settings.json``), a config snapshot, per-subject
results (written atomically; the slice table last, so its presence marks a finished subject), the
predicted label stacks, the merged tables and a manifest with versions and timings. A rerun with
the same settings skips finished subjects; one with different settings is refused
(``RunMismatch``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from mskseg_lib.atomic import atomic_path, save_csv, save_parquet, write_json, write_text
from mskseg_lib.data import raw_io
from mskseg_lib.data.bad_inputs import SKIPPED, SkippedInputs, check_on_bad_input
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.preprocess import SliceGeometry, display_slice, geometry_of, mask_box_to_model
from mskseg_lib.data.slice_store import subject_stacks
from mskseg_lib.data.tables import load_tables
from mskseg_lib.errors import UserError
from mskseg_lib.evaluation import aggregate
from mskseg_lib.evaluation.embedding_cache import CacheEntry, EmbeddingCache, cache_key, subject_embeddings
from mskseg_lib.evaluation.masks import logits_to_label_map
from mskseg_lib.evaluation.metrics import label_metrics
from mskseg_lib.evaluation.prompting import Condition, apply_condition, gt_box_prompts, parse_conditions
from mskseg_lib.models.interface import Embedding, Prompts, Segmenter, set_cpu_threads
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.models.zoo import load_model, model_availability
from mskseg_lib.provenance import fingerprint, write_manifest

log = logging.getLogger(__name__)
TIMING_KEYS = ("load_s", "encode_s", "decode_s", "post_s")


class RunMismatch(UserError, RuntimeError):
    """An existing run folder was made with other settings; resuming it would mix results."""


class SelectionError(UserError, ValueError):
    """The slice selection names data that was not prepared, or selects nothing."""


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SliceSelection:
    """Which prepared slices a zero-shot run scores.

    Attributes
    ----------
    split : str or tuple of str
        ``"test"``, ``"val"``, ``"train"``, several of them, or ``"all"``.
    datasets : str or tuple of str
        ``"all"`` or dataset names (as in ``data.catalog``).
    max_subjects_per_dataset : int
        The first N subjects of each dataset in id order; 0 = all.
    max_slices_per_subject : int
        N labelled slices per subject, spread evenly through the volume; 0 = all.
    """

    split: str | tuple[str, ...] = "test"
    datasets: str | tuple[str, ...] = "all"
    max_subjects_per_dataset: int = 0
    max_slices_per_subject: int = 0


@dataclass(frozen=True)
class ZeroShotSettings:
    """How a zero-shot run prompts, decodes and scores (defaults: the study's).

    Attributes
    ----------
    conditions : tuple of mappings
        Prompt conditions (``evaluation.prompting``): ``{"name": "gt_box"}`` exact boxes (the
        study's arms); ``{"name": ..., "shift_grid_px": N}`` the study's outward box shift of
        up to N pixels of the ``mask_grid_px`` grid; ``{"name": ..., "kind": "jitter",
        "jitter_px": N}`` a symmetric jitter of up to N original-slice pixels.
    mask_grid_px : int
        Side of the square grid box shifts are counted on (the study: 256).
    instance_prompts : bool
        One box per connected piece of multi-instance labels (paired muscles, meniscal horns).
    hd95 : bool
        Also score the 95th-percentile Hausdorff distance (mm).
    cache_embeddings : bool
        Keep image embeddings on disk (``cache_dir`` of ``run_zero_shot``) for later runs.
    seed : int
        Seeds the box shifts (with subject, slice, label and condition: every model sees the
        same boxes).
    models : ModelSettings
        Where the weights are, device, threads, encoder batch size and input convention.
    preparation : mapping, optional
        How the prepared slices were made (resize mode, clip percentiles, per-dataset
        overrides), recorded in the run folder's fingerprint so results of differently prepared
        slices are never mixed. None: read from the prepared subjects table.
    """

    conditions: tuple[Mapping[str, Any], ...] = ({"name": "gt_box"},)
    mask_grid_px: int = 256
    instance_prompts: bool = True
    hd95: bool = False
    cache_embeddings: bool = True
    seed: int = 0
    models: ModelSettings = field(default_factory=ModelSettings)
    preparation: Mapping[str, Any] | None = None

    def parsed_conditions(self) -> list[Condition]:
        """The conditions as ``Condition`` values (a malformed entry raises one clear line)."""
        return parse_conditions(list(self.conditions), self.mask_grid_px)


@dataclass
class ZeroShotRun:
    """What ``run_zero_shot`` returns: the run folder and its merged tables."""

    run_dir: Path
    models: pd.DataFrame  # availability: model_key, model, status, checkpoint, detail
    slices: pd.DataFrame  # one row per (model, condition, slice, label)
    volumes: pd.DataFrame  # one row per (model, condition, subject, label): 3D Dice
    timings: dict[str, Any] = field(default_factory=dict)
    skipped: pd.DataFrame | None = None  # subjects left out for a bad input file (``skipped.csv``)


# ----------------------------------------------------------------------------- selection
def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def select_slices(subjects: pd.DataFrame, slices: pd.DataFrame, selection: SliceSelection) -> pd.DataFrame:
    """The slice-table rows a selection asks for (split, datasets, caps).

    Subjects are taken in id order; within a subject, ``max_slices_per_subject`` slices are
    spread evenly through its labelled slices (so apex, middle and periphery all count).

    Parameters
    ----------
    subjects, slices : DataFrame
        The prepared tables (``data.tables.load_tables``).
    selection : SliceSelection

    Returns
    -------
    DataFrame
        Rows of ``slices`` sorted by dataset, subject and slice index.
    """
    sel = subjects
    if selection.split != "all":
        sel = sel[sel["split"].isin(_as_list(selection.split))]
    if selection.datasets != "all":
        wanted = _as_list(selection.datasets)
        unknown = sorted(set(wanted) - set(subjects["dataset"]))
        if unknown:
            raise SelectionError(f"zero_shot.datasets: not in the prepared data: {unknown}")
        sel = sel[sel["dataset"].isin(wanted)]
    sel = sel.sort_values(["dataset", "subject_id"])
    if selection.max_subjects_per_dataset > 0:
        sel = sel.groupby("dataset", sort=False).head(selection.max_subjects_per_dataset)
    keys = set(zip(sel["dataset"], sel["subject_id"]))
    out = slices[[k in keys for k in zip(slices["dataset"], slices["subject_id"])]]
    cap = selection.max_slices_per_subject
    if cap > 0:
        parts = []
        for _, g in out.sort_values("slice_index").groupby(["dataset", "subject_id"], sort=True):
            idx = np.unique(np.round(np.linspace(0, len(g) - 1, min(cap, len(g)))).astype(int))
            parts.append(g.iloc[idx])
        out = pd.concat(parts) if parts else out.iloc[:0]
    return out.sort_values(["dataset", "subject_id", "slice_index"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- one subject
def ground_truth_slices(mask_nifti: str | Path, slice_axis: int, slice_indices: list[int]) -> list[np.ndarray]:
    """Ground-truth label slices in display orientation at the original size.

    Parameters
    ----------
    mask_nifti : str or Path
        The prepared (canonical) label volume.
    slice_axis : int
        The array axis slices are taken along.
    slice_indices : list of int

    Returns
    -------
    list of ndarray
        One (rows, cols) int16 label map per index.
    """
    labels = np.asarray(raw_io.read_array("nifti", Path(mask_nifti), "mask").data)
    if labels.ndim != 3 or not 0 <= slice_axis < 3:
        raise DataError(mask_nifti, f"mask has shape {labels.shape}; expected a 3D volume sliced along axis {slice_axis}")
    outside = [k for k in slice_indices if not 0 <= k < labels.shape[slice_axis]]
    if outside:
        raise DataError(mask_nifti, f"mask has {labels.shape[slice_axis]} slices along axis {slice_axis}; the slice "
                                    f"table names slices {outside[:5]} (rerun prepare)")
    return [display_slice(labels, slice_axis, k).astype(np.int16) for k in slice_indices]


@dataclass(frozen=True)
class _SubjectLabels:
    """Label names and tissue classes of a subject's dataset, and the row identity."""

    model_key: str
    dataset: str
    subject_id: str
    names: Mapping[int, str]
    tissue: Mapping[int, str]

    def row(self, condition: str, value: int, **where: Any) -> dict[str, Any]:
        """The identity columns of one result row (``where``: e.g. the slice index, before the label)."""
        return {"model_key": self.model_key, "condition": condition, "dataset": self.dataset,
                "subject_id": self.subject_id, **where, "label_value": value,
                "label_name": self.names.get(value, str(value)), "tissue_class": self.tissue.get(value, "")}


def _subject_labels(model_key: str, dataset: str, subject_id: str) -> _SubjectLabels:
    spec = get_dataset(dataset)
    return _SubjectLabels(model_key, dataset, subject_id, spec.label_names(),
                          {lab.value: lab.tissue_class for lab in spec.labels})


def _store_folder(model: Segmenter, model_key: str) -> str:
    """The store folder of a model's embeddings: the initial model's for a decoder-only finetune
    (``embedding_source``); ``<key>-<weights digest>`` for a finetuned encoder (its own
    embeddings, never mixed with another run's); else the model key."""
    source = getattr(model, "embedding_source", None) or {}
    if source:
        return str(source.get("model_key", model_key))
    checkpoint = getattr(model, "checkpoint", None) or {}
    if isinstance(checkpoint, dict) and "initial" in checkpoint:  # finetuning.evaluate.finetuned_segmenter
        return f"{model_key}-{str(checkpoint.get('sha256') or '')[:12]}"
    return model_key


def _embed_slices(model: Segmenter, model_key: str, rows: pd.DataFrame, subject: Mapping[str, Any],
                  geoms: list[SliceGeometry], cache: EmbeddingCache | None,
                  encode_batch_size: int,
                  on_batch: Callable[[int], None] | None = None) -> tuple[list[Embedding], int]:
    """Step 2: one embedding per row (cached ones loaded, the others encoded), and how many were encoded."""
    size = model.input_size_px
    stack, _ = subject_stacks(subject, size)
    entry = None
    if cache is not None:
        cache_model = _store_folder(model, model_key)
        entry = CacheEntry(cache, cache_model, str(subject["dataset"]), str(subject["subject_id"]),
                           cache_key(model, subject.get(f"slices_{size}_image")))
    store = [int(s) for s in rows["store_index"]]
    if store and not (max(store) < len(stack) and stack.shape[1] == size):
        raise DataError(subject.get(f"slices_{size}_image") or f"{subject['dataset']}/{subject['subject_id']}",
                        f"slice stack has shape {stack.shape}; the slice table needs {max(store) + 1} slices of "
                        f"{size} px (rerun prepare)")
    by_index, n_encoded = subject_embeddings(model, stack, store, [g.resized_shape for g in geoms],
                                             encode_batch_size, entry, on_batch=on_batch)
    return [by_index[s] for s in store], n_encoded


def _score_slice(model: Segmenter, embedding: Embedding, row: pd.Series, geom: SliceGeometry, gt: np.ndarray,
                 conditions: list[Condition], labels: _SubjectLabels, *, seed: int, instance_prompts: bool,
                 hd95: bool, t: dict[str, float]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Step 3-4 for one slice: every condition's boxes decoded in one call, each label scored.

    Returns the slice-label rows and the predicted label map per condition; adds to ``t``'s
    ``decode_s`` and ``post_s``.
    """
    base = gt_box_prompts(row, instance_prompts)
    per_cond = [apply_condition(base, c, row, seed) for c in conditions]
    flat = [p for ps in per_cond for p in ps]
    boxes = np.stack([mask_box_to_model(p.box_px, geom) for p in flat]).astype(np.float32)
    t0 = time.perf_counter()
    logits = model.decode(embedding, Prompts(boxes=boxes))
    t["decode_s"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    records, preds, start = [], {}, 0
    values = sorted({p.label for p in base})
    spacing = (float(row["pixel_spacing_row_mm"]), float(row["pixel_spacing_col_mm"]))
    for cond, ps in zip(conditions, per_cond):
        part = logits[start:start + len(ps)]
        start += len(ps)
        pred = logits_to_label_map(part, [p.label for p in ps], geom)
        preds[cond.name] = pred
        scores = label_metrics(pred, gt, values, spacing, hd95)
        for v in values:
            records.append({**labels.row(cond.name, v, slice_index=int(row["slice_index"])),
                            "n_boxes": sum(p.label == v for p in ps), **scores[v]})
    t["post_s"] += time.perf_counter() - t0
    return records, preds


def _volume_rows(gts: list[np.ndarray], preds: Mapping[str, list[np.ndarray]], labels: _SubjectLabels,
                 n_slices_labelled: int) -> list[dict]:
    """The 3D Dice per condition and label over the stack of evaluated slices."""
    gt_stack = np.stack(gts)
    present = sorted({int(v) for v in np.unique(gt_stack) if v})
    rows = []
    for cond, pred_list in preds.items():
        scores = label_metrics(np.stack(pred_list), gt_stack, present)
        for v in present:
            s = scores[v]
            rows.append({**labels.row(cond, v), "dice_3d": s["dice"], "iou_3d": s["iou"], "gt_voxels": s["gt_px"],
                         "pred_voxels": s["pred_px"], "n_slices_evaluated": len(gts),
                         "n_slices_labelled": n_slices_labelled})
    return rows


def evaluate_subject(model: Segmenter, model_key: str, slice_rows: pd.DataFrame, subject: Mapping[str, Any],
                     conditions: list[Condition], *, seed: int, instance_prompts: bool = True, hd95: bool = False,
                     cache: EmbeddingCache | None = None,
                     encode_batch_size: int = 1, on_slice: Callable[[], None] | None = None,
                     on_encoded: Callable[[int], None] | None = None,
                     ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray], dict]:
    """Score one subject's selected slices under every prompt condition.

    Parameters
    ----------
    model : Segmenter
    model_key : str
        Written to every row (and the embedding cache's folder, unless the model says its
        encoder is another model's: ``embedding_source``).
    slice_rows : DataFrame
        The subject's rows of the slice table to score.
    subject : mapping
        Its row of the subjects table, with ``dataset`` and ``subject_id``.
    conditions : list of Condition
    seed, instance_prompts, hd95 : as in ``ZeroShotSettings``.
    cache : EmbeddingCache, optional
    encode_batch_size : int
        Slices per encoder call.
    on_slice : callable, optional
        Called with no argument after each slice is decoded and scored (a progress bar's step).
    on_encoded : callable, optional
        Called after each encoder call with the number of slices it encoded (none for slices
        the cache holds).

    Returns
    -------
    (DataFrame, DataFrame, dict, dict)
        Slice-label rows (dice, iou, gt_px, pred_px per slice, condition and label); 3D rows
        (``dice_3d`` per condition and label); the predicted label stacks per condition,
        (n_slices, rows, cols) at the original size, plus ``slice_index``; timings in seconds
        (load_s, encode_s, decode_s, post_s) and ``encoded_slices``.
    """
    t: dict[str, float] = dict.fromkeys(TIMING_KEYS, 0.0)
    rows = slice_rows.sort_values("slice_index").reset_index(drop=True)
    labels = _subject_labels(model_key, str(rows["dataset"].iloc[0]), str(rows["subject_id"].iloc[0]))
    t0 = time.perf_counter()
    gts = ground_truth_slices(subject["mask_nifti"], int(subject["slice_axis"]),
                              rows["slice_index"].astype(int).tolist())
    geoms = [geometry_of(r, model.input_size_px) for _, r in rows.iterrows()]  # stretched or padded, as prepared
    t["load_s"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    embeddings, t["encoded_slices"] = _embed_slices(model, model_key, rows, subject, geoms, cache, encode_batch_size,
                                                    on_encoded)
    t["encode_s"] += time.perf_counter() - t0
    records: list[dict] = []
    preds: dict[str, list[np.ndarray]] = {c.name: [] for c in conditions}
    for i, row in rows.iterrows():
        slice_records, slice_preds = _score_slice(model, embeddings[i], row, geoms[i], gts[i], conditions, labels,
                                                  seed=seed, instance_prompts=instance_prompts, hd95=hd95, t=t)
        records.extend(slice_records)
        for name, pred in slice_preds.items():
            preds[name].append(pred)
        if on_slice is not None:
            on_slice()
    t0 = time.perf_counter()
    volume_rows = _volume_rows(gts, preds, labels, int(subject.get("n_processed_slices", len(rows))))
    t["post_s"] += time.perf_counter() - t0
    stacks = {c: np.stack(p) for c, p in preds.items()}
    stacks["slice_index"] = rows["slice_index"].to_numpy()
    return pd.DataFrame(records), pd.DataFrame(volume_rows), stacks, t


# ----------------------------------------------------------------------------- the run folder
def run_settings_record(settings: ZeroShotSettings, selection: SliceSelection | pd.DataFrame,
                        subjects: pd.DataFrame | None = None) -> dict[str, Any]:
    """What a run folder's results depend on besides the data files: the zero-shot settings, the
    selection, the encoder input convention and the preparation that made the slices.

    Its fingerprint (``provenance.fingerprint``) is stored in ``settings.json``; the layout is
    the one run folders have always stored, so folders made before keep resuming.

    Parameters
    ----------
    settings : ZeroShotSettings
    selection : SliceSelection or DataFrame
        A rule (recorded field by field) or explicit slice rows (recorded as a digest of their
        dataset, subject and slice index).
    subjects : DataFrame, optional
        The prepared subjects table: where ``settings.preparation`` is None, the preparation is
        read from its ``resize_mode`` and ``clip_percentiles`` columns.

    Returns
    -------
    dict
        JSON-serialisable record.
    """
    if isinstance(selection, SliceSelection):
        chosen: dict[str, Any] = {k: getattr(selection, k) for k in
                                  ("split", "datasets", "max_subjects_per_dataset", "max_slices_per_subject")}
    else:
        keys = sorted(zip(selection["dataset"].astype(str), selection["subject_id"].astype(str),
                          selection["slice_index"].astype(int)))
        chosen = {"slices": fingerprint([list(k) for k in keys])}
    preparation = settings.preparation
    if preparation is None and subjects is not None:
        preparation = {col: sorted({str(v) for v in subjects[col]}) for col in ("resize_mode", "clip_percentiles")
                       if col in subjects}
    return {"seed": settings.seed, "conditions": [dict(c) for c in settings.conditions],
            "mask_grid_px": settings.mask_grid_px, **chosen, "instance_prompts": settings.instance_prompts,
            "hd95": settings.hd95, "cache_embeddings": settings.cache_embeddings,
            "input_normalisation": settings.models.input_normalisation, "prepare": preparation}


def check_run_folder(run_dir: Path, record: Mapping[str, Any]) -> None:
    """Start a run folder, or resume it if it was made with the same settings record.

    Parameters
    ----------
    run_dir : Path
        An existing folder; its ``settings.json`` is written on the first call.
    record : mapping
        ``run_settings_record``'s output.

    Raises ``RunMismatch`` (naming the folder and its settings) when they differ.
    """
    digest = fingerprint(record)
    marker = Path(run_dir) / "settings.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if old.get("fingerprint") != digest:
            raise RunMismatch(f"{run_dir}: made with other zero-shot settings ({old.get('settings')}); "
                              "choose another run folder (zero_shot.tag in a profile) or delete this one")
    else:
        write_json(marker, {"fingerprint": digest, "settings": dict(record)})


def _snapshot(settings: ZeroShotSettings, record: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as plain data, for config.yaml and the manifest when no profile is given."""
    return json.loads(json.dumps({"zero_shot": dataclasses.asdict(settings), "settings": dict(record)}, default=str))


# ----------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class _RunContext:
    """What every model of one run shares."""

    run_dir: Path
    subjects: pd.DataFrame  # indexed by (dataset, subject_id)
    groups: list[tuple[tuple[str, str], pd.DataFrame]]  # selected slices per subject
    conditions: list[Condition]
    settings: ZeroShotSettings
    cache: EmbeddingCache | None
    progress: bool
    skipped: SkippedInputs


def _availability(model_keys: list[str], settings: ModelSettings,
                  model_loader: Callable[[str], Segmenter] | None) -> pd.DataFrame:
    if model_loader is None:
        return model_availability(model_keys, settings)
    return pd.DataFrame([{"model_key": k, "model": k, "status": "available", "checkpoint": "", "detail": ""}
                         for k in model_keys])


def _subject_file(out_dir: Path, dataset: str, subject_id: str, suffix: str) -> Path:
    return out_dir / ("predictions" if suffix == ".npz" else "subjects") / f"{dataset}__{subject_id}{suffix}"


def _encode_note(bar: Any, name: str, n_slices: int) -> Callable[[int], None]:
    """A callback writing '<subject>: encoded k/n' into the bar's postfix after each encoder call."""
    done = 0

    def note(n_encoded: int) -> None:
        nonlocal done
        done += n_encoded
        bar.set_postfix_str(f"{name}: encoded {done}/{n_slices}")
    return note


def _run_model(ctx: _RunContext, model_key: str, load: Callable[[str], Segmenter]) -> tuple[dict, dict]:
    """Evaluate one model on every pending subject; returns its info ({name, checkpoint}) and timings.

    A subject whose input files are bad (``DataError``) is listed in ``ctx.skipped`` and writes
    nothing, so a later run tries it again; any other error stops the run.
    A model whose subjects are all finished is not loaded (nor its file hashed) again. The
    progress bar counts slices (total: every selected slice; finished subjects' slices count as
    done from the start) and steps after each slice, so its rate and ETA are per slice; while a
    subject is being encoded its postfix says how many of its slices are encoded.
    """
    t_model = time.perf_counter()
    out_dir = ctx.run_dir / "models" / model_key
    pending = [(key, g) for key, g in ctx.groups if not _subject_file(out_dir, *key, ".parquet").exists()]
    info_path = out_dir / "model.json"
    model = None
    if pending or not info_path.exists():
        model = load(model_key)
        write_json(info_path, {"name": getattr(model, "name", model_key),
                               "checkpoint": getattr(model, "checkpoint", None)})
    totals = {"load_s": 0.0, "encode_s": 0.0, "decode_s": 0.0, "post_s": 0.0, "encoded_slices": 0, "slices": 0}
    s = ctx.settings
    n_slices = sum(len(g) for _, g in ctx.groups)
    bar = tqdm(total=n_slices, initial=n_slices - sum(len(g) for _, g in pending), desc=f"zero-shot {model_key}",
               unit="slice", disable=not ctx.progress)
    try:
        for (dataset, subject_id), g in pending:
            subject = {**ctx.subjects.loc[(dataset, subject_id)], "dataset": dataset, "subject_id": subject_id}
            done = ctx.skipped.attempt(functools.partial(
                evaluate_subject, model, model_key, g, subject, ctx.conditions, seed=int(s.seed),
                instance_prompts=s.instance_prompts, hd95=s.hd95, cache=ctx.cache,
                encode_batch_size=s.models.encode_batch_size, on_slice=lambda: bar.update(1),
                on_encoded=_encode_note(bar, f"{dataset}/{subject_id}", len(g))), dataset, subject_id)
            if done is SKIPPED:
                continue
            res, vol, stacks, t = done
            with atomic_path(_subject_file(out_dir, dataset, subject_id, ".npz")) as tmp:
                np.savez_compressed(tmp, **stacks)
            save_parquet(vol, _subject_file(out_dir, dataset, subject_id, ".3d.parquet"))
            save_parquet(res.assign(seconds=sum(v for k, v in t.items() if k.endswith("_s"))),
                         _subject_file(out_dir, dataset, subject_id, ".parquet"))  # last: marks the subject done
            for k in totals:
                totals[k] += t.get(k, 0) if k != "slices" else len(g)
    finally:
        bar.close()
    totals["wall_s"] = time.perf_counter() - t_model
    return json.loads(info_path.read_text()), {k: round(v, 3) for k, v in totals.items()}


def _write_tables(run_dir: Path, availability: pd.DataFrame, model_keys: list[str], conditions: list[Condition],
                  n_slices: int, n_subjects: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge every finished subject into the run's tables and ``summary.json``."""
    slices_df, volumes_df = collect_results(run_dir, model_keys)
    display = dict(zip(availability["model_key"], availability["model"]))
    for df in (slices_df, volumes_df):
        if not df.empty:
            df.insert(1, "model", df["model_key"].map(display))
    save_csv(availability, run_dir / "models.csv", index=False)
    save_csv(slices_df, run_dir / "slice_label_metrics.csv", index=False)
    save_csv(volumes_df, run_dir / "volume_label_metrics.csv", index=False)
    summary: dict[str, Any] = {"models": availability[["model_key", "model", "status"]].to_dict("records"),
                               "conditions": [c.__dict__ for c in conditions], "n_slices": n_slices,
                               "n_subjects": n_subjects}
    if not slices_df.empty:
        subj = aggregate.subject_table(slices_df, volumes_df)
        ds = aggregate.dataset_table(subj, slices_df)
        save_csv(subj, run_dir / "subject_metrics.csv", index=False)
        save_csv(ds, run_dir / "dataset_metrics.csv", index=False)
        save_csv(aggregate.grouped_table(slices_df, "tissue_class"), run_dir / "tissue_metrics.csv", index=False)
        save_csv(aggregate.grouped_table(slices_df, "label_name"), run_dir / "label_metrics.csv", index=False)
        summary["mean_dice_by_arm"] = ds.groupby("arm")["dice_mean_tissue"].mean().round(4).to_dict()
        summary["datasets"] = ds[["arm", "dataset", "n_subjects", "dice_mean_tissue", "subject_dice_mean",
                                  "subject_dice_sd", "dice_3d_mean"]].round(4).to_dict("records")
    write_json(run_dir / "summary.json", summary)
    return slices_df, volumes_df


def _selected(prepared_dir: Path, selection: SliceSelection | pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(subjects table, selected slice rows); an empty selection is refused."""
    subjects, slices = load_tables(Path(prepared_dir))
    chosen = select_slices(subjects, slices, selection) if isinstance(selection, SliceSelection) else selection
    if chosen.empty:
        raise SelectionError(f"{prepared_dir}: the zero-shot selection is empty "
                             "(check its split / datasets, or run prepare)")
    return subjects, chosen


def run_zero_shot(prepared_dir: Path, run_dir: Path, model_keys: Sequence[str],
                  selection: SliceSelection | pd.DataFrame, settings: ZeroShotSettings | None = None, *,
                  cache_dir: Path | None = None, profile: Mapping[str, Any] | None = None, progress: bool = True,
                  model_loader: Callable[[str], Segmenter] | None = None,
                  on_bad_input: str = "skip") -> ZeroShotRun:
    """Evaluate zoo models zero-shot on prepared slices, into a resumable run folder.

    Parameters
    ----------
    prepared_dir : Path
        The prepared data (``subjects.parquet``, ``slices.parquet`` and the slice stacks).
    run_dir : Path
        The run folder (created; a folder of another settings record raises ``RunMismatch``).
    model_keys : sequence of str
        Zoo names; a model without its checkpoint is listed as not run, never skipped silently.
    selection : SliceSelection or DataFrame
        Which slices: a rule, or explicit rows of the slice table (a benchmark's pick).
    settings : ZeroShotSettings, optional
        Prompt conditions, scoring and model settings (default: ``ZeroShotSettings()``).
    cache_dir : Path, optional
        The embedding cache shared by runs (default ``run_dir.parent / "_embeddings"``); used
        when ``settings.cache_embeddings``.
    profile : mapping, optional
        The profile these arguments were unpacked from: snapshotted to ``config.yaml`` and the
        manifest (None: the settings themselves are).
    progress : bool
        Show a progress bar per model, counting slices (with tqdm's rate and ETA); False: silent.
    model_loader : callable, optional
        ``key -> Segmenter`` replacing the zoo (tests pass tiny models).
    on_bad_input : str
        ``"skip"``: a subject whose slice stack or mask cannot be read, or does not match the
        slice table, is listed (``skipped``, ``<run_dir>/skipped.csv``) and the others complete;
        ``"raise"``: its ``DataError`` stops the run.

    Returns
    -------
    ZeroShotRun
        The run folder, model availability, slice-label and 3D tables, timings (seconds), and
        the subjects skipped for a bad input file (``dataset, subject_id, path, problem``).
    """
    settings = settings or ZeroShotSettings()
    skipped = SkippedInputs("zero_shot", check_on_bad_input(on_bad_input))
    conditions = settings.parsed_conditions()
    model_keys, run_dir = list(model_keys), Path(run_dir)
    t_start = time.perf_counter()
    subjects, chosen = _selected(prepared_dir, selection)
    record = run_settings_record(settings, selection, subjects)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_run_folder(run_dir, record)
    snapshot = dict(profile) if profile is not None else _snapshot(settings, record)
    write_text(run_dir / "config.yaml", yaml.safe_dump(snapshot, sort_keys=False))
    threads = set_cpu_threads(settings.models.cpu_threads)
    availability = _availability(model_keys, settings.models, model_loader)
    # shared by every run beside this one: a new prompt condition under a new folder only decodes
    cache = EmbeddingCache(Path(cache_dir) if cache_dir else run_dir.parent / "_embeddings") \
        if settings.cache_embeddings else None
    ctx = _RunContext(run_dir, subjects.set_index(["dataset", "subject_id"]),
                      list(chosen.groupby(["dataset", "subject_id"], sort=True)), conditions, settings, cache, progress,
                      skipped)
    load = model_loader or (lambda key: load_model(key, settings.models))
    timings, checkpoints = {}, {}
    for row in availability.itertuples():
        if row.status != "available":
            log.warning("%s: %s", row.model_key, row.detail)
            continue
        info, timings[row.model_key] = _run_model(ctx, row.model_key, load)
        availability.loc[availability["model_key"] == row.model_key, "model"] = info["name"]
        checkpoints[row.model_key] = info["checkpoint"]
    slices_df, volumes_df = _write_tables(run_dir, availability, model_keys, conditions, len(chosen), len(ctx.groups))
    skipped.save(run_dir)
    timings_all = {"total_s": round(time.perf_counter() - t_start, 3), "cpu_threads": threads, "models": timings}
    write_manifest(run_dir / "manifest.json", profile=str(snapshot.get("profile", "(no profile)")), seed=settings.seed,
                   config=snapshot, timings={"total_s": timings_all["total_s"]},
                   extra={"per_model": timings, "checkpoints": checkpoints, "cpu_threads": threads,
                          "n_slices_selected": int(len(chosen)), "n_subjects_selected": len(ctx.groups),
                          "n_subjects_skipped": len({(r["dataset"], r["subject_id"]) for r in skipped.rows})})
    return ZeroShotRun(run_dir, availability, slices_df, volumes_df, timings_all, skipped.table())


def collect_results(run_dir: Path, model_keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All finished subjects' results of the given models in a run folder.

    Returns
    -------
    (DataFrame, DataFrame)
        Slice-label rows and 3D rows (empty frames when nothing is finished).
    """
    slices, volumes = [], []
    for key in model_keys:
        folder = Path(run_dir) / "models" / key / "subjects"
        for p in sorted(folder.glob("*.parquet")):
            (volumes if p.name.endswith(".3d.parquet") else slices).append(pd.read_parquet(p))
    s = pd.concat(slices, ignore_index=True) if slices else pd.DataFrame()
    v = pd.concat(volumes, ignore_index=True) if volumes else pd.DataFrame()
    return s, v


def load_predictions(run_dir: Path, model_key: str, dataset: str, subject_id: str) -> dict[str, np.ndarray]:
    """The predicted label stacks of one subject: {condition: (n, rows, cols), "slice_index": (n,)}."""
    with np.load(_subject_file(Path(run_dir) / "models" / model_key, dataset, subject_id, ".npz")) as z:
        return {k: z[k] for k in z.files}


def spec_input_size(model_key: str) -> int:
    return get_spec(model_key).input_size_px
