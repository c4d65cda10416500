"""The run's encoder ledger: every image-encoder call of every notebook, to prove each slice is
encoded once per model.

``run_notebooks`` names a ledger file for the run (``MSKSEG_RUN_LEDGER``) and the notebook
running (``MSKSEG_NOTEBOOK``) in the environment its kernels inherit; ``record_encodes`` (called
by ``models.encoding.encode_in_batches``, the one loop every stage encodes through, and by
video3d's per-volume encoder) appends one JSON line per call: notebook, model identity (zoo name
and weights digest: a finetuned encoder is another model), the number of slices, seconds, and a
digest of each slice's pixels. ``summarise`` turns the file into, per notebook and model, encoder
calls (slices encoded) and unique slices, and for the run the ratio of the two (1.0 when nothing
is encoded twice; 0 calls on a rerun that finds everything stored). Outside a run (no
``MSKSEG_RUN_LEDGER``) recording does nothing. Lines are appended with one ``write`` of less than
a page (``O_APPEND``), so the processes of a run never interleave within a line.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

LEDGER_ENV = "MSKSEG_RUN_LEDGER"
NOTEBOOK_ENV = "MSKSEG_NOTEBOOK"

__all__ = ["LEDGER_ENV", "NOTEBOOK_ENV", "model_identity", "record_encodes", "record_work", "summarise", "work_counts"]


def model_identity(model: Any) -> str:
    """``<zoo name>@<first 12 hex of the weights' SHA-256>`` (what the embeddings depend on)."""
    name = getattr(model, "zoo_name", None) or getattr(model, "name", "model")
    source = getattr(model, "embedding_source", None) or getattr(model, "checkpoint", None) or {}
    digest = str(source.get("sha256") or "")[:12] if isinstance(source, dict) else ""
    norm = getattr(model, "normalisation", "")
    return f"{name}@{digest or 'unverified'}{'/' + norm if norm else ''}"


def record_encodes(model: Any, images: np.ndarray, seconds: float) -> None:
    """Append one line for an encoder call on ``images`` ((B, S, S[, 3]) uint8) when a run ledger is set."""
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    arr = np.asarray(images)
    digests = [hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=8).hexdigest() for a in arr]
    _append(path, {"notebook": os.environ.get(NOTEBOOK_ENV, ""), "pid": os.getpid(), "model": model_identity(model),
                   "n": len(digests), "seconds": round(float(seconds), 4), "slices": digests})


def record_work(kind: str, model: str, count: int, seconds: float) -> None:
    """Append one line of other counted work (``workload.KINDS``: ``box`` decodes, ``full_step`` /
    ``frozen_step`` training micro-batches, ``detector_image`` training images x epochs, or
    ``encode`` passes of a finetuned encoder that are never stored) when a run ledger is set."""
    path = os.environ.get(LEDGER_ENV)
    if not path or count <= 0:
        return
    _append(path, {"notebook": os.environ.get(NOTEBOOK_ENV, ""), "pid": os.getpid(), "kind": kind,
                   "model": str(model), "n": int(count), "seconds": round(float(seconds), 4)})


def _append(path: str, rec: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec, separators=(",", ":")) + "\n").encode())
    finally:
        os.close(fd)


def work_counts(path: Path) -> list[dict[str, Any]]:
    """The ledger as work rows ``{notebook, model, kind, count, seconds}``: encodes counted once per
    (model, slice) in the run (in the notebook that first encoded it), other work as recorded."""
    seen: set[tuple[str, str]] = set()
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    p = Path(path)
    for text in (p.read_text().splitlines() if p.exists() else []):
        try:
            rec = json.loads(text)
        except ValueError:
            continue
        kind = rec.get("kind", "encode")
        key = (str(rec.get("notebook", "")), str(rec["model"]), kind)
        row = rows.setdefault(key, {"notebook": key[0], "model": key[1], "kind": kind, "count": 0, "seconds": 0.0})
        if kind == "encode" and "slices" in rec:
            fresh = [d for d in rec["slices"] if (key[1], d) not in seen]
            seen.update((key[1], d) for d in fresh)
            row["count"] += len(fresh)
        else:
            row["count"] += int(rec["n"])
        row["seconds"] += float(rec.get("seconds", 0.0))
    return list(rows.values())


def summarise(path: Path) -> dict[str, Any]:
    """``{"notebooks": {nb: {model: {encoder_calls, unique_slices, encode_seconds}}},
    "run": {model: {encoder_calls, unique_slices, ratio}}}``; an unreadable line is skipped."""
    per_nb: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(
        lambda: {"encoder_calls": 0, "unique": set(), "encode_seconds": 0.0}))
    run: dict[str, dict[str, Any]] = defaultdict(lambda: {"encoder_calls": 0, "unique": set()})
    p = Path(path)
    lines = p.read_text().splitlines() if p.exists() else []
    for text in lines:
        try:
            rec = json.loads(text)
        except ValueError:
            continue
        if rec.get("kind", "encode") != "encode" or "slices" not in rec:
            continue
        nb = per_nb[str(rec.get("notebook", ""))][str(rec["model"])]
        nb["encoder_calls"] += int(rec["n"])
        nb["unique"].update(rec["slices"])
        nb["encode_seconds"] += float(rec.get("seconds", 0.0))
        r = run[str(rec["model"])]
        r["encoder_calls"] += int(rec["n"])
        r["unique"].update(rec["slices"])
    return {
        "notebooks": {nb: {m: {"encoder_calls": v["encoder_calls"], "unique_slices": len(v["unique"]),
                               "encode_seconds": round(v["encode_seconds"], 2)} for m, v in models.items()}
                      for nb, models in per_nb.items()},
        "run": {m: {"encoder_calls": v["encoder_calls"], "unique_slices": len(v["unique"]),
                    "ratio": round(v["encoder_calls"] / len(v["unique"]), 3) if v["unique"] else None}
                for m, v in run.items()},
    }
