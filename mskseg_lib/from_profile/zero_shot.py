"""A profile's ``zero_shot`` section as the zero-shot engine's arguments.

``run_zero_shot(**zero_shot_inputs(cfg))`` is what notebook 02 and ``mskseg zero-shot`` run;
``zero_shot_inputs(cfg, tag=..., split=...)`` applies overrides of the section (notebook 04's
physics run). Without a profile the same run is::

    from mskseg_lib.evaluation.zero_shot import SliceSelection, ZeroShotSettings, run_zero_shot
    run = run_zero_shot(Path("data/default/prepared"), Path("runs/mine/zero_shot/baseline"), ["lite_medsam"],
                        SliceSelection(split="test", max_slices_per_subject=8), ZeroShotSettings())

Run folders are fingerprinted from these values exactly as they were when the engine read the
profile itself, so existing run folders resume.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

from mskseg_lib.config import ProfileError, resolve_path
from mskseg_lib.data.catalog import registered_cards
from mskseg_lib.evaluation.zero_shot import SliceSelection, ZeroShotSettings
from mskseg_lib.from_profile.data import prepared_dir
from mskseg_lib.from_profile.models import model_settings

__all__ = ["with_overrides", "slice_selection", "preparation", "zero_shot_settings", "zero_shot_root",
           "embedding_cache_dir", "zero_shot_inputs", "volume_inputs", "bench_inputs"]


def with_overrides(cfg: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """A copy of the profile whose ``zero_shot`` section has ``overrides`` applied.

    Unknown keys are refused (``ProfileError`` naming them), so a misspelt override never runs
    the profile's value silently.
    """
    unknown = sorted(set(overrides) - set(cfg["zero_shot"]))
    if unknown:
        raise ProfileError(f"{cfg.get('profile', 'profile')}: unknown zero_shot keys {unknown}")
    out = copy.deepcopy(dict(cfg))
    out["zero_shot"] = {**out["zero_shot"], **overrides}
    return out


def _tuple_or_str(value: Any) -> str | tuple[str, ...]:
    return value if isinstance(value, str) else tuple(value)


def slice_selection(cfg: Mapping[str, Any]) -> SliceSelection:
    """``zero_shot.split / datasets / max_subjects_per_dataset / max_slices_per_subject``."""
    z = cfg["zero_shot"]
    return SliceSelection(split=_tuple_or_str(z["split"]), datasets=_tuple_or_str(z["datasets"]),
                          max_subjects_per_dataset=int(z["max_subjects_per_dataset"]),
                          max_slices_per_subject=int(z["max_slices_per_subject"]))


def preparation(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The preparation settings that made the slices (``prepare.resize / clip_percentiles /
    per_dataset``), as run folders fingerprint them."""
    p = cfg["prepare"]
    out = {"resize": p["resize"], "clip_percentiles": p["clip_percentiles"], "per_dataset": p["per_dataset"]}
    cards = {s.name: dict(s.prepare) for s in registered_cards() if s.prepare}
    if cards:  # the profile's dataset cards' own prepare: overrides (absent for the study's datasets)
        out["card_prepare"] = cards
    return out


def zero_shot_settings(cfg: Mapping[str, Any]) -> ZeroShotSettings:
    """``zero_shot.*`` (conditions, grid, instance prompts, HD95, cache), the seed, ``models.*``
    and the preparation record."""
    z = cfg["zero_shot"]
    return ZeroShotSettings(conditions=tuple(dict(c) for c in z["conditions"]), mask_grid_px=z["mask_grid_px"],
                            instance_prompts=bool(z["instance_prompts"]), hd95=bool(z["hd95"]),
                            cache_embeddings=bool(z["cache_embeddings"]), seed=int(cfg["seed"]),
                            models=model_settings(cfg), preparation=preparation(cfg))


def zero_shot_root(cfg: Mapping[str, Any]) -> Path:
    """``<runs_dir>/zero_shot``: the folder of every zero-shot run of the profile."""
    return resolve_path(cfg, "runs_dir") / "zero_shot"


def embedding_cache_dir(cfg: Mapping[str, Any]) -> Path:
    """The embedding cache every zero-shot and finetuning run of the profile shares."""
    return zero_shot_root(cfg) / "_embeddings"


def zero_shot_inputs(cfg: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """Every argument of ``run_zero_shot`` from the profile (``overrides``: keys of its
    ``zero_shot`` section): prepared_dir, run_dir (``<runs_dir>/zero_shot/<tag>``), model_keys,
    selection, settings, cache_dir and the profile itself (recorded in the run folder)."""
    c = with_overrides(cfg, **overrides) if overrides else dict(cfg)
    return {"prepared_dir": prepared_dir(c), "run_dir": zero_shot_root(c) / c["zero_shot"]["tag"],
            "model_keys": list(c["zero_shot"]["models"]), "selection": slice_selection(c),
            "settings": zero_shot_settings(c), "cache_dir": embedding_cache_dir(c), "profile": c}


def volume_inputs(cfg: Mapping[str, Any], tag: str) -> dict[str, Any]:
    """The profile's arguments of ``evaluation.volumes.predict_volumes`` besides the model and the
    subjects: prepared_dir, run_dir (``<runs_dir>/zero_shot/<tag>``), settings, cache_dir and the
    profile (recorded in the run folder; its ``settings.json`` holds the whole-volume selection)."""
    inputs = zero_shot_inputs(cfg)
    return {"prepared_dir": inputs["prepared_dir"], "run_dir": zero_shot_root(cfg) / tag,
            "settings": inputs["settings"], "cache_dir": inputs["cache_dir"], "profile": inputs["profile"]}


def bench_inputs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``prepared_dir`` and ``settings`` of ``evaluation.benchmark.bench_zero_shot``."""
    return {"prepared_dir": prepared_dir(cfg), "settings": zero_shot_settings(cfg)}
