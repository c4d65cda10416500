"""SAM2's video predictor: built from the zoo's checkpoints (or tiny random configs), and its
inference state initialised from in-memory frames.

``build_video_predictor`` goes through ``sam2.build_sam.build_sam2_video_predictor`` (the
published hydra configs, with the package's post-processing overrides: dynamic multimask
fallback, binarised masks for the memory encoder, small-hole filling) with random
initialisation, then loads the weights with the project's strict loader. The same model object
also serves the image-only schemes through ``Sam2Segmenter`` (the video predictor is a
``SAM2Base``), so a volume's image and video schemes run the same weights.

``init_state_from_frames`` builds the state dict of ``SAM2VideoPredictor.init_state`` (sam2
1.1.0) around a ``VolumeFrames`` instead of a JPEG folder; ``tests/test_video3d_frames.py``
checks it holds the same keys as the package's own state.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from mskseg_lib.models.checkpoints import expected_sha256, load_weights, resolve_checkpoint, verify_sha256
from mskseg_lib.models.interface import pick_device
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.sam2_hiera import TINY_SAM2_OVERRIDES, Sam2Segmenter, sam2_hydra
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.video3d.frames import VolumeFrames

#: bytes kept per frame and object by the video predictor, per pixel of the (S/16)^2 memory grid:
#: memory features (64 channels, bf16/fp32), its positional encoding, the low-res mask logits
#: ((S/4)^2 = 16 x the memory grid) and small pointers. A deliberate over-estimate (fp32).
_STATE_BYTES_PER_GRID_PX = 4 * (64 + 64 + 16 + 4)


def hole_filling_available() -> bool:
    """Is sam2's compiled extension (``sam2._C``, connected components) importable?

    The video predictor fills small holes in its masks with it; without it (CPU installs with
    ``SAM2_BUILD_CUDA=0``) the package warns on every frame and skips the step.
    """
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True


def build_video_predictor(config_file: str, checkpoint: str | Path | None, device: torch.device,
                          overrides: list[str] | None = None) -> torch.nn.Module:
    """A ``SAM2VideoPredictor`` from a sam2 hydra config, optionally with weights, in eval mode.

    Where ``sam2._C`` is missing, hole filling is switched off explicitly (``fill_hole_area = 0``)
    rather than left to fail and warn on every frame: the outputs are the same, and
    ``model.fill_hole_area`` records which it was.
    """
    from sam2.build_sam import build_sam2_video_predictor

    with sam2_hydra():
        model = build_sam2_video_predictor(config_file, ckpt_path=None, device="cpu", mode="eval",
                                           hydra_overrides_extra=list(overrides or []))
    if not hole_filling_available():
        model.fill_hole_area = 0
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model.to(device).eval()


def build_tiny_video_predictor(device: torch.device | str = "cpu", seed: int = 0) -> torch.nn.Module:
    """Randomly initialised miniature SAM2 video predictor (256 px) for tests and benchmarks."""
    torch.manual_seed(seed)
    return build_video_predictor(get_spec("sam2_hiera_tiny").sam2_config, None, torch.device(device),
                                 TINY_SAM2_OVERRIDES)


def load_video_predictor(name: str, models: ModelSettings | None = None,
                         device: torch.device | None = None) -> tuple[torch.nn.Module, Any]:
    """The video predictor of a zoo SAM2 model, its weights verified.

    Raises ``CheckpointMissing`` / ``ChecksumMismatch`` naming the file, as ``load_model`` does.

    Parameters
    ----------
    name : zoo name of a SAM2 model (``sam2_hiera_tiny`` ... ``sam2_hiera_large``).
    models : where the zoo's weights are (default ``ModelSettings()``).
    device : overrides ``models.device``.

    Returns
    -------
    (predictor, verified checkpoint record {path, sha256, verified}).
    """
    models = models or ModelSettings()
    spec = get_spec(name)
    if spec.family != "sam2":
        raise ValueError(f"{name} has no video predictor (family {spec.family!r}); only SAM2 models track")
    device = device or pick_device(models.device)
    path = resolve_checkpoint(name, models)
    check = verify_sha256(path, expected_sha256(name, models))
    model = build_video_predictor(spec.sam2_config, path, device)
    if int(model.image_size) != spec.input_size_px:
        raise ValueError(f"{name}: config {spec.sam2_config} builds a {model.image_size}-px model, "
                         f"the registry says {spec.input_size_px} px")
    return model, check


def image_segmenter(predictor: torch.nn.Module, name: str, autocast_bf16: bool) -> Sam2Segmenter:
    """The same SAM2 weights as an image-only ``Segmenter`` (per-slice schemes, no memory)."""
    device = next(predictor.parameters()).device
    return Sam2Segmenter(predictor, name, device, autocast_bf16)


def state_bytes(n_frames: int, n_objects: int, image_size: int) -> int:
    """Upper estimate of the memory the tracking state takes for a whole volume."""
    grid = (int(image_size) // 16) ** 2
    return int(n_frames) * max(1, int(n_objects)) * grid * _STATE_BYTES_PER_GRID_PX


def choose_offload(setting: str, device: torch.device, n_frames: int, n_objects: int, image_size: int,
                   free_fraction: float = 0.5) -> bool:
    """Keep the tracking state on the CPU? ``always``, ``never`` or ``auto``.

    ``auto``: on CUDA, offload when the estimated state would take more than ``free_fraction``
    of the free device memory (the encoder's activations need the rest); on the CPU there is
    nothing to offload to.
    """
    if setting not in ("auto", "always", "never"):
        raise ValueError(f"video3d.offload_state must be auto, always or never, got {setting!r}")
    if setting != "auto":
        return setting == "always"
    if device.type != "cuda":
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return state_bytes(n_frames, n_objects, image_size) > free_fraction * free


@torch.inference_mode()
def init_state_from_frames(predictor: torch.nn.Module, frames: VolumeFrames, offload_state_to_cpu: bool = False) -> dict:
    """``SAM2VideoPredictor.init_state`` with in-memory frames in place of a JPEG folder.

    The frames are made on the CPU on demand (``offload_video_to_cpu`` in the package's terms);
    ``offload_state_to_cpu`` keeps the per-frame memories on the CPU. Unlike ``init_state``, frame 0
    is not encoded as a warm-up: the predictor encodes the prompted frame when prompts are added,
    and the warm-up's cache entry would be evicted before the backward pass reaches frame 0.
    """
    if int(frames.image_size) != int(predictor.image_size):
        raise ValueError(f"frames are {frames.image_size} px but the predictor takes {predictor.image_size} px")
    device = predictor.device
    state: dict[str, Any] = {
        "images": frames,
        "num_frames": len(frames),
        "offload_video_to_cpu": True,
        "offload_state_to_cpu": bool(offload_state_to_cpu),
        "video_height": frames.video_height,
        "video_width": frames.video_width,
        "device": device,
        "storage_device": torch.device("cpu") if offload_state_to_cpu else device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    return state


def parameter_count(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
