"""Build a zoo model by name for a profile, or say plainly why it cannot run.

``load_model(cfg, name)`` finds the checkpoint the profile names, verifies its SHA-256, builds
the architecture on the profile's device and loads the weights. ``model_availability`` checks
every requested model without loading it, so a notebook can list "not run: checkpoint
missing" next to the models it did run. ``build_tiny`` gives the randomly initialised
miniatures of SAM and SAM2 used by tests, through the same adapters.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import torch

from mskseg_lib.models.checkpoints import CheckpointMissing, expected_sha256, resolve_checkpoint, verify_sha256
from mskseg_lib.models.interface import Segmenter, pick_device
from mskseg_lib.models.registry import get_spec

NOT_RUN_MISSING = "not run: checkpoint missing"
INPUT_NORMALISATIONS = ("study", "native")


def encoder_normalisation(native: str, input_normalisation: str) -> str:
    """The encoder input convention a model gets under ``models.input_normalisation``.

    ``study``: every slice min-max scaled to 0-1 and repeated to three channels (``unit``), as the
    MSK study's code feeds its preprocessed slices straight into the image encoders of SAM, SAM2
    and MedSAM (``finetunedSAM.forward``, ``finetunedSAM2._image_encoder``: no mean/std).
    ``native``: the model's own predictor convention (``native``, the registry's entry: SAM's
    ImageNet mean/std on 0-255, SAM2's ImageNet mean/std on 0-1, MedSAM's and LiteMedSAM's 0-1).
    """
    if input_normalisation not in INPUT_NORMALISATIONS:
        raise ValueError(f"models.input_normalisation must be one of {INPUT_NORMALISATIONS}, "
                         f"got {input_normalisation!r}")
    return "unit" if input_normalisation == "study" else native


def load_model(cfg: Mapping[str, Any], name: str, device: torch.device | None = None,
               input_normalisation: str | None = None) -> Segmenter:
    """A ready segmenter; raises ``CheckpointMissing`` / ``ChecksumMismatch`` with the file named.

    ``input_normalisation`` (``study`` or ``native``, see ``encoder_normalisation``) overrides
    the profile's ``models.input_normalisation``: the SAM2 video study, which used Meta's own
    predictors, asks for ``native``.
    """
    spec = get_spec(name)
    mcfg = cfg["models"]
    norm = encoder_normalisation(spec.normalisation, input_normalisation or mcfg["input_normalisation"])
    device = device or pick_device(mcfg["device"])
    path = resolve_checkpoint(cfg, name)
    check = verify_sha256(path, expected_sha256(cfg, name))
    bf16 = bool(mcfg["autocast_bf16"])
    if spec.family == "lite_medsam":
        from mskseg_lib.models.lite_medsam import load_lite_medsam

        model = load_lite_medsam(spec.display_name, path, device, bf16)
    elif spec.family == "sam":
        from mskseg_lib.models.sam_vit import load_sam_segmenter, sam_architecture

        model = load_sam_segmenter(spec.display_name, path, norm, device, bf16,
                                   arch=sam_architecture(spec.architecture))
    elif spec.family == "sam2":
        from mskseg_lib.models.sam2_hiera import load_sam2_segmenter

        model = load_sam2_segmenter(spec, path, device, bf16, normalisation=norm)
    else:  # pragma: no cover - registry entries are fixed
        raise ValueError(f"unknown model family {spec.family!r}")
    model.checkpoint = check  # path, sha256, verified: recorded in run manifests
    model.zoo_name = name
    return model


def model_availability(cfg: Mapping[str, Any], names: list[str]) -> pd.DataFrame:
    """One row per requested model: status ``available`` or ``not run: checkpoint missing``."""
    rows = []
    for name in names:
        spec = get_spec(name)
        try:
            path = resolve_checkpoint(cfg, name)
            rows.append({"model_key": name, "model": spec.display_name, "status": "available",
                         "checkpoint": str(path), "detail": ""})
        except CheckpointMissing as exc:
            rows.append({"model_key": name, "model": spec.display_name, "status": NOT_RUN_MISSING,
                         "checkpoint": str(exc.path), "detail": str(exc)})
    return pd.DataFrame(rows, columns=["model_key", "model", "status", "checkpoint", "detail"])


def build_tiny(family: str, device: torch.device | str = "cpu", seed: int = 0) -> Segmenter:
    """Randomly initialised miniature of a family (``sam``, ``medsam``, ``sam2``) for tests."""
    torch.manual_seed(seed)
    device = torch.device(device)
    if family in ("sam", "medsam"):
        from mskseg_lib.models.sam_vit import TINY_SAM, load_sam_segmenter

        norm = "sam_mean_std" if family == "sam" else "unit"
        return load_sam_segmenter(f"tiny-{family}", None, norm, device, False, arch=TINY_SAM)
    if family == "sam2":
        from mskseg_lib.models.sam2_hiera import TINY_SAM2_OVERRIDES, Sam2Segmenter, build_sam2_model

        model = build_sam2_model(get_spec("sam2_hiera_tiny").sam2_config, None, device, TINY_SAM2_OVERRIDES)
        return Sam2Segmenter(model=model, name="tiny-sam2", device=device, autocast_bf16=False)
    raise ValueError(f"no tiny configuration for {family!r} (have: sam, medsam, sam2)")
