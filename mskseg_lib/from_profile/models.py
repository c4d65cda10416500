"""A profile's ``models`` section as :class:`~mskseg_lib.models.settings.ModelSettings`.

Every stage that builds zoo models (zero-shot, finetuning, AutoLabel, video3d, the benchmarks)
takes a ``ModelSettings``; ``model_settings(cfg)`` is the one place that reads the section.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mskseg_lib.config import ProfileError
from mskseg_lib.models.settings import ModelSettings, ModelSettingsError

__all__ = ["model_settings"]


def model_settings(cfg: Mapping[str, Any]) -> ModelSettings:
    """``models.*`` of a profile: checkpoints folder and files, pinned digests, device, bf16,
    CPU threads, encoder batch size and encoder input convention.

    ``checkpoints_dir`` and ``checkpoints.<name>`` stay as the profile writes them (relative
    paths are taken from the project root when a checkpoint is resolved).
    """
    m = cfg["models"]
    try:
        return ModelSettings(checkpoints_dir=Path(str(m["checkpoints_dir"])),
                             checkpoint_files=dict(m.get("checkpoints") or {}), sha256_pins=dict(m.get("sha256") or {}),
                             device=str(m["device"]), autocast_bf16=bool(m["autocast_bf16"]),
                             cpu_threads=int(m["cpu_threads"]), encode_batch_size=int(m["encode_batch_size"]),
                             cpu_compile=bool(m.get("cpu_compile", False)),
                             input_normalisation=str(m["input_normalisation"]))
    except ModelSettingsError as err:
        raise ProfileError(f"{cfg.get('profile', 'profile')}: models.{err}") from None
