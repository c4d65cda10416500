"""The one interface every promptable segmenter offers, and the inference context it runs in.

A segmenter works on square uint8 slices of ``input_size_px`` (the stored, model-ready slices of
``prepare``: resized straight to the square, the study's ``stretch``, or with ``prepare.resize:
pad`` longest side resized and padded bottom/right; see ``data.preprocess.SliceGeometry``). It
offers:

* ``encode(images, valid_hw=None) -> list[Embedding]``: run the image encoder once on a batch
  of slices ``(B, S, S)``; ``valid_hw`` gives the (rows, cols) each slice occupies (the whole
  square when stretched) for models whose preprocessing treats padding specially (SAM
  normalises before padding).
* ``decode(embedding, prompts) -> Tensor (N, S, S)``: logits for all N prompts of one slice in
  one call of the prompt encoder and mask decoder, upsampled to the input size.

Embeddings are dicts of tensors (SAM: ``image_embed``; SAM2 adds ``high_res_0/1``) so that a
cache can store and reload them without knowing the model.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable

import numpy as np
import torch

Embedding = dict[str, torch.Tensor]


@dataclass
class Prompts:
    """N prompts of one slice, in model-input pixel coordinates (x = column, y = row).

    ``boxes`` (N, 4) XYXY; ``points`` (N, P, 2) XY with ``point_labels`` (N, P), 1 positive,
    0 negative. Either or both may be given; when both, row i of each belongs to prompt i.
    """

    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.boxes is None and self.points is None:
            raise ValueError("Prompts need boxes, points or both")
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float32)
            if self.points.ndim == 2:  # one point per prompt
                self.points = self.points[:, None, :]
            if self.point_labels is None:
                raise ValueError("points need point_labels (1 positive, 0 negative)")
            self.point_labels = np.asarray(self.point_labels, dtype=np.int64).reshape(self.points.shape[:2])
        if self.boxes is not None and self.points is not None and len(self.boxes) != len(self.points):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.points)} point sets")

    def __len__(self) -> int:
        return len(self.boxes) if self.boxes is not None else len(self.points)

    def subset(self, index: int | slice | list[int]) -> "Prompts":
        idx = [index] if isinstance(index, int) else index

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return Prompts(pick(self.boxes), pick(self.points), pick(self.point_labels))


@runtime_checkable
class Segmenter(Protocol):
    name: str
    input_size_px: int
    device: torch.device
    autocast_bf16: bool

    def encode(self, images: np.ndarray, valid_hw: list[tuple[int, int]] | None = None) -> list[Embedding]: ...

    def decode(self, embedding: Embedding, prompts: Prompts) -> torch.Tensor: ...


def as_image_batch(images: np.ndarray, size_px: int, name: str) -> np.ndarray:
    """Check a batch of slices: (B, S, S) or one (S, S) slice, uint8 or float in 0-255."""
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (size_px, size_px):
        raise ValueError(f"{name} expects slices of shape (B, {size_px}, {size_px}), got {arr.shape}")
    return arr


@contextlib.contextmanager
def inference_context(device: torch.device, autocast_bf16: bool) -> Iterator[None]:
    """``torch.inference_mode`` plus bf16 autocast on CUDA (when enabled); fp32 on CPU."""
    use_amp = autocast_bf16 and device.type == "cuda"
    with torch.inference_mode():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            yield


def pick_device(setting: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {setting!r} requested but CUDA is not available on this machine")
    return torch.device(setting)


def set_cpu_threads(n_threads: int | None) -> int:
    """Use ``n_threads`` intra-op threads (default: every core this process may use)."""
    if not n_threads:
        n_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = n_threads
    torch.set_num_threads(int(n))
    return int(n)


def upsample_logits(low_res: torch.Tensor, size_px: int) -> torch.Tensor:
    """(N, 1, h, w) decoder logits -> (N, size_px, size_px) float32, bilinear as SAM does."""
    up = torch.nn.functional.interpolate(low_res.float(), size=(size_px, size_px), mode="bilinear", align_corners=False)
    return up[:, 0]
