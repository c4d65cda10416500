"""Notebook 07: prompt schemes and model sizes for whole 3D volumes, slices as frames.

For each volume (the knee sets of the cohort with femur, tibia and patella on sagittal slices,
and the real lumbar spine fixture with its vertebral bodies), each available model and each
scheme (:data:`mskseg_lib.video3d.prompts.SCHEMES`):

* SAM2 models (hiera tiny / small / base-plus / large, wherever a checkpoint is configured) run
  all schemes: the per-slice ones through the image predictor and the video ones through the
  video predictor, from the same weights.
* Image-only models (LiteMedSAM, SAM, MedSAM) run the per-slice and the carrying schemes; the
  video schemes need memory they do not have and are listed as not applicable.

Prompts come from the manual mask (evaluation). Structures are the labels of the settings'
``tissues`` (bone: femur, tibia, patella; vertebral bodies). Each volume is scored with 3D Dice per
structure, ``combined`` (the union of the ``combined_structures``: the study's femur and
tibia; the spine, which has neither, joins its vertebral bodies), ``all_structures`` (every
scored structure, patella included: a labelled extra), and with slice Dice against the offset
from the prompted slice.

Per (model, volume) the scores are stored under ``<root>/scores`` (the profile's root is
``<runs_dir>/video3d/<tag>``) with a fingerprint of everything that shapes them, so a rerun
resumes and a changed setting recomputes.
Predicted volumes are written as NIfTI on the source's grid with its affine.
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mskseg_lib import atomic
from mskseg_lib.autolabel.pipeline import Slicing, file_key, slicing
from mskseg_lib.autolabel.study import select_subjects
from mskseg_lib.data import raw_io
from mskseg_lib.data.bad_inputs import SkippedInputs, check_on_bad_input, empty_skipped
from mskseg_lib.data.catalog import DatasetSpec, get_dataset
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.prepare import PrepareSettings
from mskseg_lib.data.preprocess import display_stack, volume_from_display
from mskseg_lib.data.sources import real_spine_manifest
from mskseg_lib.data.volume import check_finite, to_canonical
from mskseg_lib.errors import UserError
from mskseg_lib.evaluation.embedding_cache import EmbeddingCache
from mskseg_lib.evaluation.volumes import write_volume
from mskseg_lib.models.checkpoints import CheckpointMissing, resolve_checkpoint
from mskseg_lib.models.interface import Segmenter, pick_device
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.models.zoo import NOT_RUN_MISSING, load_model
from mskseg_lib.provenance import collect_versions, fingerprint
from mskseg_lib.video3d import prompts as P
from mskseg_lib.video3d.predictor import (
    choose_offload,
    hole_filling_available,
    image_segmenter,
    load_video_predictor,
    parameter_count,
)
from mskseg_lib.video3d.propagate import CarrySettings, SchemeRun, SliceEncoder, run_carry, run_per_slice, run_video
from mskseg_lib.video3d.scoring import ALL_STRUCTURES, COMBINED, slice_scores, structure_scores

#: bumped when a change here or in the engines changes the scores (part of every fingerprint)
STUDY_VERSION = 3  # 3: "combined" = union of femur and tibia (was: every scored structure)
NOT_APPLICABLE = "not applicable: no memory (image-only model)"
OFFLOAD_SETTINGS = ("auto", "always", "never")


class Video3dSettingsError(UserError, ValueError):
    """A video3d setting names a scheme, structure or offload mode that does not exist."""


def check_combined_structures(names: Sequence[str]) -> None:
    """Refuse a ``video3d.combined_structures`` entry that names no structure of any known dataset
    (a typo would otherwise shrink the combined Dice to the names that do exist). A dataset
    without the named structures (the spine: no femur or tibia) joins its own, as documented."""
    from mskseg_lib.data.catalog import known_datasets

    known: set[str] = set()
    for spec in known_datasets():  # the study's, the real spine, the examples and the site's cards
        known |= set(spec.label_names().values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise Video3dSettingsError(f"video3d.combined_structures: {unknown} is not the name of any dataset's "
                                   f"structure (known: {', '.join(sorted(known))})")


@dataclass(frozen=True)
class Video3dSettings:
    """How notebook 07 prompts, propagates and scores each volume; the defaults are the study's.

    * ``schemes``: the prompt schemes to run (:data:`mskseg_lib.video3d.prompts.SCHEMES`);
    * ``carry``: when carrying stops (image-only models);
    * ``tissues``: the structures scored are the labels of these tissue classes (bone);
    * ``combined_structures``: ``combined`` is the 3D Dice of their union (the study's femur
      and tibia; a dataset with none of them joins its own structures);
    * ``offload_state``: SAM2's tracking state on the CPU: ``auto`` (CUDA, when short of
      memory), ``always`` or ``never``;
    * ``save_volumes``: write each predicted label volume as NIfTI;
    * ``prepare``: how ``prepare`` clipped and resized (the volumes are sliced the same way).
    """

    schemes: tuple[str, ...] = tuple(P.SCHEMES)
    carry: CarrySettings = CarrySettings()
    tissues: tuple[str, ...] = ("bone",)
    combined_structures: tuple[str, ...] = ("femur", "tibia")
    offload_state: str = "auto"
    save_volumes: bool = True
    prepare: PrepareSettings = PrepareSettings()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.schemes) - set(P.SCHEMES))
        if unknown:
            raise Video3dSettingsError(f"unknown video3d schemes {unknown}; known: {', '.join(P.SCHEMES)}")
        if self.offload_state not in OFFLOAD_SETTINGS:
            raise Video3dSettingsError(f"offload_state must be one of {OFFLOAD_SETTINGS}, got {self.offload_state!r}")
        check_combined_structures(self.combined_structures)

    def config_record(self) -> dict[str, Any]:
        """The settings each volume's record keeps (the profile's layout)."""
        return {"schemes": list(self.schemes), "carry": self.carry.as_record(), "tissues": list(self.tissues),
                "combined_structures": list(self.combined_structures)}


# ----------------------------------------------------------------------------------------------
# volumes
# ----------------------------------------------------------------------------------------------
def study_volumes(subjects: pd.DataFrame, datasets: Sequence[str] | str, splits: Sequence[str] | str = "test",
                  max_per_dataset: int = 0, *, real_spine: Path | None = None, max_real_subjects: int = 0,
                  notes: list[str] | None = None) -> pd.DataFrame:
    """The volumes of notebook 07: prepared subjects (cohort or site), then the real spine fixture.

    Parameters
    ----------
    subjects : ``subjects.parquet`` of the prepared data.
    datasets : cohort datasets (the sagittal 3D knee sets), or ``"all"``.
    splits : a split, a list of them, or ``"all"``.
    max_per_dataset : the first N subjects of each dataset; 0 = all.
    real_spine : the real lumbar spine fixture's folder, or None to leave it out; a folder that
        does not exist adds a line to ``notes`` instead of volumes.
    max_real_subjects : the first N real volumes; 0 = all.
    notes : a list the function appends its remarks to.

    Returns
    -------
    DataFrame with columns dataset, subject_id, image_nifti, mask_nifti and source
    (``cohort`` for the synthetic cohort's subjects, ``real`` for a site manifest's and the real
    spine fixture's).
    """
    notes = [] if notes is None else notes
    chosen = select_subjects(subjects, datasets, splits, max_per_dataset, setting="video3d.datasets")
    # prepared subjects: the synthetic cohort's, or real ones from a site manifest
    kind = (chosen["source"].map(lambda s: "cohort" if s == "synthetic" else "real") if "source" in chosen
            else "cohort")
    frames = [chosen[["dataset", "subject_id", "image_nifti", "mask_nifti"]].assign(source=kind)]
    if real_spine is not None:
        root = Path(real_spine)
        if not root.is_dir():
            notes.append(f"{root}: real spine fixture not found (set MSKSEG_REAL_SPINE); its volumes are not scored")
        else:
            real = real_spine_manifest(root).sort_values("subject_id")
            if int(max_real_subjects) > 0:
                real = real.head(int(max_real_subjects))
            frames.append(real.rename(columns={"image_path": "image_nifti", "mask_path": "mask_nifti"})[
                ["dataset", "subject_id", "image_nifti", "mask_nifti"]].assign(source="real"))
    return pd.concat(frames, ignore_index=True)


def volume_sources(volumes: pd.DataFrame) -> dict[str, str]:
    """Dataset -> data source of its volumes: ``synthetic`` (the cohort), ``real`` (a site
    manifest, the real spine fixture) or ``mixed``; from the ``source`` column of :func:`study_volumes`."""
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


def load_volume(row: Mapping[str, Any], settings: Video3dSettings = Video3dSettings()) -> LoadedVolume:
    """Read, reorient to RAS, clip as ``prepare`` does; the manual mask on the same grid.

    Parameters
    ----------
    row : a row of :func:`study_volumes` (dataset, image_nifti, mask_nifti).
    settings : ``tissues`` (the structures scored) and ``prepare`` (clipping, resize mode).

    Returns
    -------
    LoadedVolume: display-oriented (N, H, W) image and mask stacks, the structures present, the
    voxel spacing in mm. Raises ``DataError`` naming the file for a missing or unreadable file,
    an image that is not 3D, NaN voxels, a mask on another grid, or a mask without any of the
    structures.
    """
    spec = get_dataset(row["dataset"])
    image = raw_io.read_array("nifti", Path(row["image_nifti"]), "image")
    if image.data.ndim != 3:
        raise DataError(Path(row["image_nifti"]), f"image has shape {image.shape}; expected a 3D volume")
    check_finite(image)  # NaN/inf would otherwise surface as a clipping error deep in numpy
    mask = raw_io.read_array("nifti", Path(row["mask_nifti"]), "mask")
    if mask.shape[:3] != image.shape[:3] or not np.allclose(mask.affine, image.affine, atol=1e-3):
        raise DataError(Path(row["mask_nifti"]), f"mask grid {mask.shape} differs from image {image.shape} "
                                                   f"({row['image_nifti']})")
    sl = slicing(image, spec, settings.prepare.clip_percentiles_for(spec.name), settings.prepare.resize_mode)
    gt_canonical = np.asarray(to_canonical(mask).data).astype(np.int16)
    values = [v for v in structures_of(spec, settings.tissues) if (gt_canonical == v).any()]
    if not values:
        raise DataError(Path(row["mask_nifti"]), f"none of the {'/'.join(settings.tissues)} structures "
                                                   f"of {spec.name} is in the mask")
    spacing = tuple(float(s) for s in np.linalg.norm(sl.canonical.affine[:3, :3], axis=0))
    return LoadedVolume(spec, sl, display_stack(sl.image_u8, sl.slice_axis), display_stack(gt_canonical, sl.slice_axis),
                        values, spec.label_names(), spacing)


def write_display_labels(path: Path, labels_display: np.ndarray, sl: Slicing,
                         labels: Mapping[int, str] | None = None) -> Path:
    """A display-oriented label stack back on the source's voxel grid, with the source affine.

    With ``labels`` (value -> name) the ITK-SNAP and 3D Slicer label tables go beside it.
    """
    canonical = volume_from_display(labels_display, sl.slice_axis)
    return write_volume(path, sl.to_source(canonical), sl.source_affine, labels)


def write_prediction(path: Path, labels_display: np.ndarray, vol: LoadedVolume) -> Path:
    """``write_display_labels`` for a study volume, with the dataset's label tables beside it."""
    return write_display_labels(path, labels_display, vol.slicing, vol.spec.label_names())


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


def model_table(model_keys: Sequence[str], models: ModelSettings | None = None) -> pd.DataFrame:
    """Each zoo model of the comparison: family, size, available or not (and why).

    Parameters
    ----------
    model_keys : zoo names (SAM2 sizes and image-only models).
    models : where the zoo's weights are (default ``ModelSettings()``).

    Returns
    -------
    DataFrame, one row per model: model_key, model, family, architecture, input_size_px,
    video_predictor (SAM2), status (``available`` or why not), checkpoint, detail.
    """
    models = models or ModelSettings()
    rows = []
    for name in model_keys:
        spec = get_spec(name)
        try:
            path, status, detail = resolve_checkpoint(name, models), "available", ""
        except CheckpointMissing as exc:
            path, status, detail = exc.path, NOT_RUN_MISSING, str(exc)
        rows.append({"model_key": name, "model": spec.display_name, "family": spec.family,
                     "architecture": spec.architecture, "input_size_px": spec.input_size_px,
                     "video_predictor": spec.family == "sam2", "status": status, "checkpoint": str(path),
                     "detail": detail})
    return pd.DataFrame(rows)


def load_video_model(name: str, models: ModelSettings | None = None, device: torch.device | None = None) -> VideoModel:
    """Load one zoo model of the comparison (SAM2: one set of weights for both predictors).

    Parameters
    ----------
    name : zoo name.
    models : where the weights are and how they run (default ``ModelSettings()``).
    device : overrides ``models.device``.

    Returns
    -------
    VideoModel; image-only models get their native encoder input (the video study used Meta's
    predictors).
    """
    models = models or ModelSettings()
    spec = get_spec(name)
    device = device or pick_device(models.device)
    if spec.family == "sam2":
        predictor, check = load_video_predictor(name, models, device)
        seg = image_segmenter(predictor, spec.display_name, bool(models.autocast_bf16))
        return VideoModel(name, spec.display_name, seg, predictor, parameter_count(predictor), dict(check))
    seg = load_model(name, models, device, input_normalisation="native")
    return VideoModel(name, spec.display_name, seg, None, parameter_count(seg.model), dict(seg.checkpoint))


# ----------------------------------------------------------------------------------------------
# one volume
# ----------------------------------------------------------------------------------------------
def run_schemes(model: VideoModel, vol: LoadedVolume, schemes: Sequence[str],
                carry: CarrySettings = CarrySettings(), offload_setting: str = "auto",
                cache: EmbeddingCache | None = None) -> dict[str, SchemeRun | str]:
    """Every scheme on one volume: {scheme: SchemeRun, or the reason it does not apply}.

    Parameters
    ----------
    model : the loaded model (a SAM2 model runs the video schemes with its video predictor).
    vol : the volume (:func:`load_volume`).
    schemes : names from :data:`mskseg_lib.video3d.prompts.SCHEMES`.
    carry : when carrying stops.
    offload_setting : ``auto``, ``always`` or ``never`` (SAM2's tracking state on the CPU).
    cache : the embedding store; image-only models read slices other stages encoded (by content).

    Returns
    -------
    dict scheme -> SchemeRun ((N, H, W) labels, prompted slices, seconds), or a string saying
    why the scheme does not apply to the model.
    """
    unknown = sorted(set(schemes) - set(P.SCHEMES))
    if unknown:
        raise Video3dSettingsError(f"unknown video3d schemes {unknown}; known: {', '.join(P.SCHEMES)}")
    out: dict[str, SchemeRun | str] = {}
    encoder = SliceEncoder(model.segmenter, vol.image, vol.slicing.resize_mode, cache)
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
            out[scheme] = run_carry(encoder, P.seed_prompts(vol.gt, vol.values, kind), kind, **carry.as_record())
    return out


def _fingerprint(payload: Mapping[str, Any]) -> str:
    return fingerprint(payload)


@dataclass
class StudyResult:
    root: Path
    structures: pd.DataFrame  # (model, scheme, volume, structure incl. "combined", "all_structures"): 3D Dice
    slices: pd.DataFrame  # (model, scheme, volume, structure, slice): slice Dice and offset
    runs: pd.DataFrame  # (model, scheme, volume): status, seconds, encoded slices, volume file
    failed: pd.DataFrame  # (model, volume): the error of a volume that could not be scored
    skipped: pd.DataFrame = field(default_factory=empty_skipped)  # volumes left out: file and problem


def _checkpoint_keys(model_keys: Sequence[str], models: ModelSettings) -> dict[str, str | None]:
    """Each model's weights file identity (size, mtime), so swapped weights recompute."""
    out: dict[str, str | None] = {}
    for key in model_keys:
        try:
            out[key] = file_key(resolve_checkpoint(key, models))
        except (KeyError, CheckpointMissing):
            out[key] = None  # a model that is not in the zoo (tests, pipeline checks)
    return out


def _volume_fingerprint(key: str, checkpoint: str | None, row: Mapping[str, Any], settings: Video3dSettings,
                        models: ModelSettings, holes: bool) -> str:
    """Everything that shapes one (model, volume)'s scores; a change recomputes them."""
    return _fingerprint({"model": key, "checkpoint": checkpoint, "schemes": list(settings.schemes),
                         "carry": settings.carry.as_record(), "tissues": list(settings.tissues),
                         "combined": list(settings.combined_structures), "version": STUDY_VERSION,
                         "clip": settings.prepare.clip_percentiles_for(row["dataset"]),
                         "resize_mode": settings.prepare.resize_mode,
                         "image": file_key(Path(row["image_nifti"])), "mask": file_key(Path(row["mask_nifti"])),
                         "device_type": pick_device(models.device).type, "autocast": models.autocast_bf16,
                         "save_volumes": bool(settings.save_volumes), "sam2_hole_filling": holes})


_PARTS = ("structures", "slices", "runs")


def _stored(folder: Path, subject_id: str, fp: str) -> list[pd.DataFrame] | None:
    """The stored (structures, slices, runs) of a volume finished with fingerprint ``fp``."""
    done = folder / f"{subject_id}.json"
    if not (done.exists() and json.loads(done.read_text()).get("fingerprint") == fp):
        return None
    return [pd.read_parquet(folder / f"{subject_id}.{part}.parquet") for part in _PARTS]


def _with_keys(df: pd.DataFrame, keys: Mapping[str, Any]) -> pd.DataFrame:
    """``df`` with the key columns in front, in ``keys``' order."""
    for col, val in reversed(list(keys.items())):
        df.insert(0, col, val)
    return df


def _volume_path(root: Path, model_key: str, subject_id: str, scheme: str) -> Path:
    """Where a scheme's predicted volume of one subject is written."""
    return root / "volumes" / model_key / scheme / f"{subject_id}.nii.gz"


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty frames stacked (an empty frame when there are none)."""
    kept = [p for p in parts if not p.empty]
    return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()


def _score_schemes(results: Mapping[str, SchemeRun | str], model: VideoModel, vol: LoadedVolume,
                   keys: Mapping[str, Any], settings: Video3dSettings,
                   volume_path: Callable[[str], Path]) -> list[pd.DataFrame]:
    """(structures, slices, runs) of one volume's scheme runs; predictions written when asked."""
    s_parts, sl_parts, r_rows = [], [], []
    for scheme, res in results.items():
        base = {"model": model.label, **keys, "scheme": scheme}
        if isinstance(res, str):
            r_rows.append({**base, "status": res, "seconds": np.nan, "encoded_slices": 0, "volume_nifti": ""})
            continue
        path = str(write_prediction(volume_path(scheme), res.labels, vol)) if settings.save_volumes else ""
        s_rows = structure_scores(res.labels, vol.gt, vol.values, vol.names, vol.spacing_mm,
                                  combined=tuple(settings.combined_structures))
        s_rows["prompt_slice"] = [res.prompt_slices.get(int(lab), -1) for lab in s_rows["label"]]
        s_parts.append(_with_keys(s_rows.assign(seconds=res.seconds, n_params=model.n_params), base))
        sl_parts.append(_with_keys(slice_scores(res.labels, vol.gt, vol.values, vol.names, res.prompt_slices), base))
        r_rows.append({**base, "status": "scored", "seconds": res.seconds, "encoded_slices": res.encoded_slices,
                       "volume_nifti": path})
    return [pd.concat(s_parts, ignore_index=True) if s_parts else pd.DataFrame(),
            pd.concat(sl_parts, ignore_index=True) if sl_parts else pd.DataFrame(), pd.DataFrame(r_rows)]


def _store(folder: Path, subject_id: str, parts: Sequence[pd.DataFrame], record: Mapping[str, Any]) -> None:
    """The volume's tables, then its JSON record (with the fingerprint) last."""
    for part, df in zip(_PARTS, parts):
        atomic.save_parquet(df, folder / f"{subject_id}.{part}.parquet")
    atomic.write_json(folder / f"{subject_id}.json", dict(record))


class _OneModelAtATime:
    """Loads a model when first asked for it, dropping the previous one first."""

    def __init__(self, loader: Callable[[str], VideoModel]) -> None:
        self.loader, self.key, self.model = loader, None, None

    def __call__(self, key: str) -> VideoModel:
        if self.key != key:
            self.key, self.model = None, None  # one model in memory at a time
            self.model, self.key = self.loader(key), key
        return self.model


def run_study(root: Path, volumes: pd.DataFrame, model_keys: Sequence[str],
              settings: Video3dSettings = Video3dSettings(), *, models: ModelSettings | None = None,
              loader: Callable[[str], VideoModel] | None = None, seed: int | None = None,
              progress: bool = True, cache_dir: Path | None = None, on_bad_input: str = "skip") -> StudyResult:
    """All schemes x models x volumes; resumes per (model, volume).

    Each (model, volume) is stored under ``root/scores/<model>/<dataset>/`` with a fingerprint of
    everything that shapes it (a rerun reuses it, a changed setting recomputes it); predicted
    label volumes go to ``root/volumes/<model>/<scheme>/``. A volume whose image or mask is
    missing, unreadable or malformed (``DataError``) is reported in ``failed`` and ``skipped``
    (file and problem; also ``root/skipped.csv``) and the study goes on; it stores nothing, so a
    rerun tries it again. Any other error stops the study.

    Parameters
    ----------
    root : the study's run folder (the profile's ``<runs_dir>/video3d/<tag>``).
    volumes : rows of :func:`study_volumes`.
    model_keys : the models to run (zoo names, unless ``loader`` knows others).
    settings : schemes, carrying, structures, offload, clipping.
    models : where the zoo's weights are and how they run (default ``ModelSettings()``).
    loader : key -> VideoModel, instead of :func:`load_video_model` (tests, random models).
    seed : recorded with each volume (provenance); nothing here is random.
    progress : a progress bar over (model, volume).
    cache_dir : the run's embedding store (``evaluation.embedding_cache``): image-only models read
        the embeddings of slices another stage encoded (same model, same pixels) instead of encoding.
    on_bad_input : ``"skip"`` (list a bad volume and go on) or ``"raise"`` (its ``DataError`` stops
        the study).

    Returns
    -------
    StudyResult: ``structures`` (3D Dice per structure, ``combined`` and ``all_structures``),
    ``slices`` (slice Dice and offset from the prompted slice), ``runs`` (status, seconds,
    encoded slices, NIfTI path; ``status_run`` computed or reused), ``failed``, ``skipped``.
    """
    root = Path(root)
    models = models or ModelSettings()
    cache = EmbeddingCache(Path(cache_dir)) if cache_dir is not None else None
    load = _OneModelAtATime(loader or (lambda key: load_video_model(key, models)))
    holes = hole_filling_available()
    checkpoints = _checkpoint_keys(model_keys, models)
    skipped = SkippedInputs("video3d", check_on_bad_input(on_bad_input))
    structures, slices, runs, failed = [], [], [], []
    jobs = [(m, r) for m in model_keys for r in volumes.to_dict("records")]
    bar = tqdm(jobs, desc="video3d study", unit="volume", disable=not progress)
    for key, row in bar:
        sid = str(row["subject_id"])
        keys = {"model_key": key, "dataset": row["dataset"], "subject_id": row["subject_id"]}
        folder = root / "scores" / key / row["dataset"]
        try:  # reading this volume's files: a bad one is listed, the others go on
            fp = _volume_fingerprint(key, checkpoints.get(key), row, settings, models, holes)
            parts = _stored(folder, sid, fp)
            vol = load_volume(row, settings) if parts is None else None
        except DataError as exc:
            if skipped.on_bad_input != "skip":
                raise
            skipped.add(row["dataset"], sid, exc)
            failed.append({**keys, "error": str(exc)})
            continue
        if parts is not None:
            structures.append(parts[0])
            slices.append(parts[1])
            runs.append(parts[2].assign(status_run="reused"))
            continue
        bar.set_postfix_str(f"{key} {sid}")
        model = load(key)
        t0 = time.perf_counter()
        results = run_schemes(model, vol, settings.schemes, settings.carry, settings.offload_state, cache)
        parts = _score_schemes(results, model, vol, keys, settings,
                               functools.partial(_volume_path, root, key, sid))
        _store(folder, sid, parts, {"fingerprint": fp, "model": key, "identity": model.identity,
                                    "n_params": model.n_params, "seconds_total": time.perf_counter() - t0,
                                    "n_slices": int(len(vol.image)), "structures": vol.values,
                                    "config": settings.config_record(), "seed": seed, "versions": collect_versions()})
        structures.append(parts[0])
        slices.append(parts[1])
        runs.append(parts[2].assign(status_run="computed"))
    skipped.save(root)
    return StudyResult(root, _concat(structures), _concat(slices), _concat(runs), pd.DataFrame(failed),
                       skipped.table())


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


def example_stacks(result: StudyResult, volumes: pd.DataFrame, settings: Video3dSettings = Video3dSettings(),
                   prefer: Sequence[str] = ("points_neg_video", "point_video", "box_carry")) -> dict[str, Any] | None:
    """Image, manual and predicted stacks of the first volume for the first scored scheme in
    ``prefer`` (from the predicted NIfTI written by the study), with its prompted slice.

    Parameters
    ----------
    result : what :func:`run_study` returned (with ``save_volumes`` on).
    volumes : the volumes it ran on.
    settings : the study's settings (structures, clipping).
    prefer : schemes in order of preference.

    Returns
    -------
    dict with ``image``, ``gt`` (scored structures only) and ``pred`` (N, H, W) display stacks,
    ``prompt_slice``, ``model``, ``scheme``, ``dataset``, ``subject_id``, ``names``; None when no
    preferred scheme wrote a volume.
    """
    if result.runs.empty:
        return None
    scored = result.runs[(result.runs["status"] == "scored") & (result.runs["volume_nifti"].astype(str) != "")]
    for scheme in prefer:
        pick = scored[scored["scheme"] == scheme]
        if pick.empty:
            continue
        run = pick.iloc[0]
        row = volumes[(volumes["dataset"] == run["dataset"]) & (volumes["subject_id"] == run["subject_id"])].iloc[0]
        vol = load_volume(row, settings)
        pred_vol = to_canonical(raw_io.read_array("nifti", Path(run["volume_nifti"]), "prediction"))
        pred = display_stack(np.asarray(pred_vol.data).astype(np.int16), vol.slicing.slice_axis)
        s = result.structures
        prompt = int(s[(s["model_key"] == run["model_key"]) & (s["scheme"] == scheme) & (s["subject_id"] == run["subject_id"])
                       & (s["label"] != 0)]["prompt_slice"].mode().iloc[0])
        return {"image": vol.image, "gt": np.where(np.isin(vol.gt, vol.values), vol.gt, 0), "pred": pred,
                "prompt_slice": prompt, "model": run["model"], "scheme": scheme, "dataset": run["dataset"],
                "subject_id": run["subject_id"], "names": {v: vol.names[v] for v in vol.values}}
    return None
