"""``ModelSettings``: where a site keeps the zoo's weights and how the models run, as one value.

Every function of ``models`` that finds, verifies or builds a zoo model takes it (never the
profile). The defaults are the shipped profiles' (weights under ``weights/`` of the project,
CUDA when present, bf16 autocast there, the study's 0-1 encoder input), so
``load_model("lite_medsam")`` works in a fresh notebook; ``mskseg_lib.from_profile.models``
builds it from a profile's ``models`` section.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from mskseg_lib.errors import UserError

#: encoder input conventions: ``study`` (0-1 per slice into every encoder, the study's code) or
#: ``native`` (each model's own predictor convention)
INPUT_NORMALISATIONS = ("study", "native")


class ModelSettingsError(UserError, ValueError):
    """A model setting has a value the zoo cannot use."""


@dataclass(frozen=True)
class ModelSettings:
    """How zoo models are found and run.

    Attributes
    ----------
    checkpoints_dir : Path
        Folder holding the registry's file names; relative paths are taken from the project root.
    checkpoint_files : mapping of str to str or Path
        Zoo name -> explicit weights file (overrides ``checkpoints_dir`` for that model).
    sha256_pins : mapping of str to str
        Zoo name -> expected SHA-256 where the registry knows none (or to pin another file).
    device : str
        ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
    autocast_bf16 : bool
        bf16 autocast on CUDA (CPU always runs float32).
    cpu_threads : int
        Torch CPU threads; 0 = every core this process may use.
    encode_batch_size : int
        Slices per image-encoder call.
    cpu_compile : bool
        On CPU, ``torch.compile`` the SAM-layout image encoders for inference: about 2x faster
        per slice than plain float32 (1.35x over channels-last) with the same masks, after a
        compile of 25-55 s that each process pays once (``mskseg bench cpu-path``).
    input_normalisation : str
        ``study`` (every encoder gets 0-1 per-slice min-max input, as the study's code fed SAM,
        SAM2 and MedSAM) or ``native`` (each model's own predictor convention).
    """

    checkpoints_dir: Path = Path("weights")
    checkpoint_files: Mapping[str, str | Path] = field(default_factory=dict)
    sha256_pins: Mapping[str, str] = field(default_factory=dict)
    device: str = "auto"
    autocast_bf16: bool = True
    cpu_threads: int = 0
    encode_batch_size: int = 1
    input_normalisation: str = "study"
    cpu_compile: bool = False

    def __post_init__(self) -> None:
        if self.input_normalisation not in INPUT_NORMALISATIONS:
            raise ModelSettingsError(f"input_normalisation must be one of {INPUT_NORMALISATIONS}, "
                                     f"got {self.input_normalisation!r}")
        if int(self.encode_batch_size) < 1:
            raise ModelSettingsError(f"encode_batch_size must be >= 1, got {self.encode_batch_size}")
