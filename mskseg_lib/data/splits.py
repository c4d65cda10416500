"""Subject-level train/validation/test splits, stratified and reproducible.

Splitting by subject keeps every slice of a person in one split (slices of one knee are not
independent). Stratification by sex (optionally more columns) uses systematic allocation:
subjects are ordered by stratum and, within it, by a seeded random key, then dealt along an
evenly spread sequence of split labels with exactly the target counts. Every stratum then gets
its proportional share up to rounding, even strata of one or two subjects where
``train_test_split(stratify=...)`` would refuse. The result depends only on the seed and the set
of subject ids, not on row order.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder counts; with n >= 3 validation and test get at least one subject."""
    raw = np.asarray(fractions, float) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    if n >= 3:
        for i in (1, 2):
            if counts[i] == 0 and fractions[i] > 0:
                counts[i] = 1
                counts[int(np.argmax(counts))] -= 1
    return counts.tolist()


def _deal_sequence(counts: Sequence[int]) -> list[int]:
    """Split indices spread evenly: at each step take the split furthest behind its quota."""
    n = sum(counts)
    taken = np.zeros(len(counts))
    seq = []
    for i in range(1, n + 1):
        deficit = np.asarray(counts) * i / n - taken
        deficit[taken >= np.asarray(counts)] = -np.inf
        j = int(np.argmax(deficit))
        taken[j] += 1
        seq.append(j)
    return seq


def _key(seed: int, subject: str) -> str:
    return hashlib.sha256(f"{seed}:{subject}".encode()).hexdigest()


def stratified_split(subjects: pd.DataFrame, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                     stratify_by: Sequence[str] = ("sex",), seed: int = 0,
                     id_column: str = "subject_id") -> pd.Series:
    """Split label ("train"/"val"/"test") per row of ``subjects`` (index preserved).

    Missing values of a stratification column form their own stratum. Continuous columns
    should be binned by the caller (e.g. age decades).
    """
    if subjects.empty:
        return pd.Series([], dtype=object, index=subjects.index)
    strata = subjects[list(stratify_by)].astype(object).where(subjects[list(stratify_by)].notna(), "missing")
    order = pd.DataFrame({
        "stratum": strata.astype(str).agg("|".join, axis=1) if len(stratify_by) else "",
        "key": subjects[id_column].astype(str).map(lambda s: _key(seed, s)),
    }, index=subjects.index).sort_values(["stratum", "key"])
    counts = split_counts(len(order), fractions)
    seq = _deal_sequence(counts)
    offset = int(_key(seed, "offset")[:8], 16) % len(seq)
    seq = seq[offset:] + seq[:offset]
    return pd.Series([SPLITS[j] for j in seq], index=order.index).reindex(subjects.index)
