"""Count a profile's compute per notebook (``workload.KINDS``), from its prepared data or, before
there is any, from a nominal inventory built from the dataset cards.

The counts use the stages' own selections (``select_slices``, ``choose_subjects``,
``spread_slices``, the expanded finetuning grid), so they follow the profile exactly where the
stage's choice depends only on the tables. What they cannot know before running is bounded from
above and said here:

* training runs for ``max_epochs`` (early stopping can only shorten it);
* notebook 05 scores one finetuned model per dataset with a trained encoder (a frozen-encoder
  winner would reuse stored embeddings);
* AutoLabel (06) and video3d (07) encode every slice of their volumes that carries a label (07:
  a structure of ``video3d.tissues``); SAM2's video schemes encode each frame once per
  propagation (two video schemes) plus once for the per-slice schemes;
* embeddings are shared through the store wherever the stage uses it (02, 03's frozen-encoder
  training and scoring, 04, 05's zero-shot model, 06 and 07's image-only models): a slice
  already encoded by the same model counts once (06 and 07 find it by content, so this assumes
  their slices are the prepared ones, pixel for pixel; the run's ledger shows whether they are).

The nominal inventory (``nominal_inventory``) takes each study card's subject count from its
name's trailing number (``Knee_3D_DESS_Research_Anatomical_86``: 86) unless a site manifest
gives the subjects, its slices from the protocol's ``n_slices`` (every slice labelled, every
label on every slice: an upper bound), and splits by ``prepare.split_fractions``.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mskseg_lib.data.catalog import DATASETS, REAL_SPINE, get_dataset
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation.zero_shot import SliceSelection, select_slices
from mskseg_lib.finetuning.samples import choose_subjects, spread_slices
from mskseg_lib.from_profile.data import prepared_dir
from mskseg_lib.from_profile.finetune import evaluation_settings, grid_experiments, train_settings
from mskseg_lib.from_profile.zero_shot import slice_selection
from mskseg_lib.workload import work_frame

__all__ = ["disk_gib", "inventory", "nominal_inventory", "profile_workload"]

_TRAILING_COUNT = re.compile(r"_(\d+)$")
REAL_SPINE_SUBJECTS = 8  # the shared real spine fixture (../shared/data/README.md)


def _split_of(i: int, n: int, fractions: Sequence[float]) -> str:
    n_train = round(n * fractions[0])
    n_val = round(n * fractions[1])
    return "train" if i < n_train else ("val" if i < n_train + n_val else "test")


def _manifest_counts(cfg: Mapping[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for src in cfg.get("sources") or []:
        path = Path(str(src.get("path", ""))) if src.get("type") == "manifest" else None
        if path is not None and path.is_file():
            m = pd.read_csv(path, usecols=["dataset", "subject_id"])
            for d, n in m.drop_duplicates().groupby("dataset").size().items():
                counts[str(d)] = counts.get(str(d), 0) + int(n)
    return counts


def nominal_inventory(cfg: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(subjects, slices) tables of the data a profile would prepare, from the cards (see the
    module docstring); the columns the counts need only."""
    c = cfg["cohort"]
    manifest = _manifest_counts(cfg)
    if c["enabled"]:
        names = list(DATASETS) if c["datasets"] == "all" else list(c["datasets"])
        per = {d: int(c["subjects_override"].get(d, c["subjects_per_dataset"])) for d in names}
        slice_scale = float(c["slice_scale"])
    else:
        names = sorted(manifest) or list(DATASETS)
        per = {d: manifest.get(d) or int(_TRAILING_COUNT.search(d).group(1)) for d in names}
        slice_scale = 1.0
    if any(s.get("type") == "real_spine" for s in cfg.get("sources") or []):
        names.append(REAL_SPINE.name)
        per[REAL_SPINE.name] = REAL_SPINE_SUBJECTS
    fractions = cfg["prepare"]["split_fractions"]
    subj, sl = [], []
    for d in names:
        spec = get_dataset(d)
        n_slices = max(1, round((spec.protocol.n_slices if spec.protocol else 24) * slice_scale))
        labels = [lab.value for lab in spec.labels]
        for i in range(per[d]):
            sid = f"{d}-{i:04d}"
            subj.append({"dataset": d, "subject_id": sid, "split": _split_of(i, per[d], fractions),
                         "n_slices": n_slices})
            sl += [{"dataset": d, "subject_id": sid, "slice_index": k, "labels_present": labels}
                   for k in range(n_slices)]
    subjects = pd.DataFrame(subj)
    slices = pd.DataFrame(sl).merge(subjects[["dataset", "subject_id", "split"]], on=["dataset", "subject_id"])
    return subjects, slices


def inventory(cfg: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(subjects, slices, what): the prepared tables when the profile has prepared its data
    (``what = "prepared"``), else the nominal inventory (``"nominal"``)."""
    root = prepared_dir(cfg)
    if (root / "subjects.parquet").exists() and (root / "slices.parquet").exists():
        subjects, slices = load_tables(root)
        if "n_slices" not in subjects:
            subjects = subjects.assign(n_slices=subjects["n_processed_slices"])
        labels = [json.loads(v) if isinstance(v, str) else [int(x) for x in v] for v in slices["labels_present"]]
        slices = slices.assign(labels_present=labels)
        if "instance_boxes_json" in slices:  # zero-shot prompts each piece of a multi-instance label
            slices = slices.assign(n_boxes=[sum(len(b) for b in json.loads(v).values()) if isinstance(v, str)
                                            else len(labs) for v, labs in zip(slices["instance_boxes_json"], labels)])
        return subjects, slices, "prepared"
    subjects, slices = nominal_inventory(cfg)
    return subjects, slices, "nominal"


class _Counter:
    """Work rows, with the embedding store's sharing: (model, slice) encoded once."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.stored: set[tuple] = set()

    def add(self, notebook: str, model: str, kind: str, count: int, parallel: bool = False) -> None:
        if count:
            self.rows.append({"notebook": notebook, "model": model, "kind": kind, "count": int(count),
                              "parallel": parallel})

    def encode_stored(self, notebook: str, model: str, slices: pd.DataFrame, parallel: bool = False) -> None:
        keys = {(model, d, s, int(k)) for d, s, k in zip(slices["dataset"], slices["subject_id"],
                                                        slices["slice_index"])}
        self.add(notebook, model, "encode", len(keys - self.stored), parallel)
        self.stored |= keys

    def boxes(self, notebook: str, model: str, slices: pd.DataFrame, per_slice: int = 1,
              parallel: bool = False) -> None:
        n = slices["n_boxes"] if "n_boxes" in slices else slices["labels_present"].map(len)
        self.add(notebook, model, "box", int(n.sum()) * per_slice, parallel)


def _labelled(slices: pd.DataFrame, subjects: pd.DataFrame) -> pd.DataFrame:
    keys = set(zip(subjects["dataset"], subjects["subject_id"]))
    return slices[[k in keys for k in zip(slices["dataset"], slices["subject_id"])]]


def _finetune(cfg: Mapping[str, Any], subjects: pd.DataFrame, slices: pd.DataFrame, count: _Counter) -> None:
    f = cfg["finetune"]
    experiments = grid_experiments(cfg, sorted(subjects["dataset"].unique()))
    base = train_settings(cfg)
    ev = evaluation_settings(cfg)
    n_conditions = len(ev.conditions)
    for exp in experiments:
        ts = base.for_strategy(exp.strategy)
        for repeat in range(int(f["repeats"])):
            train = choose_subjects(subjects, exp.train_datasets, "train", exp.train_subjects, ts.seed + repeat)
            samples = spread_slices(_labelled(slices, train), ts.max_slices_per_subject)
            per_epoch = len(samples) if ts.max_samples_per_epoch <= 0 else min(len(samples), ts.max_samples_per_epoch)
            steps = ts.max_epochs * math.ceil(per_epoch / ts.batch_size)
            val_subjects = subjects[subjects["dataset"].isin(exp.train_datasets) & (subjects["split"] == "val")]
            val = spread_slices(_labelled(slices, val_subjects), ts.max_slices_per_subject)
            n_val = len(val) if ts.val_max_samples <= 0 else min(len(val), ts.val_max_samples)
            scored = select_slices(subjects, slices, SliceSelection(
                split=ev.split, datasets=tuple(exp.eval_datasets), max_subjects_per_dataset=ev.max_subjects_per_dataset,
                max_slices_per_subject=ev.max_slices_per_subject))
            if exp.strategy == "partial":
                count.encode_stored("03", exp.model_key, pd.concat([samples, val.head(n_val), scored]), True)
                count.add("03", exp.model_key, "frozen_step", steps, True)
                count.add("03", exp.model_key, "box", ts.max_epochs * n_val, True)
            else:
                count.add("03", exp.model_key, "full_step", steps, True)
                count.add("03", exp.model_key, "encode", ts.max_epochs * n_val + len(scored), True)
                count.add("03", exp.model_key, "box", ts.max_epochs * n_val, True)
            count.boxes("03", exp.model_key, scored, n_conditions, True)
    # each base model scored zero-shot on the same test slices (through the store)
    for model in sorted({e.model_key for e in experiments}):
        datasets = sorted({d for e in experiments if e.model_key == model for d in e.eval_datasets})
        scored = select_slices(subjects, slices, SliceSelection(
            split=ev.split, datasets=tuple(datasets), max_subjects_per_dataset=ev.max_subjects_per_dataset,
            max_slices_per_subject=ev.max_slices_per_subject))
        count.encode_stored("03", model, scored, True)
        count.boxes("03", model, scored, n_conditions, True)


def _real_subjects(subjects: pd.DataFrame, max_subjects: int) -> pd.DataFrame:
    """The real spine fixture's subjects (first ``max_subjects`` by id; 0 = all)."""
    chosen = subjects[subjects["dataset"] == REAL_SPINE.name].sort_values("subject_id")
    return chosen.head(max_subjects) if max_subjects > 0 else chosen


def _volume_slices(subjects: pd.DataFrame, slices: pd.DataFrame, datasets: Any,
                   split: Any, max_per_dataset: int) -> pd.DataFrame:
    from mskseg_lib.autolabel.study import select_subjects

    chosen = select_subjects(subjects, "all" if datasets == "all" else list(datasets), split, max_per_dataset)
    return _labelled(slices, chosen)


def profile_workload(cfg: Mapping[str, Any], subjects: pd.DataFrame, slices: pd.DataFrame,
                     model_keys: Sequence[str] | None = None, stored: dict[str, int] | None = None) -> pd.DataFrame:
    """The work table (``workload.WORK_COLUMNS``) of notebooks 02-07 of ``cfg`` on these tables.

    Parameters
    ----------
    cfg : a loaded profile.
    subjects, slices : DataFrame
        Prepared tables (``data.tables.load_tables``) or ``nominal_inventory(cfg)``.
    model_keys : sequence of str, optional
        Only these models (e.g. those whose weights are present); default every model the
        profile names.
    stored : dict, optional
        Filled with model -> slices the embedding store ends up holding (its disk size).
    """
    keep = None if model_keys is None else set(model_keys)

    def use(models: Sequence[str]) -> list[str]:
        return [m for m in models if keep is None or m in keep]

    count = _Counter()
    z = cfg["zero_shot"]
    sel = select_slices(subjects, slices, slice_selection(cfg))
    for model in use(z["models"]):
        count.encode_stored("02", model, sel)
        count.boxes("02", model, sel, len(z["conditions"]))
    _finetune(cfg, subjects, slices, count)
    if keep is not None:
        count.rows = [r for r in count.rows if r["notebook"] != "03" or r["model"] in keep]
    ph = cfg["mixed_effects"]["physics"]
    if ph["enabled"] and use([ph["model"]]):
        s = select_slices(subjects, slices, SliceSelection(split=ph["split"], datasets="all",
                                                           max_subjects_per_dataset=int(ph["max_subjects_per_dataset"]),
                                                           max_slices_per_subject=int(ph["max_slices_per_subject"])))
        count.encode_stored("04", ph["model"], s)
        count.boxes("04", ph["model"], s)
    b = cfg["biomarkers"]
    vol = _volume_slices(subjects, slices, b["datasets"], b["split"], int(b["max_subjects_per_dataset"]))
    if use([b["zero_shot_model"]]):
        count.encode_stored("05", b["zero_shot_model"], vol)
        count.boxes("05", b["zero_shot_model"], vol)
        if b["real_spine"]:  # every slice of the real volumes, zero-shot (X05h/i)
            real = _real_subjects(subjects, int(b.get("max_real_subjects", 0)))
            count.encode_stored("05", b["zero_shot_model"], _labelled(slices, real))
            count.boxes("05", b["zero_shot_model"], _labelled(slices, real))
    ft_model = cfg["finetune"]["defaults"]["model"]
    if use([ft_model]):
        count.add("05", f"{ft_model} (finetuned)", "encode", len(vol))
        count.boxes("05", f"{ft_model} (finetuned)", vol)
    a = cfg["autolabel"]
    train = _volume_slices(subjects, slices, a["datasets"], "train", 0)
    cap = int(a["detector"].get("max_train_images", 0))  # per dataset
    n_train = sum(min(n, cap) if cap > 0 else n for n in train.groupby("dataset").size()) if len(train) else 0
    count.add("06", a["detector"]["model"], "detector_image", n_train * int(a["detector"]["epochs"]))
    test = _volume_slices(subjects, slices, a["datasets"], a["split"], int(a["max_subjects_per_dataset"]))
    for model in use(a["models"]):  # through the store: slices 02-05 encoded are read
        count.encode_stored("06", model, test, True)
        count.boxes("06", model, test, 1, True)
    if a["finetuned"] and use([ft_model]):
        count.add("06", f"{ft_model} (finetuned)", "encode", len(test), True)
        count.boxes("06", f"{ft_model} (finetuned)", test, 1, True)
    v = cfg["video3d"]
    frames = _volume_slices(subjects, slices, v["datasets"], v["split"], int(v["max_subjects_per_dataset"]))
    if v["real_spine"]:
        frames = pd.concat([frames, _labelled(slices, _real_subjects(subjects, int(v["max_real_subjects"])))])
    tissues = set(v["tissues"])
    wanted = {d: {lab.value for lab in get_dataset(d).labels if lab.tissue_class in tissues}
              for d in frames["dataset"].unique()}
    frames = frames.assign(labels_present=[[x for x in labs if x in wanted[d]]
                                           for d, labs in zip(frames["dataset"], frames["labels_present"])])
    frames = frames[frames["labels_present"].map(len) > 0].drop(columns=["n_boxes"], errors="ignore")
    image_schemes = sum(s in v["schemes"] for s in ("points_per_slice", "boxes_per_slice", "box_carry", "point_carry"))
    video_schemes = sum(s in v["schemes"] for s in ("point_video", "points_neg_video"))
    for model in use(v["models"]):
        if model.startswith("sam2"):
            count.add("07", model, "encode", len(frames) * (video_schemes + (image_schemes > 0)))
        else:  # through the store
            count.encode_stored("07", model, frames)
        count.boxes("07", model, frames, image_schemes)
    if stored is not None:
        for model, *_ in count.stored:
            stored[model] = stored.get(model, 0) + 1
    return work_frame(count.rows)


def disk_gib(cfg: Mapping[str, Any], slices: pd.DataFrame, stored: Mapping[str, int]) -> dict[str, float]:
    """Disk the run writes, GiB: the prepared slice stacks (image + mask, uint8, each of
    ``prepare.slice_sizes_px``) and the embedding store (``workload.STORE_MIB_PER_SLICE``)."""
    from mskseg_lib.workload import STORE_MIB_PER_SLICE

    sizes = [int(s) for s in cfg["prepare"]["slice_sizes_px"]]
    prepared = len(slices) * sum(2 * s * s for s in sizes) / 2**30
    store = sum(n * STORE_MIB_PER_SLICE.get(m, 8.0) for m, n in stored.items()) / 1024
    return {"prepared_slices": round(prepared, 1), "embedding_store": round(store, 1)}
