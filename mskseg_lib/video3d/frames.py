"""A volume's slices as the frames of SAM2's video predictor, straight from memory.

SAM2's ``init_state`` only reads a folder of ``<index>.jpg`` files (or an MP4). For MRI that
means writing every slice as a lossy JPEG and reading it back. ``VolumeFrames`` gives the
predictor the same tensors from the uint8 slices in memory instead, one frame at a time when the
predictor asks for it (``inference_state["images"][k]``), so a 160-slice 1024-px volume never
sits in memory as a 2 GB float tensor.

The arithmetic is the package's own (``sam2.utils.misc._load_img_as_tensor`` and
``load_video_frames_from_jpg_images``): the grey slice is resized with PIL's default filter
(bicubic) to ``image_size x image_size`` (non-square slices are stretched, as SAM2 does;
outputs are resized back to the slice's size by the predictor), divided by 255, repeated into
three channels and normalised with ImageNet's mean and std. ``tests/test_video3d_frames.py``
checks that the frames equal those of the JPEG route for the same pixels, and that the masks
agree.

``write_jpeg_frames`` writes the JPEG folder that the package's own route needs (for that
comparison and for ``mskseg bench video3d``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mskseg_lib import atomic

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def check_slices(slices_u8: np.ndarray, what: str = "volume") -> np.ndarray:
    """(N, H, W) uint8 slices, or a clear error naming ``what``."""
    arr = np.asarray(slices_u8)
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"{what}: expected slices (N, H, W) with N >= 1, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 slices (clip the volume first), got {arr.dtype}")
    return arr


def frame_tensor(slice_u8: np.ndarray, image_size: int) -> torch.Tensor:
    """One (H, W) uint8 slice -> (3, S, S) float32 frame exactly as the JPEG route makes it."""
    resized = Image.fromarray(np.ascontiguousarray(slice_u8), mode="L").resize((image_size, image_size))
    unit = torch.from_numpy(np.asarray(resized, dtype=np.uint8) / 255.0).to(torch.float32)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    frame = unit[None].expand(3, -1, -1).clone()
    frame -= mean
    frame /= std
    return frame


class VolumeFrames:
    """Frames for SAM2's video predictor made on demand from (N, H, W) uint8 slices.

    Behaves like the tensor ``load_video_frames`` returns where the predictor uses it
    (``len`` and ``frames[k]``). Frames are made on the CPU; the predictor moves each one to
    its device when it encodes it. ``frames_made`` counts the conversions (each frame is made
    once per pass of the predictor; nothing is kept).
    """

    def __init__(self, slices_u8: np.ndarray, image_size: int):
        self.slices = check_slices(slices_u8)
        self.image_size = int(image_size)
        self.video_height, self.video_width = (int(s) for s in self.slices.shape[1:])
        self.frames_made = 0

    def __len__(self) -> int:
        return int(self.slices.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} of a {len(self)}-frame volume")
        self.frames_made += 1
        return frame_tensor(self.slices[index], self.image_size)


def write_jpeg_frames(slices_u8: np.ndarray, folder: Path, quality: int = 95) -> list[Path]:
    """The JPEG folder SAM2's own route reads: ``00000.jpg``, ``00001.jpg``, ... (grey JPEGs).

    Each file is written under a temporary name and renamed. Returns the paths in frame order.
    """
    arr = check_slices(slices_u8)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, sl in enumerate(arr):
        path = folder / f"{k:05d}.jpg"
        with atomic.atomic_path(path) as tmp:
            Image.fromarray(np.ascontiguousarray(sl), mode="L").save(tmp, format="JPEG", quality=int(quality))
        paths.append(path)
    return paths


def read_jpeg_frames(paths: list[Path]) -> np.ndarray:
    """The grey pixels the JPEG route actually sees (JPEG is lossy): (N, H, W) uint8."""
    return np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.uint8) for p in paths])
