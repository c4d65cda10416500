"""Notebook 07: prompt schemes and model sizes for whole 3D volumes, slices as frames.

For each volume (the knee sets of the cohort with femur, tibia and patella on sagittal slices,
and the real lumbar spine fixture with its vertebral bodies), each available model and each
scheme (:data:`mskseg_lib.video3d.prompts.SCHEMES`):

* SAM2 models (hiera tiny / small / base-plus / large, wherever a checkpoint is configured) run
  all schemes: the per-slice ones through the image predictor and the video ones through the
  video predictor, from the same weights.
* Image-only models (LiteMedSAM, SAM, MedSAM) run the per-slice and the carrying schemes; the
  video schemes need memory they do not have and are listed as not applicable.

Prompts come from the manual mask (evaluation). Structures are the labels of ``video3d.tissues``
(bone: femur, tibia, patella; vertebral bodies). Each volume is scored with 3D Dice per
structure, ``combined`` (the union of ``video3d.combined_structures``: the study's femur and
tibia; the spine, which has neither, joins its vertebral bodies), ``all_structures`` (every
scored structure, patella included: a labelled extra), and with slice Dice against the offset
from the prompted slice.

Per (model, volume) the scores are stored under ``runs_dir/video3d/<tag>/scores`` with a
fingerprint of everything that shapes them, so a rerun resumes and a changed setting recomputes.
Predicted volumes are written as NIfTI on the source's grid with its affine.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mskseg_lib import atomic
from mskseg_lib.autolabel.pipeline import Slicing, clip_percentiles, file_key, resize_mode_for, slicing
from mskseg_lib.config import resolve_path
from mskseg_lib.data import raw_io
from mskseg_lib.data.catalog import REAL_SPINE, DatasetSpec, get_dataset
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.preprocess import from_display, to_display
from mskseg_lib.data.sources import real_spine_manifest
from mskseg_lib.data.volume import check_finite, to_canonical
from mskseg_lib.evaluation.volumes import write_volume
from mskseg_lib.models.checkpoints import CheckpointMissing, resolve_checkpoint
from mskseg_lib.models.interface import Segmenter, pick_device
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.zoo import NOT_RUN_MISSING, load_model
from mskseg_lib.provenance import collect_versions
from mskseg_lib.settings import real_spine_dir
from mskseg_lib.video3d import prompts as P
from mskseg_lib.video3d.predictor import (
    choose_offload,
    hole_filling_available,
    image_segmenter,
    load_video_predictor,
    parameter_count,
)
from mskseg_lib.video3d.propagate import SchemeRun, SliceEncoder, run_carry, run_per_slice, run_video
from mskseg_lib.video3d.scoring import ALL_STRUCTURES, COMBINED, slice_scores, structure_scores

#: bumped when a change here or in the engines changes the scores (part of every fingerprint)
STUDY_VERSION = 3  # 3: "combined" = union of femur and tibia (was: every scored structure)
NOT_APPLICABLE = "not applicable: no memory (image-only model)"


# ----------------------------------------------------------------------------------------------
# volumes
# ----------------------------------------------------------------------------------------------
def study_root(cfg: Mapping[str, Any]) -> Path:
    return resolve_path(cfg, "runs_dir") / "video3d" / cfg["video3d"]["tag"]


def study_volumes(cfg: Mapping[str, Any], subjects: pd.DataFrame, notes: list[str] | None = None) -> pd.DataFrame:
    """The volumes of notebook 07: columns dataset, subject_id, image_nifti, mask_nifti, source.

    Cohort subjects of ``video3d.datasets`` in ``video3d.split`` (capped per dataset), then the
    real spine fixture when ``video3d.real_spine`` is on and its folder exists (a note says so
    when it does not).
    """
    v = cfg["video3d"]
    notes = [] if notes is None else notes
    missing = sorted(set(v["datasets"]) - set(subjects["dataset"]))
    if missing:
        raise ValueError(f"video3d.datasets: {', '.join(missing)} not prepared in profile {cfg['profile']!r}")
    splits = [v["split"]] if isinstance(v["split"], str) else list(v["split"])
    chosen = subjects[subjects["dataset"].isin(v["datasets"]) & (subjects["split"].isin(splits) | ("all" in splits))]
    chosen = chosen.sort_values(["dataset", "subject_id"])
    if int(v["max_subjects_per_dataset"]) > 0:
        chosen = chosen.groupby("dataset").head(int(v["max_subjects_per_dataset"]))
    rows = chosen[["dataset", "subject_id", "image_nifti", "mask_nifti"]].assign(source="cohort")
    frames = [rows]
    if v["real_spine"]:
        root = real_spine_dir()
        if not root.is_dir():
            notes.append(f"{root}: real spine fixture not found (set MSKSEG_REAL_SPINE); its volumes are not scored")
        else:
            real = real_spine_manifest(root).sort_values("subject_id")
            if int(v["max_real_subjects"]) > 0:
                real = real.head(int(v["max_real_subjects"]))
            frames.append(real.rename(columns={"image_path": "image_nifti", "mask_path": "mask_nifti"})[
                ["dataset", "subject_id", "image_nifti", "mask_nifti"]].assign(source="real"))
    return pd.concat(frames, ignore_index=True)


def volume_sources(volumes: pd.DataFrame) -> dict[str, str]:
    """Dataset -> data source of its volumes: ``synthetic`` (the cohort), ``real`` (the real
    spine fixture) or ``mixed``; from the ``source`` column of :func:`study_volumes`."""
    out = {}
    for dataset, g in volumes.groupby("dataset", sort=True):
        kinds = {"synthetic" if s == "cohort" else "real" for s in g["source"]}
        out[str(dataset)] = kinds.pop() if len(kinds) == 1 else "mixed"
    return out


def sources_of(sources: Mapping[str, str], datasets: Sequence[str]) -> str:
    """One data source for results drawn from ``datasets`` (``mixed`` when they differ)."""
    kinds = {sources.get(str(d), "synthetic") for d in datasets} or {"synthetic"}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def with_data_source(df: pd.DataFrame, sources: Mapping[str, str]) -> pd.DataFrame:
    """``df`` with a ``data_source`` column per row: the source of its ``dataset``; rows whose
    ``source`` column says ``published`` (the anchor) are ``published``; rows without a dataset
    (a model that did not run) take the source of all volumes together."""
    default = sources_of(sources, list(sources))
    col = df["dataset"].astype(str).map(lambda d: sources.get(d, default)) if "dataset" in df else default
    out = df.assign(data_source=col)
    if "source" in out:
        out.loc[out["source"] == "published", "data_source"] = "published"
    return out


@dataclass
class LoadedVolume:
    """One volume ready for the schemes: display-oriented stacks, slices first."""

    spec: DatasetSpec
    slicing: Slicing
    image: np.ndarray  # (N, H, W) uint8
    gt: np.ndarray  # (N, H, W) int16
    values: list[int]  # the structures scored
    names: dict[int, str]
    spacing_mm: tuple[float, float, float]


def structures_of(spec: DatasetSpec, tissues: Sequence[str]) -> list[int]:
    """Label values of the dataset whose tissue class is one of ``tissues``."""
    return [lab.value for lab in spec.labels if lab.tissue_class in set(tissues)]


def display_stack(canonical: np.ndarray, slice_axis: int) -> np.ndarray:
    moved = np.moveaxis(canonical, slice_axis, 0)
    return np.stack([to_display(moved[k]) for k in range(moved.shape[0])])


def canonical_from_display(stack: np.ndarray, slice_axis: int) -> np.ndarray:
    return np.moveaxis(np.stack([from_display(s) for s in stack]), 0, slice_axis)


def load_volume(cfg: Mapping[str, Any], row: Mapping[str, Any]) -> LoadedVolume:
    """Read, reorient to RAS, clip as ``prepare`` does; the manual mask on the same grid."""
    spec = get_dataset(row["dataset"])
    image = raw_io.read_array("nifti", Path(row["image_nifti"]), "image")
    check_finite(image)  # NaN/inf would otherwise surface as a clipping error deep in numpy
    mask = raw_io.read_array("nifti", Path(row["mask_nifti"]), "mask")
    if mask.shape[:3] != image.shape[:3] or not np.allclose(mask.affine, image.affine, atol=1e-3):
        raise DataError(Path(row["mask_nifti"]), f"mask grid {mask.shape} differs from image {image.shape} "
                                                   f"({row['image_nifti']})")
    sl = slicing(image, spec, clip_percentiles(cfg, spec.name), resize_mode_for(cfg))
    gt_canonical = np.asarray(to_canonical(mask).data).astype(np.int16)
    values = [v for v in structures_of(spec, cfg["video3d"]["tissues"]) if (gt_canonical == v).any()]
    if not values:
        raise DataError(Path(row["mask_nifti"]), f"none of the {'/'.join(cfg['video3d']['tissues'])} structures "
                                                   f"of {spec.name} is in the mask")
    spacing = tuple(float(s) for s in np.linalg.norm(sl.canonical.affine[:3, :3], axis=0))
    return LoadedVolume(spec, sl, display_stack(sl.image_u8, sl.slice_axis), display_stack(gt_canonical, sl.slice_axis),
                        values, spec.label_names(), spacing)


def write_display_labels(path: Path, labels_display: np.ndarray, sl: Slicing) -> Path:
    """A display-oriented label stack back on the source's voxel grid, with the source affine."""
    canonical = canonical_from_display(labels_display, sl.slice_axis)
    return write_volume(path, sl.to_source(canonical), sl.source_affine)


def write_prediction(path: Path, labels_display: np.ndarray, vol: LoadedVolume) -> Path:
    """``write_display_labels`` for a study volume."""
    return write_display_labels(path, labels_display, vol.slicing)


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
@dataclass
class VideoModel:
    """A loaded model of the comparison: image segmenter, and the video predictor for SAM2."""

    key: str
    label: str
    segmenter: Segmenter
    predictor: torch.nn.Module | None
    n_params: int
    identity: dict

    @property
    def has_memory(self) -> bool:
        return self.predictor is not None


def model_table(cfg: Mapping[str, Any]) -> pd.DataFrame:
    """Every model of ``video3d.models``: family, size, available or not (and why)."""
    rows = []
    for name in cfg["video3d"]["models"]:
        spec = get_spec(name)
        try:
            path, status, detail = resolve_checkpoint(cfg, name), "available", ""
        except CheckpointMissing as exc:
            path, status, detail = exc.path, NOT_RUN_MISSING, str(exc)
        rows.append({"model_key": name, "model": spec.display_name, "family": spec.family,
                     "architecture": spec.architecture, "input_size_px": spec.input_size_px,
                     "video_predictor": spec.family == "sam2", "status": status, "checkpoint": str(path),
                     "detail": detail})
    return pd.DataFrame(rows)


def load_video_model(cfg: Mapping[str, Any], name: str, device: torch.device | None = None) -> VideoModel:
    """Load one model of the comparison (SAM2: one set of weights for both predictors)."""
    spec = get_spec(name)
    device = device or pick_device(cfg["models"]["device"])
    bf16 = bool(cfg["models"]["autocast_bf16"])
    if spec.family == "sam2":
        predictor, check = load_video_predictor(cfg, name, device)
        seg = image_segmenter(predictor, spec.display_name, bf16)
        return VideoModel(name, spec.display_name, seg, predictor, parameter_count(predictor), dict(check))
    seg = load_model(cfg, name, device, input_normalisation="native")  # the video study used Meta's predictors
    return VideoModel(name, spec.display_name, seg, None, parameter_count(seg.model), dict(seg.checkpoint))


# ----------------------------------------------------------------------------------------------
# one volume
# ----------------------------------------------------------------------------------------------
def run_schemes(model: VideoModel, vol: LoadedVolume, schemes: Sequence[str], carry: Mapping[str, Any],
                offload_setting: str = "auto") -> dict[str, SchemeRun | str]:
    """Every scheme on one volume: {scheme: SchemeRun, or the reason it does not apply}."""
    unknown = sorted(set(schemes) - set(P.SCHEMES))
    if unknown:
        raise ValueError(f"unknown video3d schemes {unknown}; known: {', '.join(P.SCHEMES)}")
    out: dict[str, SchemeRun | str] = {}
    encoder = SliceEncoder(model.segmenter, vol.image, vol.slicing.resize_mode)
    reference = {p.label: p.frame for p in P.single_slice_prompts(vol.gt, vol.values, negatives=False)}
    for scheme in schemes:
        if scheme in P.VIDEO_SCHEMES:
            if not model.has_memory:
                out[scheme] = NOT_APPLICABLE
                continue
            seeds = P.single_slice_prompts(vol.gt, vol.values, negatives=scheme == "points_neg_video")
            offload = choose_offload(offload_setting, model.predictor.device, len(vol.image), len(seeds),
                                     int(model.predictor.image_size))
            out[scheme] = run_video(model.predictor, vol.image, seeds, offload_state_to_cpu=offload,
                                    autocast_bf16=model.segmenter.autocast_bf16)
        elif scheme in P.PER_SLICE_SCHEMES:
            kind = "point" if scheme == "points_per_slice" else "box"
            out[scheme] = run_per_slice(encoder, P.per_slice_prompts(vol.gt, vol.values, kind), reference)
        else:
            kind = "box" if scheme == "box_carry" else "point"
            out[scheme] = run_carry(encoder, P.seed_prompts(vol.gt, vol.values, kind), kind,
                                    margin_px=int(carry["margin_px"]), min_area_px=int(carry["min_area_px"]),
                                    min_area_fraction=float(carry["min_area_fraction"]),
                                    min_consecutive_dice=float(carry["min_consecutive_dice"]))
    return out


def _fingerprint(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StudyResult:
    root: Path
    structures: pd.DataFrame  # (model, scheme, volume, structure incl. "combined", "all_structures"): 3D Dice
    slices: pd.DataFrame  # (model, scheme, volume, structure, slice): slice Dice and offset
    runs: pd.DataFrame  # (model, scheme, volume): status, seconds, encoded slices, volume file
    failed: pd.DataFrame  # (model, volume): the error of a volume that could not be scored


def check_combined_structures(names: Sequence[str]) -> None:
    """Refuse a ``video3d.combined_structures`` entry that names no structure of any known dataset
    (a typo would otherwise shrink the combined Dice to the names that do exist). A dataset
    without the named structures (the spine: no femur or tibia) joins its own, as documented."""
    from mskseg_lib.data.catalog import select_datasets

    known: set[str] = set(REAL_SPINE.label_names().values())
    for spec in select_datasets("all"):
        known |= set(spec.label_names().values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"video3d.combined_structures: {unknown} is not the name of any dataset's structure "
                         f"(known: {', '.join(sorted(known))})")


def run_study(cfg: Mapping[str, Any], volumes: pd.DataFrame, model_keys: Sequence[str] | None = None, *,
              loader: Callable[[Mapping[str, Any], str], VideoModel] = load_video_model,
              progress: bool = True) -> StudyResult:
    """All schemes x available models x volumes; resumes per (model, volume).

    ``model_keys`` defaults to the available models of ``video3d.models``. A volume that cannot
    be read is reported in ``failed`` (file and reason) and the study goes on.
    """
    v = cfg["video3d"]
    check_combined_structures(v["combined_structures"])
    root = study_root(cfg)
    if model_keys is None:
        table = model_table(cfg)
        model_keys = table.loc[table["status"] == "available", "model_key"].tolist()
    schemes = list(v["schemes"])
    device_type = pick_device(cfg["models"]["device"]).type
    holes = hole_filling_available()
    checkpoints = {}
    for key in model_keys:  # the weights file's identity (size, mtime) so swapped weights recompute
        try:
            checkpoints[key] = file_key(resolve_checkpoint(cfg, key))
        except (KeyError, CheckpointMissing):
            checkpoints[key] = None  # a model that is not in the zoo (tests, pipeline checks)
    structures, slices, runs, failed = [], [], [], []
    jobs = [(m, r) for m in model_keys for r in volumes.to_dict("records")]
    loaded: dict[str, VideoModel] = {}
    bar = tqdm(jobs, desc="video3d study", unit="volume", disable=not progress)
    for key, row in bar:
        keys = {"model_key": key, "dataset": row["dataset"], "subject_id": row["subject_id"]}
        folder = root / "scores" / key / row["dataset"]
        done = folder / f"{row['subject_id']}.json"
        fp = _fingerprint({"model": key, "checkpoint": checkpoints.get(key), "schemes": schemes, "carry": v["carry"],
                           "tissues": v["tissues"], "combined": v["combined_structures"], "version": STUDY_VERSION,
                           "clip": clip_percentiles(cfg, row["dataset"]),
                           "resize_mode": resize_mode_for(cfg),
                           "image": file_key(Path(row["image_nifti"])), "mask": file_key(Path(row["mask_nifti"])),
                           "device_type": device_type, "autocast": cfg["models"]["autocast_bf16"],
                           "save_volumes": bool(v["save_volumes"]), "sam2_hole_filling": holes})
        if done.exists() and json.loads(done.read_text()).get("fingerprint") == fp:
            structures.append(pd.read_parquet(folder / f"{row['subject_id']}.structures.parquet"))
            slices.append(pd.read_parquet(folder / f"{row['subject_id']}.slices.parquet"))
            runs.append(pd.read_parquet(folder / f"{row['subject_id']}.runs.parquet").assign(status_run="reused"))
            continue
        bar.set_postfix_str(f"{key} {row['subject_id']}")
        try:
            vol = load_volume(cfg, row)
        except (DataError, OSError, ValueError) as exc:
            failed.append({**keys, "error": str(exc)})
            continue
        if key not in loaded:
            loaded.clear()  # one model in memory at a time: drop the last one before loading
            model = None
            loaded[key] = loader(cfg, key)
        model = loaded[key]
        t0 = time.perf_counter()
        results = run_schemes(model, vol, schemes, v["carry"], v["offload_state"])
        s_parts, sl_parts, r_rows = [], [], []
        for scheme, res in results.items():
            base = {"model": model.label, **keys, "scheme": scheme}
            if isinstance(res, str):
                r_rows.append({**base, "status": res, "seconds": np.nan, "encoded_slices": 0, "volume_nifti": ""})
                continue
            path = ""
            if v["save_volumes"]:
                path = str(write_prediction(root / "volumes" / key / scheme / f"{row['subject_id']}.nii.gz", res.labels, vol))
            s_rows = structure_scores(res.labels, vol.gt, vol.values, vol.names, vol.spacing_mm,
                                      combined=tuple(v["combined_structures"]))
            s_rows["prompt_slice"] = [res.prompt_slices.get(int(lab), -1) for lab in s_rows["label"]]
            s_rows = s_rows.assign(seconds=res.seconds, n_params=model.n_params)
            for col, val in reversed(list(base.items())):
                s_rows.insert(0, col, val)
            s_parts.append(s_rows)
            sl_rows = slice_scores(res.labels, vol.gt, vol.values, vol.names, res.prompt_slices)
            for col, val in reversed(list(base.items())):
                sl_rows.insert(0, col, val)
            sl_parts.append(sl_rows)
            r_rows.append({**base, "status": "scored", "seconds": res.seconds, "encoded_slices": res.encoded_slices,
                           "volume_nifti": path})
        s_df = pd.concat(s_parts, ignore_index=True) if s_parts else pd.DataFrame()
        sl_df = pd.concat(sl_parts, ignore_index=True) if sl_parts else pd.DataFrame()
        r_df = pd.DataFrame(r_rows)
        atomic.save_parquet(s_df, folder / f"{row['subject_id']}.structures.parquet")
        atomic.save_parquet(sl_df, folder / f"{row['subject_id']}.slices.parquet")
        atomic.save_parquet(r_df, folder / f"{row['subject_id']}.runs.parquet")
        atomic.write_json(done, {"fingerprint": fp, "model": key, "identity": model.identity, "n_params": model.n_params,
                                 "seconds_total": time.perf_counter() - t0, "n_slices": int(len(vol.image)),
                                 "structures": vol.values,
                                 "config": {k: v[k] for k in ("schemes", "carry", "tissues", "combined_structures")},
                                 "seed": cfg["seed"], "versions": collect_versions()})
        structures.append(s_df)
        slices.append(sl_df)
        runs.append(r_df.assign(status_run="computed"))
    cat = (lambda parts: pd.concat([p for p in parts if not p.empty], ignore_index=True)
           if any(not p.empty for p in parts) else pd.DataFrame())
    return StudyResult(root, cat(structures), cat(slices), cat(runs), pd.DataFrame(failed))


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------
def median_table(structures: pd.DataFrame) -> pd.DataFrame:
    """Median 3D Dice per (dataset, model, scheme) for each structure, ``combined`` (the study's
    femur + tibia union) and ``all_structures`` (columns), with what ``combined`` joined,
    parameter count, median seconds per volume and the number of volumes."""
    if structures.empty:
        return pd.DataFrame()
    keys = ["dataset", "model", "scheme"]
    wide = structures.pivot_table(index=keys, columns="structure", values="dice", aggfunc="median")
    unions = [c for c in (COMBINED, ALL_STRUCTURES) if c in wide.columns]
    by_label = structures[structures["label"] != 0].drop_duplicates("structure").sort_values("label")["structure"] \
        if "label" in structures else pd.Series(dtype=str)
    singles = [c for c in by_label if c in wide.columns] + sorted(c for c in wide.columns
                                                                 if c not in unions and c not in set(by_label))
    wide = wide[singles + unions]  # structures in label order (femur, tibia, patella), then the unions
    combined = structures[structures["structure"] == COMBINED]
    agg = {"n_volumes": ("subject_id", "nunique"), "n_params": ("n_params", "first"),
           "seconds_per_volume": ("seconds", "median")}
    if "union_of" in combined:
        agg["combined_of"] = ("union_of", lambda s: "; ".join(sorted(set(map(str, s)))))
    extra = combined.groupby(keys).agg(**agg)
    order = {s: i for i, s in enumerate(P.SCHEMES)}
    out = wide.join(extra).reset_index()
    return out.sort_values(["dataset", "model", "scheme"], key=lambda c: c.map(order) if c.name == "scheme" else c) \
              .reset_index(drop=True)


def _structure_names(text: str) -> list[str]:
    """'femur and tibia' / 'femur, tibia' -> ['femur', 'tibia']."""
    return [w.strip() for w in str(text).replace(" and ", ",").split(",") if w.strip()]


def anchor_table(structures: pd.DataFrame, published: pd.DataFrame, model_table_: pd.DataFrame) -> pd.DataFrame:
    """The published anchor beside the regenerated medians of the same scheme.

    One row per published finding, then one per (dataset, SAM2 model) regenerated with that
    scheme, or one row per SAM2 model saying why it was not run. The anchor is SAM2's, so other
    models' numbers stay in table X07b rather than appearing beside it.

    The compared number is, as in the study, the median over volumes of the ``combined`` 3D Dice:
    the Dice of the union of the published structures (femur and tibia, patella left out). Where
    a dataset's ``combined`` joined other structures (the spine's vertebral bodies) the row says
    so in ``note``. ``median_3d_dice_<structure>`` columns give the per-structure medians of the
    published structures beside it (the study also reports femur only and tibia only; the
    reference file holds only the combined number, so the published row leaves them empty).
    """
    rows = []
    sam2_keys = set(model_table_.loc[model_table_["family"] == "sam2", "model_key"])
    if not structures.empty:
        structures = structures[structures["model_key"].isin(sam2_keys)]
    for _, pub in published.iterrows():
        wanted = _structure_names(pub["structures"])
        per_cols = {f"median_3d_dice_{w}": np.nan for w in wanted}
        rows.append({"source": "published", "scheme": pub["scheme"], "model": "SAM2 (study)", "dataset": pub["dataset"],
                     "structures": pub["structures"], "n_volumes": int(pub["n_volumes"]),
                     "median_3d_dice": pub["dice"], **per_cols, "note": pub["note"]})
        done = structures[structures["scheme"] == pub["scheme"]] if not structures.empty else structures
        for (dataset, model), g in (done.groupby(["dataset", "model"]) if not done.empty else []):
            comb = g[g["structure"] == COMBINED]
            joined = sorted({n for s in comb.get("union_of", pd.Series(dtype=str)) for n in _structure_names(s)})
            if joined == sorted(wanted):
                note = f"combined = 3D Dice of the union of {' and '.join(wanted)} (the study's definition)"
            else:
                note = f"different structures: combined = union of this dataset's {', '.join(joined) or 'structures'}"
            per = {f"median_3d_dice_{w}": float(g.loc[g["structure"] == w, "dice"].median())
                   if (g["structure"] == w).any() else np.nan for w in wanted}
            rows.append({"source": "regenerated", "scheme": pub["scheme"], "model": model, "dataset": dataset,
                         "structures": ", ".join(joined), "n_volumes": int(g["subject_id"].nunique()),
                         "median_3d_dice": float(comb["dice"].median()) if len(comb) else np.nan, **per, "note": note})
        if pub["scheme"] in P.VIDEO_SCHEMES:
            for _, m in model_table_[model_table_["video_predictor"] & (model_table_["status"] != "available")].iterrows():
                rows.append({"source": "regenerated", "scheme": pub["scheme"], "model": m["model"], "dataset": "",
                             "structures": "", "n_volumes": 0, "median_3d_dice": np.nan, **per_cols, "note": m["status"]})
    return pd.DataFrame(rows)


def example_stacks(result: StudyResult, volumes: pd.DataFrame, cfg: Mapping[str, Any],
                   prefer: Sequence[str] = ("points_neg_video", "point_video", "box_carry")) -> dict[str, Any] | None:
    """Image, manual and predicted stacks of the first volume for the first scored scheme in
    ``prefer`` (from the predicted NIfTI written by the study), with its prompted slice."""
    if result.runs.empty:
        return None
    scored = result.runs[(result.runs["status"] == "scored") & (result.runs["volume_nifti"].astype(str) != "")]
    for scheme in prefer:
        pick = scored[scored["scheme"] == scheme]
        if pick.empty:
            continue
        run = pick.iloc[0]
        row = volumes[(volumes["dataset"] == run["dataset"]) & (volumes["subject_id"] == run["subject_id"])].iloc[0]
        vol = load_volume(cfg, row)
        pred_vol = to_canonical(raw_io.read_array("nifti", Path(run["volume_nifti"]), "prediction"))
        pred = display_stack(np.asarray(pred_vol.data).astype(np.int16), vol.slicing.slice_axis)
        s = result.structures
        prompt = int(s[(s["model_key"] == run["model_key"]) & (s["scheme"] == scheme) & (s["subject_id"] == run["subject_id"])
                       & (s["label"] != 0)]["prompt_slice"].mode().iloc[0])
        return {"image": vol.image, "gt": np.where(np.isin(vol.gt, vol.values), vol.gt, 0), "pred": pred,
                "prompt_slice": prompt, "model": run["model"], "scheme": scheme, "dataset": run["dataset"],
                "subject_id": run["subject_id"], "names": {v: vol.names[v] for v in vol.values}}
    return None
