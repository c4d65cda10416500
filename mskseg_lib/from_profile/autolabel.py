"""A profile's ``autolabel`` section as AutoLabel's arguments (notebook 06, ``mskseg train-detector``,
``mskseg autolabel``).

Folders: the detectors live in ``<runs_dir>/autolabel/detectors``, notebook 06's study in
``<runs_dir>/autolabel/<autolabel.tag>``. Settings: ``autolabel.detector`` ->
:class:`~mskseg_lib.autolabel.detector.DetectorSettings`, ``autolabel.postprocess`` ->
:class:`~mskseg_lib.autolabel.postprocess.PostprocessSettings`, with ``prepare`` (clipping,
resize) and ``models`` (encoder batch) -> the pipeline's and the study's settings. Values are
passed as the profile writes them, so results keep their fingerprints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from mskseg_lib.autolabel.detector import DetectorSettings, trained_detector
from mskseg_lib.autolabel.models import study_models as _study_models
from mskseg_lib.autolabel.pipeline import AutolabelSettings
from mskseg_lib.autolabel.postprocess import PostprocessSettings
from mskseg_lib.autolabel.study import StudyModel, StudySettings, select_subjects
from mskseg_lib.config import ProfileError, resolve_path
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.from_profile.data import prepare_settings, prepared_dir
from mskseg_lib.from_profile.models import model_settings

__all__ = ["autolabel_root", "detectors_dir", "detector_settings", "postprocess_settings", "autolabel_settings",
           "study_settings", "study_root", "study_subjects", "study_models", "detector_datasets",
           "train_inputs", "profile_detector", "label_inputs"]


def autolabel_root(cfg: Mapping[str, Any]) -> Path:
    """``<runs_dir>/autolabel``: detectors and studies."""
    return resolve_path(cfg, "runs_dir") / "autolabel"


def detectors_dir(cfg: Mapping[str, Any]) -> Path:
    """``<runs_dir>/autolabel/detectors``: one folder per dataset's detector."""
    return autolabel_root(cfg) / "detectors"


def study_root(cfg: Mapping[str, Any]) -> Path:
    """Notebook 06's run folder: ``<runs_dir>/autolabel/<autolabel.tag>``."""
    return autolabel_root(cfg) / cfg["autolabel"]["tag"]


def detector_settings(cfg: Mapping[str, Any]) -> DetectorSettings:
    """``autolabel.detector``; its image size must be the YOLO export's (``prepare.yolo_image_size_px``)."""
    d = dict(cfg["autolabel"]["detector"])
    size, export = int(d["image_size_px"]), int(cfg["prepare"]["yolo_image_size_px"])
    if size != export:
        raise ProfileError(f"{cfg.get('profile', 'profile')}: autolabel.detector.image_size_px ({size}) must equal "
                           f"prepare.yolo_image_size_px ({export}): the detector trains on that export")
    return DetectorSettings(**{**d, "augment": dict(d.get("augment") or {})})


def postprocess_settings(cfg: Mapping[str, Any]) -> PostprocessSettings:
    """``autolabel.postprocess``."""
    p = cfg["autolabel"]["postprocess"]
    return PostprocessSettings(enabled=p["enabled"], min_component_px=p["min_component_px"],
                               kernel_px=dict(p["kernel_px"] or {}), kernel_px_by_label=dict(p["kernel_px_by_label"] or {}),
                               largest_component_3d=p["largest_component_3d"])


def autolabel_settings(cfg: Mapping[str, Any], dataset: str) -> AutolabelSettings:
    """The pipeline's settings for ``dataset``: detector image size, the dataset's clipping and
    resize mode from ``prepare``, post-processing, overlays, encoder batch size."""
    prep = prepare_settings(cfg)
    return AutolabelSettings(get_dataset(dataset), detector_settings(cfg).image_size_px,
                             prep.clip_percentiles_for(dataset), postprocess_settings(cfg),
                             int(cfg["autolabel"]["overlay_every_n"]), int(cfg["models"]["encode_batch_size"]),
                             prep.resize_mode)


def study_settings(cfg: Mapping[str, Any]) -> StudySettings:
    """Notebook 06's settings (ground-truth boxes per instance as ``zero_shot.instance_prompts``)."""
    return StudySettings(detector=detector_settings(cfg), postprocess=postprocess_settings(cfg),
                         instance_prompts=bool(cfg["zero_shot"]["instance_prompts"]),
                         encode_batch_size=int(cfg["models"]["encode_batch_size"]), prepare=prepare_settings(cfg))


def study_subjects(cfg: Mapping[str, Any], subjects: pd.DataFrame) -> pd.DataFrame:
    """The subjects of ``autolabel.datasets`` in ``autolabel.split``, capped per dataset."""
    a = cfg["autolabel"]
    return select_subjects(subjects, a["datasets"], a["split"], int(a["max_subjects_per_dataset"]),
                           setting="autolabel.datasets")


def study_models(cfg: Mapping[str, Any], datasets: Sequence[str], grid: Any | None = None
                 ) -> tuple[list[StudyModel], pd.DataFrame]:
    """``autolabel.models`` (zero-shot) and, when ``autolabel.finetuned``, the best finetuned
    models of ``grid`` (notebook 03's ``GridResult``)."""
    a = cfg["autolabel"]
    return _study_models(list(a["models"]), model_settings(cfg), datasets=list(datasets),
                         grid=grid if a["finetuned"] else None)


def embedding_store(cfg: Mapping[str, Any]) -> Path | None:
    """The run's embedding store when the profile keeps one (``zero_shot.cache_embeddings``)."""
    from mskseg_lib.from_profile.zero_shot import embedding_cache_dir

    return embedding_cache_dir(cfg) if cfg["zero_shot"]["cache_embeddings"] else None


def detector_datasets(cfg: Mapping[str, Any], prepared: Sequence[str] | None = None) -> list[str]:
    """``autolabel.datasets`` (``all``: every prepared dataset, read from the prepared tables when
    ``prepared`` is None)."""
    wanted = cfg["autolabel"]["datasets"]
    if wanted != "all":
        return list(wanted)
    if prepared is None:
        from mskseg_lib.data.tables import load_tables

        subjects, _ = load_tables(prepared_dir(cfg))
        prepared = subjects["dataset"].unique()
    return sorted(prepared)


def train_inputs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of ``autolabel.run.train_detectors`` besides the datasets: folders, settings,
    seed and device."""
    return {"prepared_dir": prepared_dir(cfg), "detectors_dir": detectors_dir(cfg), "settings": detector_settings(cfg),
            "seed": int(cfg["seed"]), "device": str(cfg["models"]["device"])}


def profile_detector(cfg: Mapping[str, Any], dataset: str) -> Path:
    """``best.pt`` of the profile's finished detector training for ``dataset`` (``DataError``
    naming the run record when there is none with the current settings)."""
    return trained_detector(dataset, prepared_dir(cfg), detectors_dir(cfg), detector_settings(cfg),
                            seed=int(cfg["seed"]))


def label_inputs(cfg: Mapping[str, Any], dataset: str, detector_weights: Path | None = None,
                 model: str | None = None) -> dict[str, Any]:
    """The arguments of ``autolabel.run.label_volumes`` besides input and output: the dataset's
    settings, the detector (given, else the profile's trained one), the segmenter (given, else
    the first available of ``autolabel.models``), model settings and the run record."""
    return {"settings": autolabel_settings(cfg, dataset),
            "detector_weights": Path(detector_weights) if detector_weights else profile_detector(cfg, dataset),
            "model_keys": [model] if model else list(cfg["autolabel"]["models"]), "models": model_settings(cfg),
            "detector": detector_settings(cfg), "run_record": {"profile": cfg["profile"], "seed": cfg["seed"]}}
