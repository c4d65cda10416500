"""A profile's ``mixed_effects`` section as notebook 04's arguments."""
from __future__ import annotations

from typing import Any, Mapping

from mskseg_lib.stats.mixed_effects import MixedEffectsSettings

__all__ = ["mixed_effects_settings"]


def mixed_effects_settings(cfg: Mapping[str, Any]) -> MixedEffectsSettings:
    """``mixed_effects.reference_model / condition / interactions / vif_threshold`` and the seed."""
    me = cfg["mixed_effects"]
    return MixedEffectsSettings(reference_model=str(me["reference_model"]), condition=str(me["condition"]),
                                interactions=tuple(tuple(p) for p in me["interactions"]),
                                vif_threshold=float(me["vif_threshold"]), seed=int(cfg["seed"]))
