"""The ablation grid: entries (a profile's ``finetune.experiments``) expanded into unique experiments.

``expand_grid(entries, defaults, prepared)`` turns a grid into experiments; ``make_experiment``
makes one without a grid. Each entry names an ablation ``group`` (size, strategy, knee, mixing,
initial_weights), what to ``train_on`` (dataset names or a mix) and, for any setting of the
defaults (a profile's ``finetune.defaults``), one value or a list of values; lists are crossed. Two groups asking for
the same training (same data, model, strategy, shift and size) share one experiment, which then
lists both groups and is scored on the union of their evaluation datasets.

``box_shift_grid_px`` is the study's box-shift augmentation: each box side moves outward by a
uniform random integer 0..N pixels of the square mask grid (``finetune.training.mask_grid_px``,
256 by default), so N = 20 is up to 80 px at 1024 px input and 20 px for 256-px LiteMedSAM.

Table 1's "Fine-tuned" arm is the study's mskSAM: trained on ``all_msk`` (or the profile's
chosen mix) with the image encoder *and* the mask decoder trained (``strategy: full``), no box
shift and every training subject. The experiment of group ``initial_weights`` with exactly
these settings carries ``table1_arm = True`` in its record; the ``partial`` experiments of the
same group (encoder frozen) are the second arm of the initial-weights comparison (S9).

Training mixes (the study's dataset-mixing ablation):

* ``knee``: MAPSS (both sites) + DESS + CUBE; ``spine``: T1ax + T1sag (both) + T2ax;
* ``muscle``: thigh T1ax + spine T1ax (the two muscle-segmentation sets);
* ``all_msk``: every prepared dataset except the undersampled knee CUBE, which is held out and
  scored as an external validation set.

An experiment lives in ``<root>/<task>/<group>/Run_N`` (``root`` is ``runs_dir/finetune/<tag>``
under a profile): ``task`` is what it
trains on, ``group`` the setting slug (``lite_medsam-frozen-gridshift0-nall``: initial weights,
encoder frozen or trained, box shift in grid pixels, training subjects), ``N`` the repeat.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import pandas as pd

from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.errors import UserError
from mskseg_lib.models.registry import get_spec

HELD_OUT = "Knee_3D_CUBE_Undersampled_Research_Anatomical_50"
MIXES: dict[str, tuple[str, ...]] = {
    "knee": ("Knee_2D_MAPSS-echo1_Research_Compositional_22", "Knee_2D_MAPSS-echo1_Research_Compositional_39",
             "Knee_3D_DESS_Research_Anatomical_86", "Knee_3D_CUBE_Research_Anatomical_300"),
    "spine": ("Spine_2D_T1ax_Clinical_Anatomical_59", "Spine_2D_T1sag_Clinical_Anatomical_23",
              "Spine_2D_T1sag_Clinical_Anatomical_111", "Spine_2D_T2ax_Clinical_Anatomical_38"),
    "muscle": ("Thigh_2D_T1ax_Clinical_Anatomical_50", "Spine_2D_T1ax_Clinical_Anatomical_59"),
}
MIX_KIND = {"knee": "anatomy", "spine": "anatomy", "muscle": "muscle", "all_msk": "all_msk"}
# "effects": trainings no figure shows, added so each finetuning type's mixed model (notebook 04)
# has the datasets and the settings (encoder, box shift) its fixed effects need
GROUPS = ("size", "strategy", "knee", "mixing", "initial_weights", "effects")
STRATEGIES = ("partial", "full")
SETTINGS = ("model", "strategy", "box_shift_grid_px", "train_subjects", "evaluate_on")
RENAMED = {"box_shift_px": "box_shift_grid_px"}  # old key -> new key (clear error for old profiles)
TABLE1_GROUP = "initial_weights"


class GridError(UserError, ValueError):
    """``finetune.experiments`` names something that does not exist or cannot be crossed."""


@dataclass(frozen=True)
class Experiment:
    """One training run definition (before repeats)."""

    task: str  # what it trains on: a dataset name or a mix name
    mix_kind: str  # single, anatomy, muscle, all_msk
    train_datasets: tuple[str, ...]
    eval_datasets: tuple[str, ...]
    model_key: str  # initial weights: a zoo model
    strategy: str  # partial (encoder frozen) or full
    box_shift_grid_px: int  # largest outward move of a box side, in mask-grid pixels
    train_subjects: str  # "all" or a count per dataset
    groups: tuple[str, ...] = field(default=())

    @property
    def slug(self) -> str:
        """The setting's folder name, e.g. ``lite_medsam-frozen-gridshift0-nall``."""
        enc = "frozen" if self.strategy == "partial" else "trained"
        return f"{self.model_key}-{enc}-gridshift{self.box_shift_grid_px}-n{self.train_subjects}"

    def run_id(self, repeat: int) -> str:
        """``<task>/<slug>/Run_<repeat>``: the run's id and its folder below the grid's root."""
        return f"{self.task}/{self.slug}/Run_{repeat}"

    @property
    def training_key(self) -> tuple:
        """What makes two trainings the same: task, model, strategy, box shift, subjects."""
        return (self.task, self.model_key, self.strategy, self.box_shift_grid_px, self.train_subjects)

    @property
    def table1_arm(self) -> bool:
        """True for Table 1's finetuned arm: group ``initial_weights``, encoder and decoder trained,
        no box shift, every training subject (the study's mskSAM)."""
        return (TABLE1_GROUP in self.groups and self.strategy == "full" and self.box_shift_grid_px == 0
                and self.train_subjects == "all")

    def to_record(self) -> dict[str, Any]:
        """The experiment as a table row (lists joined by commas, plus encoder, model name, slug
        and ``table1_arm``): a row of S6 and of ``experiments.csv``."""
        d = asdict(self)
        d.update(train_datasets=",".join(self.train_datasets), eval_datasets=",".join(self.eval_datasets),
                 groups=",".join(self.groups), encoder="frozen" if self.strategy == "partial" else "trained",
                 model=get_spec(self.model_key).display_name, slug=self.slug, table1_arm=self.table1_arm)
        return d


def resolve_training_data(name: str, prepared: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """(mix kind, datasets) of a ``train_on`` entry, restricted to the prepared datasets.

    Parameters
    ----------
    name : a dataset name or a mix (``knee``, ``spine``, ``muscle``, ``all_msk``).
    prepared : the prepared dataset names.

    Returns
    -------
    (mix_kind, datasets)
        ``single`` and the dataset itself, or the mix's kind and its prepared members (all_msk:
        every prepared dataset but the held-out undersampled knee CUBE).

    Raises
    ------
    GridError
        A dataset that was not prepared, or a mix with no prepared member.
    """
    if name == "all_msk":
        chosen = tuple(d for d in prepared if d != HELD_OUT)
    elif name in MIXES:
        chosen = tuple(d for d in MIXES[name] if d in prepared)
    else:
        get_dataset(name)  # unknown names fail with the list of known ones
        if name not in prepared:
            raise GridError(f"finetune.experiments: dataset {name} is not in the prepared data (run prepare)")
        return "single", (name,)
    if not chosen:
        raise GridError(f"finetune.experiments: mix {name!r} has no prepared dataset (members: {MIXES.get(name)})")
    return MIX_KIND[name], chosen


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_value(key: str, value: Any, where: str) -> Any:
    if key == "strategy" and value not in STRATEGIES:
        raise GridError(f"{where}: strategy must be one of {STRATEGIES}, got {value!r}")
    if key == "box_shift_grid_px" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise GridError(f"{where}: box_shift_grid_px must be an integer >= 0 (mask-grid pixels), got {value!r}")
    if key == "train_subjects" and not (value == "all" or (isinstance(value, int) and value > 0)):
        raise GridError(f"{where}: train_subjects must be a positive integer or 'all', got {value!r}")
    if key == "model":
        get_spec(value)
    return value


def _refuse_renamed(where: str, entry: Mapping[str, Any]) -> None:
    for old, new in RENAMED.items():
        if old in entry:
            raise GridError(f"{where}: '{old}' was renamed '{new}' (largest outward move of a box side, in "
                            "pixels of the finetune.training.mask_grid_px grid)")


def expand_grid(entries: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any],
                prepared: Sequence[str]) -> list[Experiment]:
    """Every unique experiment of a grid, in the order its entries ask for them.

    Parameters
    ----------
    entries : the grid (the profile's ``finetune.experiments``): each a mapping with ``group``
        (one of ``GROUPS``), ``train_on`` (dataset or mix names) and, for any key of ``SETTINGS``,
        one value or a list of values; lists are crossed.
    defaults : a value for every key of ``SETTINGS`` (the profile's ``finetune.defaults``).
    prepared : the prepared dataset names (mixes keep only these).

    Returns
    -------
    list of Experiment
        One per distinct training (data, model, strategy, box shift, subjects); two groups asking
        for the same training share it (its ``groups`` lists both, its evaluation datasets are
        the union).

    Raises
    ------
    GridError
        An entry names an unknown key, group, dataset, mix or value; or Table 1's arm is asked
        for twice for one model.
    """
    defaults = dict(defaults)
    _refuse_renamed("finetune.defaults", defaults)
    missing = sorted(set(SETTINGS) - set(defaults))
    if missing or set(defaults) - set(SETTINGS):
        raise GridError(f"finetune.defaults must set exactly {list(SETTINGS)} (missing {missing})")
    prepared = list(prepared)
    merged: dict[tuple, dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        _add_entry(merged, f"finetune.experiments[{i}]", entry, defaults, prepared)
    out = [Experiment(task=k[0], mix_kind=v["kind"], train_datasets=v["datasets"], eval_datasets=tuple(v["eval"]),
                      model_key=k[1], strategy=k[2], box_shift_grid_px=k[3], train_subjects=k[4],
                      groups=tuple(v["groups"]))
           for k, v in merged.items()]
    _refuse_two_table1_arms(out)
    return out


def _add_entry(merged: dict[tuple, dict[str, Any]], where: str, entry: Any, defaults: Mapping[str, Any],
               prepared: list[str]) -> None:
    """Cross one grid entry's lists into ``merged`` (training key -> kind, datasets, groups, eval)."""
    if not isinstance(entry, Mapping) or "group" not in entry or "train_on" not in entry:
        raise GridError(f"{where}: needs 'group' and 'train_on', got {entry!r}")
    _refuse_renamed(where, entry)
    unknown = set(entry) - {"group", "train_on", *SETTINGS}
    if unknown:
        raise GridError(f"{where}: unknown keys {sorted(unknown)} (allowed: group, train_on, {', '.join(SETTINGS)})")
    group = str(entry["group"])
    if group not in GROUPS:
        raise GridError(f"{where}: group must be one of {GROUPS}, got {group!r}")
    evaluate_on = [str(d) for d in _as_list(entry.get("evaluate_on", defaults["evaluate_on"]))]
    axes = {k: [_check_value(k, v, where) for v in _as_list(entry.get(k, defaults[k]))]
            for k in ("model", "strategy", "box_shift_grid_px", "train_subjects")}
    for train_on in _as_list(entry["train_on"]):
        kind, datasets = resolve_training_data(str(train_on), prepared)
        wanted = _scored_on(str(train_on), datasets, evaluate_on, prepared)
        for model, strategy, shift, n in itertools.product(*axes.values()):
            key = (str(train_on), model, strategy, int(shift), str(n))
            rec = merged.setdefault(key, {"kind": kind, "datasets": datasets, "groups": [], "eval": []})
            if group not in rec["groups"]:
                rec["groups"].append(group)
            rec["eval"].extend(d for d in wanted if d not in rec["eval"])


def _scored_on(train_on: str, datasets: tuple[str, ...], evaluate_on: Sequence[str],
               prepared: Sequence[str]) -> list[str]:
    """The requested datasets it was trained on (all of them if none is requested or none
    overlaps); all-MSK also the held-out undersampled set."""
    wanted = [d for d in evaluate_on if d in datasets] or list(datasets)
    if train_on == "all_msk" and HELD_OUT in prepared:
        wanted.append(HELD_OUT)
    return wanted


def _refuse_two_table1_arms(experiments: list[Experiment]) -> None:
    arms: dict[str, list[str]] = {}
    for e in experiments:
        if e.table1_arm:
            arms.setdefault(e.model_key, []).append(e.task)
    for model, tasks in arms.items():
        if len(tasks) > 1:
            raise GridError(f"finetune.experiments: group initial_weights trains {model} with strategy full, no box "
                            f"shift and every subject on {tasks}; Table 1 takes one such arm per model (train it "
                            "on one mix)")


def make_experiment(train_on: str, model_key: str, prepared: Sequence[str], *, strategy: str = "partial",
                    box_shift_grid_px: int = 0, train_subjects: str | int = "all",
                    evaluate_on: Sequence[str] = (), group: str = "size") -> Experiment:
    """One experiment without a grid: what a notebook needs to finetune one model once.

    Parameters
    ----------
    train_on : a prepared dataset name or a mix (``knee``, ``spine``, ``muscle``, ``all_msk``).
    model_key : the zoo model whose weights training starts from (e.g. ``lite_medsam``).
    prepared : the prepared dataset names.
    strategy : ``partial`` (image encoder frozen, mask decoder trained) or ``full``.
    box_shift_grid_px : largest outward move of a box side, in mask-grid pixels (0: none).
    train_subjects : training subjects per dataset, or ``"all"``.
    evaluate_on : datasets to score it on (default: those it trains on).
    group : the ablation group it is recorded under.

    Returns
    -------
    Experiment
        As :func:`expand_grid` makes it for a one-entry grid.
    """
    entry = {"group": group, "train_on": [train_on], "model": model_key, "strategy": strategy,
             "box_shift_grid_px": box_shift_grid_px, "train_subjects": train_subjects,
             "evaluate_on": list(evaluate_on)}
    return expand_grid([entry], {k: entry[k] for k in SETTINGS}, prepared)[0]


def experiments_frame(experiments: Sequence[Experiment], repeats: int = 1) -> pd.DataFrame:
    """The definitions table (S6): one row per (experiment, repeat).

    Parameters
    ----------
    experiments : the grid.
    repeats : runs per experiment.

    Returns
    -------
    pandas.DataFrame
        ``experiment_id`` (the run id), ``repeat`` and the columns of ``Experiment.to_record``.
    """
    rows = []
    for e in experiments:
        for r in range(1, repeats + 1):
            rows.append({"experiment_id": e.run_id(r), "repeat": r, **e.to_record()})
    return pd.DataFrame(rows)
