"""What a run costs: counted units of compute, unit costs with their sources, and the estimate.

A run's compute is a handful of countable units: slices through an image encoder (``encode``),
box or point prompts through a mask decoder (``box``), training steps of the whole model
(``full_step``) or of the decoder on stored embeddings (``frozen_step``), and detector training
images per epoch (``detector_image``). ``from_profile.workload`` counts them per notebook from
a profile and its (prepared or nominal) data; this module prices them: a table of unit costs,
each with where it comes from (a measurement on named hardware, a rule applied to a
measurement, or an assumption), and the estimate per notebook on ``n`` GPUs (work marked
``parallel`` is spread over the GPUs: torchrun finetuning and AutoLabel; the rest runs on one).

Tables
------
work : DataFrame
    ``notebook, model, kind, count, parallel``.
costs : DataFrame
    ``model, kind, seconds, source``; ``model == "*"`` prices every model of that kind.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

KINDS = ("encode", "box", "full_step", "frozen_step", "detector_image")
WORK_COLUMNS = ["notebook", "model", "kind", "count", "parallel"]
COST_COLUMNS = ["model", "kind", "seconds", "source"]

# Published parameter counts (millions): the SAM2 sizes without a measured speed are priced by
# their image encoder's size relative to hiera-b+ (the SAM2 paper's model card).
SAM2_PARAMS_M = {"sam2_hiera_tiny": 38.9, "sam2_hiera_small": 46.0, "sam2_hiera_base_plus": 80.8,
                 "sam2_hiera_large": 224.4}
# the ViT-L/H image encoders priced from ViT-B by parameter count (SAM paper: 91, 308, 636 M)
SAM_PARAMS_M = {"sam_vit_b": 91.0, "sam_vit_l": 308.0, "sam_vit_h": 636.0}
# the embedding store per slice, float16 (measured: ``mskseg bench finetune``'s store_cost)
STORE_MIB_PER_SLICE = {"lite_medsam": 2.0, "sam_vit_b": 2.0, "medsam_vit_b": 2.0, "sam_vit_l": 2.0, "sam_vit_h": 2.0,
                       "sam2_hiera_tiny": 8.0, "sam2_hiera_small": 8.0, "sam2_hiera_base_plus": 8.0,
                       "sam2_hiera_large": 8.0}
FINETUNED = " (finetuned)"  # suffix of a finetuned model's rows: priced as its initial model
H100_SOURCE = "measured: H100, bf16 autocast, batch 8 (mskseg device-check)"


def work_frame(rows: list[Mapping]) -> pd.DataFrame:
    """Rows ``{notebook, model, kind, count, parallel}`` as a work table, equal rows summed."""
    df = pd.DataFrame(list(rows), columns=WORK_COLUMNS)
    bad = sorted(set(df["kind"]) - set(KINDS))
    if bad:
        raise ValueError(f"unknown work kinds {bad}; known: {list(KINDS)}")
    if df.empty:
        return df
    df["count"] = df["count"].astype(int)
    return (df.groupby(["notebook", "model", "kind", "parallel"], as_index=False, sort=True)["count"].sum()
            [WORK_COLUMNS])


def h100_costs() -> pd.DataFrame:
    """Unit costs on one H100 (bf16 autocast), each with its source.

    Measured (``mskseg device-check`` on an H100, batch 8): LiteMedSAM encoder 322 slices/s at
    256 px, SAM ViT-B 50 slices/s at 1024 px. MedSAM ViT-B has SAM ViT-B's architecture. SAM2
    hiera-b+ is SAM ViT-B's time scaled by their measured CPU ratio (3.5 s vs 9 s per 1024-px
    slice, this project's 2-core Xeon), the other SAM2 sizes by parameter count. A full training
    step of batch 2 is three forward passes' time per slice (backward costs about twice the
    forward) times two. A decoder call and a frozen-encoder step (decoder forward, backward and
    AdamW for about 4 M parameters) are bound by kernel launches on a GPU: assumed 3 ms per box
    and 20 ms per step, not measured. YOLOv8n at 1024 px: 8.7 GFLOP per 640-px image forward,
    x2.56 for 1024 px, x3 for training: about 67 GFLOP, assumed 2 ms per image with data
    loading (not measured).
    """
    encode = {"lite_medsam": (1 / 322, H100_SOURCE), "sam_vit_b": (1 / 50, H100_SOURCE),
              "medsam_vit_b": (1 / 50, "as sam_vit_b (same ViT-B architecture)")}
    for key in ("sam_vit_l", "sam_vit_h"):
        encode[key] = ((1 / 50) * SAM_PARAMS_M[key] / SAM_PARAMS_M["sam_vit_b"],
                       f"sam_vit_b x {SAM_PARAMS_M[key]:.0f}/91 M parameters")
    b_plus = (1 / 50) * 3.5 / 9.0
    encode["sam2_hiera_base_plus"] = (b_plus, "sam_vit_b x 3.5/9 (measured CPU ratio of the two encoders)")
    for key, params in SAM2_PARAMS_M.items():
        if key != "sam2_hiera_base_plus":
            encode[key] = (b_plus * params / SAM2_PARAMS_M["sam2_hiera_base_plus"],
                           f"sam2_hiera_base_plus x {params}/80.8 M parameters")
    rows = [{"model": m, "kind": "encode", "seconds": s, "source": src} for m, (s, src) in encode.items()]
    rows += [{"model": m, "kind": "full_step", "seconds": 6 * s,
              "source": "rule: batch 2 x (forward + backward = 3 forwards) x encode"} for m, (s, _) in encode.items()]
    rows += [{"model": "*", "kind": "box", "seconds": 0.003, "source": "assumed (launch-bound decoder), not measured"},
             {"model": "*", "kind": "frozen_step", "seconds": 0.02,
              "source": "assumed (launch-bound decoder step), not measured"},
             {"model": "*", "kind": "detector_image", "seconds": 0.002,
              "source": "assumed (YOLOv8n ~67 GFLOP per 1024-px training image), not measured"}]
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def floor_by_notebook(work: pd.DataFrame, costs: pd.DataFrame) -> dict[str, float]:
    """Notebook -> seconds of compute floor (count x unit cost, unpriced units counted as 0)."""
    p = priced(work.assign(parallel=False), costs)
    return {str(nb): round(float(g["seconds"].fillna(0).sum()), 2) for nb, g in p.groupby("notebook")}


def priced(work: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """The work table with ``seconds_each`` (NaN where no cost is known), ``seconds`` and ``source``;
    a model's own cost wins over the ``"*"`` cost of its kind."""
    # "lite_medsam (finetuned)" and the ledger's "lite_medsam@<digest>/unit" are priced as lite_medsam
    work = work.assign(priced_as=work["model"].str.replace(FINETUNED, "", regex=False)
                       .str.split("@", n=1, regex=False).str[0])
    own = work.merge(costs[costs["model"] != "*"].rename(columns={"model": "priced_as"}), on=["priced_as", "kind"],
                     how="left")
    anyone = costs[costs["model"] == "*"].drop(columns="model").rename(
        columns={"seconds": "seconds_any", "source": "source_any"})
    out = own.merge(anyone, on="kind", how="left")
    out["seconds_each"] = out["seconds"].fillna(out["seconds_any"])
    out["source"] = out["source"].fillna(out["source_any"])
    out["seconds"] = out["count"] * out["seconds_each"]
    return out.drop(columns=["seconds_any", "source_any", "priced_as"])


def estimate(work: pd.DataFrame, costs: pd.DataFrame, n_gpus: int = 1) -> pd.DataFrame:
    """Seconds per notebook on ``n_gpus`` devices: the sum of count x unit cost, parallel work
    divided by ``n_gpus``.

    Returns
    -------
    DataFrame
        ``notebook, seconds, unpriced`` (the ``model/kind`` units that had no cost, so the
        seconds are a lower bound there), one row per notebook in order.
    """
    if n_gpus < 1:
        raise ValueError(f"n_gpus must be at least 1, got {n_gpus}")
    p = priced(work, costs)
    p["seconds"] = p["seconds"] / p["parallel"].map({True: n_gpus, False: 1}).astype(float)
    rows = []
    for nb, g in p.groupby("notebook", sort=True):
        missing = g[g["seconds_each"].isna() & (g["count"] > 0)]
        rows.append({"notebook": nb, "seconds": float(g["seconds"].fillna(0).sum()),
                     "unpriced": ", ".join(f"{m}/{k}" for m, k in zip(missing["model"], missing["kind"]))})
    return pd.DataFrame(rows, columns=["notebook", "seconds", "unpriced"])


UNIT_COSTS_CSV = "unit_costs.csv"  # under <runs_dir>/bench/, written by ``mskseg bench units``


def read_costs(path: Path) -> pd.DataFrame:
    """A unit-cost CSV (``COST_COLUMNS``); ``ValueError`` naming the file when columns are missing."""
    costs = pd.read_csv(path)
    missing = sorted(set(COST_COLUMNS) - set(costs.columns))
    if missing:
        raise ValueError(f"{path}: unit-cost CSV lacks columns {missing}")
    return costs[COST_COLUMNS]


def ledger_floor(ledger_path: Path, costs: pd.DataFrame) -> dict[str, float]:
    """Notebook -> compute floor (s) of a run from its encoder ledger: unique encodes (each
    (model, slice) once, in the notebook that first encoded it), decoded boxes, training
    micro-batches and detector image-epochs, each times its measured unit cost."""
    from mskseg_lib.ledger import work_counts

    rows = work_counts(ledger_path)
    if not rows:
        return {}
    work = pd.DataFrame(rows).assign(parallel=False)[WORK_COLUMNS]
    return floor_by_notebook(work, costs)
