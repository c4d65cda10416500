"""Run-level progress: the ETA from earlier runs' recorded notebook times."""
from __future__ import annotations

import json
import threading

from mskseg_lib.run_progress import (
    Heartbeat,
    eta_seconds,
    format_duration,
    profile_seconds,
    progress_line,
    recorded_seconds,
)


def _manifest(folder, records):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"notebooks": records}))


def test_recorded_seconds_takes_each_notebooks_newest_successful_time(tmp_path):
    _manifest(tmp_path / "20261101-000000", [{"notebook": "01_a", "status": "ok", "seconds": 50.0},
                                             {"notebook": "02_b", "status": "ok", "seconds": 300.0}])
    _manifest(tmp_path / "20261102-000000", [{"notebook": "01_a", "status": "ok", "seconds": 40.0},
                                             {"notebook": "02_b", "status": "failed", "seconds": 10.0}])
    _manifest(tmp_path / "20261103-000000", [{"notebook": "01_a", "status": "ok", "seconds": 1.0}])
    (tmp_path / "20261104-000000").mkdir()
    (tmp_path / "20261104-000000" / "manifest.json").write_text("{not json")
    got = recorded_seconds(tmp_path, exclude=tmp_path / "20261103-000000")
    assert got == {"01_a": 40.0, "02_b": 300.0}


def test_eta_counts_the_current_notebooks_rest_and_the_ones_after():
    rec = {"01_a": 60.0, "02_b": 300.0, "03_c": 600.0}
    assert eta_seconds(["03_c"], rec, "02_b", 100.0) == (800.0, [])
    assert eta_seconds(["03_c"], rec, "02_b", 400.0) == (600.0, [])  # overran: nothing left of it
    assert eta_seconds(["04_d"], rec, "03_c", 0.0) == (600.0, ["04_d"])
    assert format_duration(3725) == "1h02m" and format_duration(245) == "4m05s" and format_duration(12) == "12s"


def test_progress_line_says_which_notebook_elapsed_and_eta():
    rec = {"02_b": 300.0, "03_c": 600.0}
    line = progress_line(2, 3, "02_b", 400.0, 100.0, ["03_c"], rec)
    assert line == "[2/3] 02_b: 1m40s in (recorded 5m00s); run 6m40s, ETA 13m20s"
    assert "at least 10m00s (no recorded time for 04_d)" in progress_line(3, 4, "03_c", 0, 0, ["04_d"], rec)
    assert "ETA unknown" in progress_line(1, 1, "09_x", 0, 0, [], {})


def test_heartbeat_repeats_the_line_until_stopped():
    said, two = [], threading.Event()

    def say(text):
        said.append(text)
        if len(said) >= 2:
            two.set()

    with Heartbeat(lambda: "tick", say, every_s=0.01):
        assert two.wait(5)
    n = len(said)
    assert set(said) == {"tick"}
    two.clear()
    assert not two.wait(0.1) and len(said) == n  # stopped


def test_profile_expected_minutes_stand_in_for_notebooks_never_run_here():
    stems = ["01_a", "02_b", "03_c"]
    got = profile_seconds({"01": 2.5, "02_b": 4.0, "07": 3.0}, stems)
    assert got == {"01_a": 150.0, "02_b": 240.0}  # by number or whole stem; other notebooks ignored
    assert profile_seconds({}, stems) == {}
    assert eta_seconds(stems, got) == (390.0, ["03_c"])
