"""Atomic writes: a failure leaves the old file and no temporary; success replaces."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mskseg_lib import atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_temp_name_keeps_suffix(tmp_path: Path) -> None:
    tmp = atomic.temp_path_for(tmp_path / "x.csv")
    assert tmp.parent == tmp_path
    assert tmp.name == f".x.tmp-{os.getpid()}.csv"
    assert atomic.temp_path_for(tmp_path / "noext").name == f".noext.tmp-{os.getpid()}"


def test_failed_write_keeps_previous_content_and_no_temp(tmp_path: Path) -> None:
    final = tmp_path / "result.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(final) as tmp:
            tmp.write_text("half writ")
            raise RuntimeError("crash mid-write")
    assert final.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "table.csv"
    df = pd.DataFrame({"a": [1, 2]})

    class Boom(Exception):
        pass

    def bad_to_csv(path, **kwargs):  # writes part of the file, then fails
        Path(path).write_text("a\n1\n")
        raise Boom

    df.to_csv = bad_to_csv  # type: ignore[method-assign]
    with pytest.raises(Boom):
        atomic.save_csv(df, final)
    assert not final.exists()
    assert _leftovers(final.parent) == []


def test_success_replaces(tmp_path: Path) -> None:
    final = tmp_path / "r.json"
    atomic.write_json(final, {"b": 1})
    atomic.write_json(final, {"b": np.int64(2), "a": np.float32(0.5), "p": tmp_path, "arr": np.arange(2)})
    data = json.loads(final.read_text())
    assert data == {"a": 0.5, "arr": [0, 1], "b": 2, "p": str(tmp_path)}
    assert list(data) == sorted(data)  # sorted keys
    assert _leftovers(tmp_path) == []


def test_csv_parquet_npy_roundtrip(tmp_path: Path) -> None:
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    pd.testing.assert_frame_equal(pd.read_csv(atomic.save_csv(df, tmp_path / "t.csv")), df)
    pd.testing.assert_frame_equal(pd.read_parquet(atomic.save_parquet(df, tmp_path / "t.parquet")), df)
    arr = np.arange(6).reshape(2, 3)
    out = atomic.save_npy(tmp_path / "plain", arr)  # np.save semantics: .npy appended
    assert out == tmp_path / "plain.npy"
    np.testing.assert_array_equal(np.load(out), arr)
    np.testing.assert_array_equal(np.load(atomic.save_npy(tmp_path / "a.npy", arr)), arr)
    assert _leftovers(tmp_path) == []


def test_save_figure(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = atomic.save_figure(fig, tmp_path / "f.png", dpi=50)
    plt.close(fig)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _leftovers(tmp_path) == []
