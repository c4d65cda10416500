"""Unpack a profile into each stage's explicit, typed arguments.

The library's stage functions (prepare, zero-shot, finetuning, biomarkers, AutoLabel, video3d)
take paths, model keys, dataset names and small frozen settings dataclasses; they never read the
profile dict. This package is the one place that knows the profile's layout: one module per
stage, each with plain functions such as ``zero_shot_settings(cfg)``. The notebooks and
``mskseg_lib.cli`` call these; no stage imports this package (it sits at the edge, like the CLI).
A researcher working without a profile skips it and calls the stage functions directly.

:func:`load_profile` reads a profile and registers the dataset cards of its ``datasets:``
section (:func:`mskseg_lib.from_profile.data.register_profile_cards`): the one call a notebook
or command makes before the stage functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mskseg_lib import config, run_lock
from mskseg_lib.from_profile.data import register_profile_cards

__all__ = ["load_profile"]


def load_profile(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None, *,
                 check_lock: bool = True) -> dict:
    """Read and check a profile (:func:`mskseg_lib.config.load_profile`) and register its dataset
    cards, so every stage knows the datasets it declares: what notebooks and the CLI call.

    With ``check_lock`` (notebooks, scripts), a process outside any run is told (a logged warning,
    never an error) when a run is writing the profile's runs folder
    (:func:`mskseg_lib.run_lock.warn_if_running`); commands that take the lock pass False.
    """
    cfg = config.load_profile(name_or_path, overrides)
    register_profile_cards(cfg)
    if check_lock:
        run_lock.warn_if_running(config.resolve_path(cfg, "runs_dir"))
    return cfg
