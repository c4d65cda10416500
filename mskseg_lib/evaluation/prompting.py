"""Box prompts from the ground truth, as a user drawing boxes would give them.

One box per label present on a slice; for labels flagged ``multi_instance`` in the catalog
(paired muscles, meniscal horns) one box per connected piece instead, so a box never spans two
separate structures with background between them. Exact boxes are the tight boxes of the
original slice (``slices.parquet``), mapped to each model's input by ``mask_box_to_model`` (the
same pixels after the resize).

A prompt condition (``zero_shot.conditions``, ``finetune.evaluation.conditions``) may perturb
every box, seeded by subject, slice, label, instance and condition name, so every model sees
exactly the same boxes:

* ``kind: shift`` (the default; ``{name, shift_grid_px: N}``): the study's box shift. Each side
  moves *outward* by its own uniform random integer 0..N pixels of the square mask grid
  (``zero_shot.mask_grid_px``, 256 as in the study), converted to original-slice pixels (one
  grid pixel spans ``cols / grid`` original columns and ``rows / grid`` original rows under
  ``stretch``; ``max(rows, cols) / grid`` under ``pad``) and clipped to the slice. In model
  pixels that is N x (input / grid): up to 4N px at 1024, N px for 256-px LiteMedSAM, the same
  physical box for every model. The shifted box always contains the exact one.
* ``kind: jitter`` (``{name, kind: jitter, jitter_px: N}``): a labelled, secondary condition, not
  the study's: each side moves in or out by a uniform real amount up to N original-slice pixels.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mskseg_lib.data.boxes import jitter_box, shift_box_outward
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.preprocess import geometry_of
from mskseg_lib.errors import UserError

KINDS = ("shift", "jitter")


class ConditionError(UserError, ValueError):
    """A prompt condition entry is malformed (one line naming the entry)."""


CONDITION_KEYS = {"name", "kind", "shift_grid_px", "jitter_px"}


@dataclass(frozen=True)
class Condition:
    """A prompt condition: its name in tables and how its boxes are perturbed.

    ``kind="shift"``: outward study shift of up to ``shift_grid_px`` pixels of a square
    ``mask_grid_px`` grid; ``kind="jitter"``: symmetric jitter of up to ``jitter_px``
    original-slice pixels. Both zero: the exact boxes.
    """

    name: str
    shift_grid_px: int = 0
    kind: str = "shift"
    jitter_px: float = 0.0
    mask_grid_px: int = 256

    @property
    def exact(self) -> bool:
        return (self.kind == "shift" and self.shift_grid_px == 0) or (self.kind == "jitter" and self.jitter_px <= 0)


@dataclass(frozen=True)
class BoxPrompt:
    label: int
    instance: int
    box_px: tuple[float, float, float, float]  # x0, y0, x1, y1 in original display-frame pixels


def parse_conditions(items: list[Mapping[str, Any]], mask_grid_px: int,
                     source: str = "zero_shot.conditions") -> list[Condition]:
    """Conditions from the profile, with a one-line error for a malformed entry or a duplicate name.

    Parameters
    ----------
    items : list of mappings
        ``{name}`` (exact boxes), ``{name, shift_grid_px: N}`` (the study's outward shift) or
        ``{name, kind: jitter, jitter_px: N}`` (symmetric jitter, secondary).
    mask_grid_px : int
        Side of the square grid the shift is counted on (``zero_shot.mask_grid_px``).
    source : str
        Where the list comes from, for error messages.

    Returns
    -------
    list of Condition
        In the given order; a malformed entry or a repeated name raises ``ConditionError``
        (a ``UserError``) naming the entry.
    """
    if not isinstance(mask_grid_px, int) or isinstance(mask_grid_px, bool) or mask_grid_px < 1:
        raise ConditionError(f"{source}: mask_grid_px must be a positive integer, got {mask_grid_px!r}")
    out: list[Condition] = []
    for i, item in enumerate(items):
        where = f"{source}[{i}]"
        if not isinstance(item, Mapping) or "name" not in item or set(item) - CONDITION_KEYS:
            raise ConditionError(f"{where}: expected {{name, shift_grid_px}} or {{name, kind: jitter, jitter_px}}, "
                             f"got {item!r}")
        kind = str(item.get("kind", "shift"))
        if kind not in KINDS:
            raise ConditionError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
        shift = item.get("shift_grid_px", 0)
        jitter = item.get("jitter_px", 0)
        if kind == "shift":
            if jitter:
                raise ConditionError(f"{where}: jitter_px is the symmetric jitter (add 'kind: jitter'); the study's "
                                 f"outward shift is 'shift_grid_px' (pixels of the {mask_grid_px}-px mask grid)")
            if isinstance(shift, bool) or not isinstance(shift, (int, float)) or shift < 0 or shift != int(shift):
                raise ConditionError(f"{where}: shift_grid_px must be an integer >= 0, got {shift!r}")
            out.append(Condition(str(item["name"]), int(shift), "shift", 0.0, mask_grid_px))
        else:
            if shift:
                raise ConditionError(f"{where}: a 'kind: jitter' condition takes jitter_px, not shift_grid_px")
            if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or jitter < 0:
                raise ConditionError(f"{where}: jitter_px must be a number >= 0, got {jitter!r}")
            out.append(Condition(str(item["name"]), 0, "jitter", float(jitter), mask_grid_px))
    names = [c.name for c in out]
    if len(set(names)) != len(names) or not out:
        raise ConditionError(f"{source}: need at least one condition with distinct names, got {names}")
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


def original_px_per_grid_px(slice_row: Mapping[str, Any], mask_grid_px: int) -> tuple[float, float]:
    """(x, y) original-slice pixels spanned by one pixel of the square ``mask_grid_px`` grid.

    The grid covers the square model input, so this follows the slice's resize mode:
    ``cols / grid`` and ``rows / grid`` under ``stretch``, ``max(rows, cols) / grid`` on both
    axes under ``pad``. It does not depend on the model's input size.
    """
    geom = geometry_of(slice_row, mask_grid_px)
    return 1.0 / geom.scale_cols, 1.0 / geom.scale_rows


def apply_condition(prompts: list[BoxPrompt], condition: Condition, slice_row: Mapping[str, Any],
                    seed: int) -> list[BoxPrompt]:
    """The prompts as seen under ``condition``, in original-slice pixels, inside the slice.

    ``shift``: each side outward by ``rng.integers(0, N + 1)`` grid pixels times
    ``original_px_per_grid_px`` (see the module docstring), clipped to ``[0, cols - 1]`` x
    ``[0, rows - 1]``; ``jitter``: ``jitter_box``. Exact conditions return ``prompts`` unchanged.
    """
    if condition.exact:
        return prompts
    shape = (int(slice_row["rows_px"]), int(slice_row["cols_px"]))
    step = original_px_per_grid_px(slice_row, condition.mask_grid_px) if condition.kind == "shift" else None
    out = []
    for p in prompts:
        rng = stable_rng(seed, condition.name, slice_row["dataset"], slice_row["subject_id"],
                         slice_row["slice_index"], p.label, p.instance)
        if condition.kind == "shift":
            box = shift_box_outward(list(p.box_px), condition.shift_grid_px, rng, (shape[1] - 1, shape[0] - 1), step)
        else:
            box = jitter_box(list(p.box_px), condition.jitter_px, rng, shape)
        out.append(BoxPrompt(p.label, p.instance, tuple(float(v) for v in box)))
    return out
