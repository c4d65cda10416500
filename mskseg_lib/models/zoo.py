"""Build a zoo model by name, or say plainly why it cannot run.

``load_model(name, settings)`` finds the checkpoint the
:class:`~mskseg_lib.models.settings.ModelSettings` point to, verifies its SHA-256, builds the
architecture on the settings' device and loads the weights. ``model_availability`` checks every
requested model without loading it, so a notebook can list "not run: checkpoint missing" next to
the models it did run. ``build_tiny`` gives the randomly initialised miniatures of SAM and SAM2
used by tests, through the same adapters.
"""
from __future__ import annotations

import pandas as pd
import torch

from mskseg_lib.models.checkpoints import CheckpointMissing, expected_sha256, resolve_checkpoint, verify_sha256
from mskseg_lib.models.interface import Segmenter, pick_device
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.settings import INPUT_NORMALISATIONS, ModelSettings

NOT_RUN_MISSING = "not run: checkpoint missing"


def encoder_normalisation(native: str, input_normalisation: str) -> str:
    """The encoder input convention a model gets under ``input_normalisation``.

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


def load_model(name: str, settings: ModelSettings | None = None, device: torch.device | None = None,
               input_normalisation: str | None = None) -> Segmenter:
    """A ready segmenter of the zoo, its weights verified.

    Parameters
    ----------
    name : str
        Zoo name (``lite_medsam``, ``sam_vit_b``, ``medsam_vit_b``, ``sam2_hiera_base_plus``, ...).
    settings : ModelSettings, optional
        Where the weights are and how the model runs (default ``ModelSettings()``).
    device : torch.device, optional
        Overrides ``settings.device``.
    input_normalisation : str, optional
        ``study`` or ``native`` (see ``encoder_normalisation``); overrides
        ``settings.input_normalisation``: the SAM2 video study, which used Meta's own
        predictors, asks for ``native``.

    Returns
    -------
    Segmenter
        With ``checkpoint`` ({path, sha256, verified}, recorded in run manifests) and ``zoo_name``.

    Raises ``CheckpointMissing`` / ``ChecksumMismatch`` naming the file.
    """
    settings = settings or ModelSettings()
    spec = get_spec(name)
    norm = encoder_normalisation(spec.normalisation, input_normalisation or settings.input_normalisation)
    device = device or pick_device(settings.device)
    path = resolve_checkpoint(name, settings)
    check = verify_sha256(path, expected_sha256(name, settings))
    bf16 = bool(settings.autocast_bf16)
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
    if hasattr(model, "compile_encoder"):
        model.compile_encoder = bool(settings.cpu_compile) and device.type == "cpu"
    return model


def model_availability(names: list[str], settings: ModelSettings | None = None) -> pd.DataFrame:
    """Whether each requested zoo model can run, without loading it.

    Parameters
    ----------
    names : list of str
        Zoo names.
    settings : ModelSettings, optional
        Where the weights are kept (default ``ModelSettings()``).

    Returns
    -------
    DataFrame
        One row per name: model_key, model (display name), status (``available`` or
        ``not run: checkpoint missing``), checkpoint (the file found or expected), detail (the
        missing-file message, else "").
    """
    rows = []
    for name in names:
        spec = get_spec(name)
        try:
            path = resolve_checkpoint(name, settings)
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
