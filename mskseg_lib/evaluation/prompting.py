"""Box prompts from the ground truth, as a user drawing boxes would give them.

One box per label present on a slice; for labels flagged ``multi_instance`` in the catalog
(paired muscles, meniscal horns) one box per connected piece instead, so a box never spans two
separate structures with background between them. A prompt condition may jitter every side of
every box by up to ``jitter_px`` pixels of the *original* slice (the same physical prompting
error whatever the model's input size). The jitter is seeded by subject, slice, label and
condition, so every model sees exactly the same boxes.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mskseg_lib.data.boxes import jitter_box
from mskseg_lib.data.catalog import get_dataset


@dataclass(frozen=True)
class Condition:
    """A prompt condition: its name in tables and the box jitter in original-slice pixels."""

    name: str
    jitter_px: float = 0.0


@dataclass(frozen=True)
class BoxPrompt:
    label: int
    instance: int
    box_px: tuple[float, float, float, float]  # x0, y0, x1, y1 in original display-frame pixels


def parse_conditions(items: list[Mapping[str, Any]], source: str = "zero_shot.conditions") -> list[Condition]:
    """Conditions from the profile, with a clear error for a malformed entry or a duplicate name."""
    out: list[Condition] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or "name" not in item or set(item) - {"name", "jitter_px"}:
            raise ValueError(f"{source}[{i}]: expected {{name, jitter_px}}, got {item!r}")
        jitter = float(item.get("jitter_px", 0.0))
        if jitter < 0:
            raise ValueError(f"{source}[{i}]: jitter_px must be >= 0, got {jitter}")
        out.append(Condition(str(item["name"]), jitter))
    names = [c.name for c in out]
    if len(set(names)) != len(names) or not out:
        raise ValueError(f"{source}: need at least one condition with distinct names, got {names}")
    return out


def stable_rng(*keys: Any) -> np.random.Generator:
    """A generator seeded from the keys' text (stable across processes and Python versions)."""
    digest = hashlib.sha256("|".join(map(str, keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def gt_box_prompts(slice_row: Mapping[str, Any], instance_prompts: bool = True) -> list[BoxPrompt]:
    """The ground-truth boxes of one slice-table row, label by label."""
    spec = get_dataset(slice_row["dataset"])
    multi = {lab.value for lab in spec.labels if lab.multi_instance}
    boxes = json.loads(slice_row["boxes_json"])
    instances = json.loads(slice_row["instance_boxes_json"])
    out: list[BoxPrompt] = []
    for key in sorted(boxes, key=int):
        label = int(key)
        pieces = instances[key] if instance_prompts and label in multi else [boxes[key]]
        out.extend(BoxPrompt(label, i, tuple(float(v) for v in b)) for i, b in enumerate(pieces))
    return out


def apply_condition(prompts: list[BoxPrompt], condition: Condition, slice_row: Mapping[str, Any],
                    seed: int) -> list[BoxPrompt]:
    """The prompts as seen under ``condition`` (jittered if it says so, inside the slice)."""
    if condition.jitter_px <= 0:
        return prompts
    shape = (int(slice_row["rows_px"]), int(slice_row["cols_px"]))
    out = []
    for p in prompts:
        rng = stable_rng(seed, condition.name, slice_row["dataset"], slice_row["subject_id"],
                         slice_row["slice_index"], p.label, p.instance)
        out.append(BoxPrompt(p.label, p.instance, tuple(float(v) for v in jitter_box(list(p.box_px), condition.jitter_px, rng, shape))))
    return out
