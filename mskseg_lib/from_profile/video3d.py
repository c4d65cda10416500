"""A profile's ``video3d`` section as the 3D video study's arguments (notebook 07, ``mskseg video3d``,
``mskseg bench video3d``).

The study's folder is ``<runs_dir>/video3d/<video3d.tag>``; its settings
(:class:`~mskseg_lib.video3d.study.Video3dSettings`) gather ``video3d.schemes``, ``carry``,
``tissues``, ``combined_structures``, ``offload_state``, ``save_volumes`` and the ``prepare``
section (clipping, resize). Values are passed as the profile writes them, so stored volumes keep
their fingerprints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from mskseg_lib.config import resolve_path
from mskseg_lib.from_profile.autolabel import detector_settings
from mskseg_lib.from_profile.data import prepare_settings, prepared_dir
from mskseg_lib.from_profile.models import model_settings
from mskseg_lib.from_profile.zero_shot import embedding_cache_dir
from mskseg_lib.settings import real_spine_dir
from mskseg_lib.video3d.propagate import CarrySettings
from mskseg_lib.video3d.study import Video3dSettings, model_table, study_volumes

__all__ = ["study_root", "carry_settings", "video3d_settings", "volumes", "models_table", "available_models",
           "study_inputs", "segment_inputs", "bench_volume", "bench_inputs"]


def study_root(cfg: Mapping[str, Any]) -> Path:
    """Notebook 07's run folder: ``<runs_dir>/video3d/<video3d.tag>``."""
    return resolve_path(cfg, "runs_dir") / "video3d" / cfg["video3d"]["tag"]


def carry_settings(cfg: Mapping[str, Any]) -> CarrySettings:
    """``video3d.carry``."""
    return CarrySettings(**dict(cfg["video3d"]["carry"]))


def video3d_settings(cfg: Mapping[str, Any]) -> Video3dSettings:
    """``video3d`` (schemes, carrying, structures, offload, saving) with ``prepare``."""
    v = cfg["video3d"]
    return Video3dSettings(schemes=tuple(v["schemes"]), carry=carry_settings(cfg), tissues=tuple(v["tissues"]),
                           combined_structures=tuple(v["combined_structures"]), offload_state=str(v["offload_state"]),
                           save_volumes=bool(v["save_volumes"]), prepare=prepare_settings(cfg))


def volumes(cfg: Mapping[str, Any], subjects: pd.DataFrame, notes: list[str] | None = None) -> pd.DataFrame:
    """The study's volumes: ``video3d.datasets`` in ``video3d.split`` (capped per dataset), then the
    real spine fixture when ``video3d.real_spine`` is on (``MSKSEG_REAL_SPINE`` or the shared copy)."""
    v = cfg["video3d"]
    return study_volumes(subjects, list(v["datasets"]), v["split"], int(v["max_subjects_per_dataset"]),
                         real_spine=real_spine_dir() if v["real_spine"] else None,
                         max_real_subjects=int(v["max_real_subjects"]), notes=notes)


def models_table(cfg: Mapping[str, Any]) -> pd.DataFrame:
    """Every model of ``video3d.models``: family, size, available or not (and why)."""
    return model_table(list(cfg["video3d"]["models"]), model_settings(cfg))


def available_models(cfg: Mapping[str, Any]) -> list[str]:
    """The models of ``video3d.models`` whose weights are present."""
    table = models_table(cfg)
    return table.loc[table["status"] == "available", "model_key"].tolist() if not table.empty else []


def study_inputs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of ``video3d.study.run_study`` besides the volumes: root, the available
    models, settings, model settings, the seed (recorded) and the embedding store (``cache_dir``)."""
    return {"root": study_root(cfg), "model_keys": available_models(cfg), "settings": video3d_settings(cfg),
            "models": model_settings(cfg), "seed": cfg["seed"],
            "cache_dir": embedding_cache_dir(cfg) if cfg["zero_shot"]["cache_embeddings"] else None}


def segment_inputs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of ``video3d.segment.segment_file`` the profile gives: settings, the
    detector's settings, model settings and the run record (profile, seed)."""
    return {"settings": video3d_settings(cfg), "detector": detector_settings(cfg), "models": model_settings(cfg),
            "run_record": {"profile": cfg["profile"], "seed": cfg["seed"]}}


def bench_volume(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The first volume of the study (cohort subjects of ``video3d.datasets``, else real)."""
    from mskseg_lib.data.errors import DataError
    from mskseg_lib.data.tables import load_tables

    subjects, _ = load_tables(prepared_dir(cfg))
    vols = volumes(cfg, subjects)
    if vols.empty:
        raise DataError(Path(str(cfg.get("profile", "profile"))),
                        "no video3d volume to time (video3d.datasets / real_spine)")
    return vols.iloc[0].to_dict()


def bench_inputs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of ``video3d.benchmark.bench_video3d`` the profile gives: the first study
    volume, settings and model settings."""
    return {"volume": bench_volume(cfg), "settings": video3d_settings(cfg), "models": model_settings(cfg)}
