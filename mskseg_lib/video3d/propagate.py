"""Running one prompt scheme on one volume: a label stack (slices first, display orientation).

Three engines:

* ``run_video``: SAM2's video predictor on the volume's slices as frames (``VolumeFrames``, no
  JPEG folder). Prompts are added on their slice, then the predictor propagates forward to the
  last slice and backward to the first. A voxel goes to the structure with the highest logit
  when several claim it (SAM2's own non-overlap rule). bf16 autocast on CUDA.
* ``run_per_slice``: an image-only ``Segmenter`` prompted on every slice independently.
* ``run_carry``: propagation for models without memory. The prompted slice is segmented from its
  prompt; each slice's predicted mask then becomes the next slice's prompt (its box, widened by
  ``margin_px``, or its interior point), slice by slice in both directions. A structure stops
  where it ends: when its predicted area on a slice falls below ``min_area_px`` or below
  ``min_area_fraction`` of its area on the prompted slice, or when the mask jumps (its Dice
  with the previous slice's mask falls below ``min_consecutive_dice``: anatomy changes
  smoothly from slice to slice, a leak into a neighbouring tissue does not), that slice and the
  rest of that direction stay empty. A box-prompted model always finds *something* in a box,
  so without these rules carrying never stops at the end of a bone.

Image-only engines share a ``SliceEncoder``: each slice is encoded at most once per volume and
all prompts of a slice are decoded from that one embedding in one call; the encode seconds are
kept per slice so every scheme can be charged for the slices it used as if it ran alone.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from mskseg_lib.data.boxes import mask_box
from mskseg_lib.data.preprocess import SliceGeometry, mask_box_to_model, resize_slice, scale_box
from mskseg_lib.evaluation.embedding_cache import EmbeddingCache, encode_through_store
from mskseg_lib.evaluation.masks import combine_labels, to_original
from mskseg_lib.evaluation.metrics import dice
from mskseg_lib.models.interface import Embedding, Prompts, Segmenter
from mskseg_lib.video3d.frames import VolumeFrames, check_slices
from mskseg_lib.video3d.predictor import init_state_from_frames
from mskseg_lib.video3d.prompts import ObjectPrompt, interior_point


@dataclass(frozen=True)
class CarrySettings:
    """When carrying stops (see the module docstring); the defaults are the paper profile's.

    ``margin_px``: the carried box is the predicted mask's box widened by this (slice pixels).
    A structure stops on the slice where its mask is smaller than ``min_area_px`` pixels or
    than ``min_area_fraction`` of its area on the prompted slice, or where its Dice with the
    previous slice's mask falls below ``min_consecutive_dice`` (a leak).
    """

    margin_px: int = 4
    min_area_px: int = 40
    min_area_fraction: float = 0.05
    min_consecutive_dice: float = 0.5

    def as_record(self) -> dict[str, float]:
        """JSON-ready dict (the profile's ``video3d.carry``), also ``run_carry``'s keyword arguments."""
        return {"margin_px": self.margin_px, "min_area_px": self.min_area_px,
                "min_area_fraction": self.min_area_fraction, "min_consecutive_dice": self.min_consecutive_dice}


@dataclass
class SchemeRun:
    """A scheme's output on one volume."""

    labels: np.ndarray  # (N, H, W) int16, display orientation
    prompt_slices: dict[int, int]  # label -> the slice its (first) prompt was on
    seconds: float  # wall time, encodes of the slices used included
    encoded_slices: int  # slices the image encoder ran on (for this scheme)
    reach: dict[int, tuple[int, int]] = field(default_factory=dict)  # carry: label -> (first, last) slice reached


# ----------------------------------------------------------------------------------------------
# image-only models
# ----------------------------------------------------------------------------------------------
class SliceEncoder:
    """Embeddings of one volume's slices for one ``Segmenter``, each slice encoded once."""

    def __init__(self, segmenter: Segmenter, slices_u8: np.ndarray, resize_mode: str = "stretch",
                 cache: EmbeddingCache | None = None):
        self.segmenter = segmenter
        self.cache = cache  # the run's embedding store: slices another stage encoded are read by content
        self.slices = check_slices(slices_u8)
        self.size = int(segmenter.input_size_px)
        # slices reach the model as prepare makes them (``prepare.resize``: the study's stretch, or pad)
        self.geom = SliceGeometry(int(self.slices.shape[1]), int(self.slices.shape[2]), self.size, resize_mode)
        self._embeddings: dict[int, Embedding] = {}
        self.encode_seconds: dict[int, float] = {}

    def get(self, k: int) -> Embedding:
        if k not in self._embeddings:
            cuda = torch.device(self.segmenter.device).type == "cuda"
            if cuda:  # time the encode itself, not the launch of its kernels
                torch.cuda.synchronize(self.segmenter.device)
            t0 = time.perf_counter()
            image = resize_slice(self.slices[k], self.size, resize_mode=self.geom.resize_mode)[None]
            embs, _ = encode_through_store(self.segmenter, image, [self.geom.resized_shape], 1, self.cache)
            self._embeddings[k] = embs[0]
            if cuda:
                torch.cuda.synchronize(self.segmenter.device)
            self.encode_seconds[k] = time.perf_counter() - t0
        return self._embeddings[k]

    def seconds_for(self, slices: Sequence[int]) -> float:
        return float(sum(self.encode_seconds.get(int(k), 0.0) for k in set(slices)))

    def decode(self, k: int, prompts: Sequence[ObjectPrompt]) -> tuple[np.ndarray, list[int]]:
        """One decoder call for all prompts of slice ``k``: (label map (H, W), labels decoded).

        Prompts of one call must be all boxes or all points; point sets of different lengths are
        padded with SAM's "not a point" (label -1), which the prompt encoder ignores. Overlaps go
        to the smaller structure (``evaluation.masks.combine_labels``).
        """
        if all(p.box is not None for p in prompts):
            batch = Prompts(boxes=mask_box_to_model(np.stack([p.box for p in prompts]), self.geom))
        elif all(p.points is not None and p.box is None for p in prompts):
            width = max(len(p.points) for p in prompts)
            points = np.zeros((len(prompts), width, 2), np.float32)
            labels = np.full((len(prompts), width), -1, np.int64)
            for i, p in enumerate(prompts):
                points[i, :len(p.points)] = scale_box(p.points, self.geom)
                labels[i, :len(p.points)] = p.point_labels
            batch = Prompts(points=points, point_labels=labels)
        else:
            raise ValueError(f"slice {k}: prompts of one call must be all boxes or all points")
        logits = self.segmenter.decode(self.get(k), batch)  # inference mode inside
        values = [int(p.label) for p in prompts]
        label_logits = to_original(logits, self.geom)
        if len(set(values)) != len(values):
            raise ValueError(f"slice {k}: one prompt per structure, got labels {values}")
        return combine_labels(label_logits, values).astype(np.int16), values


def run_per_slice(encoder: SliceEncoder, prompts: dict[int, list[ObjectPrompt]],
                  reference_slices: dict[int, int]) -> SchemeRun:
    """Schemes 1-2: every slice with prompts segmented on its own."""
    t0 = time.perf_counter()
    cached = set(encoder.encode_seconds)
    out = np.zeros(encoder.slices.shape, np.int16)
    for k, ps in prompts.items():
        out[k], _ = encoder.decode(k, ps)
    # charge the encodes this scheme reused from an earlier one as if it had run them itself
    reused = encoder.seconds_for([k for k in prompts if k in cached])
    return SchemeRun(out, dict(reference_slices), time.perf_counter() - t0 + reused, len(prompts))


def _next_prompt(mask: np.ndarray, label: int, frame: int, kind: str, margin_px: int) -> ObjectPrompt:
    if kind == "box":
        x0, y0, x1, y1 = mask_box(mask)
        h, w = mask.shape
        box = [max(0, x0 - margin_px), max(0, y0 - margin_px), min(w - 1, x1 + margin_px), min(h - 1, y1 + margin_px)]
        return ObjectPrompt(label, frame, box=np.asarray(box, np.float32))
    return ObjectPrompt(label, frame, interior_point(mask)[None], np.ones(1))


def run_carry(encoder: SliceEncoder, seeds: Sequence[ObjectPrompt], kind: str, *, margin_px: int = 2,
              min_area_px: int = 4, min_area_fraction: float = 0.05, min_consecutive_dice: float = 0.0) -> SchemeRun:
    """Carrying schemes: prompt the seed slice, then carry each mask to the next slice's prompt."""
    if kind not in ("box", "point"):
        raise ValueError(f"carry kind must be 'box' or 'point', got {kind!r}")
    min_area_px = max(1, int(min_area_px))  # an empty mask can never carry a prompt
    t0 = time.perf_counter()
    cached = set(encoder.encode_seconds)
    used: set[int] = set()
    n = encoder.slices.shape[0]
    out = np.zeros(encoder.slices.shape, np.int16)
    reach: dict[int, tuple[int, int]] = {}
    by_frame: dict[int, list[ObjectPrompt]] = {}
    for p in seeds:
        by_frame.setdefault(int(p.frame), []).append(p)
    for frame, group in sorted(by_frame.items()):
        seed_map, _ = encoder.decode(frame, group)
        used.add(frame)
        seed_area = {p.label: int((seed_map == p.label).sum()) for p in group}
        floor = {v: max(min_area_px, min_area_fraction * a) for v, a in seed_area.items()}
        alive = [v for v, a in seed_area.items() if a >= min_area_px]
        for v in seed_area:
            if v in alive:
                out[frame][(seed_map == v) & (out[frame] == 0)] = v
                reach[v] = (frame, frame)
        for step in (1, -1):
            prev = {v: seed_map == v for v in alive}
            k = frame + step
            while prev and 0 <= k < n:
                prompts = [_next_prompt(m, v, k, kind, margin_px) for v, m in prev.items()]
                label_map, _ = encoder.decode(k, prompts)
                used.add(k)
                nxt = {}
                for v in prev:
                    m = label_map == v
                    if m.sum() < floor[v] or dice(m, prev[v]) < min_consecutive_dice:
                        continue  # the structure ended (or was lost, or leaked) here
                    nxt[v] = m
                    out[k][m & (out[k] == 0)] = v
                    lo, hi = reach[v]
                    reach[v] = (min(lo, k), max(hi, k))
                prev, k = nxt, k + step
    reused = encoder.seconds_for([k for k in used if k in cached])
    return SchemeRun(out, {p.label: int(p.frame) for p in seeds}, time.perf_counter() - t0 + reused, len(used), reach)


# ----------------------------------------------------------------------------------------------
# SAM2 video predictor
# ----------------------------------------------------------------------------------------------
def run_video(predictor: torch.nn.Module, slices_u8: np.ndarray, seeds: Sequence[ObjectPrompt], *,
              offload_state_to_cpu: bool = False, autocast_bf16: bool = True) -> SchemeRun:
    """Schemes 3-4: prompts on their slice, SAM2 propagates forward then backward (frames from
    memory, made on demand)."""
    t0 = time.perf_counter()
    frames = VolumeFrames(slices_u8, int(predictor.image_size))
    with _video_context(predictor, autocast_bf16):
        state = init_state_from_frames(predictor, frames, offload_state_to_cpu)
        labels = _track(predictor, state, seeds)
    return SchemeRun(labels, {p.label: int(p.frame) for p in seeds}, time.perf_counter() - t0, frames.frames_made)


def run_video_from_jpeg(predictor: torch.nn.Module, jpeg_folder: Path, seeds: Sequence[ObjectPrompt], *,
                        offload_state_to_cpu: bool = False, autocast_bf16: bool = True) -> SchemeRun:
    """The same through the sam2 package's own route (``init_state`` on a JPEG folder, frames
    loaded and kept on the CPU): for the equivalence test and ``mskseg bench video3d``."""
    t0 = time.perf_counter()
    with _video_context(predictor, autocast_bf16):
        state = predictor.init_state(str(jpeg_folder), offload_video_to_cpu=True,
                                     offload_state_to_cpu=offload_state_to_cpu)
        labels = _track(predictor, state, seeds)
    return SchemeRun(labels, {p.label: int(p.frame) for p in seeds}, time.perf_counter() - t0, int(state["num_frames"]))


@contextlib.contextmanager
def _video_context(predictor: torch.nn.Module, autocast_bf16: bool) -> Iterator[None]:
    device = predictor.device
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                enabled=autocast_bf16 and device.type == "cuda"):
        yield


def _track(predictor: torch.nn.Module, state: dict, seeds: Sequence[ObjectPrompt]) -> np.ndarray:
    """Add the prompts and propagate both ways; (N, H, W) int16 labels, highest logit wins.

    Structures prompted on different slices are tracked in separate passes over the same frames
    (the predictor starts a pass at its earliest prompted slice, and an object prompted later
    would have no memory before its prompt).
    """
    n, h, w = int(state["num_frames"]), int(state["video_height"]), int(state["video_width"])
    best = torch.full((n, h, w), float("-inf"))
    labels = torch.zeros((n, h, w), dtype=torch.int16)
    by_frame: dict[int, list[ObjectPrompt]] = {}
    for p in seeds:
        by_frame.setdefault(int(p.frame), []).append(p)
    for frame, group in sorted(by_frame.items()):
        predictor.reset_state(state)
        for p in group:
            predictor.add_new_points_or_box(state, frame_idx=frame, obj_id=int(p.label), points=p.points,
                                            labels=p.point_labels, box=p.box)
        for reverse in (False, True):
            for f, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=frame, reverse=reverse):
                lg = logits[:, 0].float().cpu()  # (objects, H, W) at the slice's size
                top, arg = lg.max(dim=0)
                take = (top > 0) & (top > best[f])
                ids = torch.as_tensor([int(o) for o in obj_ids], dtype=torch.int16)
                labels[f] = torch.where(take, ids[arg], labels[f])
                best[f] = torch.where(take, top, best[f])
    return labels.numpy()
