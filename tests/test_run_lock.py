"""One run at a time per runs folder: refusal naming the holder, stale takeover, inherited lock,
interactive warning, and the command line's one-line refusal."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from subprocess_env import pythonpath

from mskseg_lib import cli, run_lock

pytestmark = pytest.mark.skipif(run_lock.fcntl is None, reason="flock is POSIX only")

HOLDER_SCRIPT = """
import sys, time
from mskseg_lib import run_lock
with run_lock.hold(sys.argv[1], "mskseg prepare --profile other"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def other_holder(tmp_path: Path):
    """A second process holding the lock of ``tmp_path / 'runs'``; killed at the end."""
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, str(runs)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": pythonpath(Path(__file__).resolve().parents[1])})
    try:
        assert proc.stdout.readline().strip() == "held"
        yield runs, proc
    finally:
        proc.kill()
        proc.wait()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def lock_log():
    logger = logging.getLogger(run_lock.__name__)
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(autouse=True)
def _no_inherited_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as if outside any run (pytest might be started under one)."""
    monkeypatch.delenv(run_lock.LOCK_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)


def test_second_holder_refused_naming_pid_command_and_start(other_holder) -> None:
    runs, proc = other_holder
    recorded = run_lock.read_holder(run_lock.lock_path(runs))
    assert recorded is not None and recorded.pid == proc.pid
    with pytest.raises(run_lock.RunLocked) as info:
        with run_lock.hold(runs, "mskseg run --profile fixture"):
            pytest.fail("took a lock another process holds")
    message = str(info.value)
    assert f"pid {proc.pid}" in message
    assert "mskseg prepare --profile other" in message
    assert recorded.started_utc in message and len(recorded.started_utc) == 20
    assert "\n" not in message
    assert os.environ.get(run_lock.LOCK_ENV) is None


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path, lock_log: list[str]) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs = tmp_path / "runs"
    runs.mkdir()
    stale = {"pid": dead.pid, "hostname": "h", "started_utc": "2026-01-01T00:00:00Z", "command": "mskseg run"}
    run_lock.lock_path(runs).write_text(json.dumps(stale))
    with run_lock.hold(runs, "mskseg run --profile fixture") as path:
        mine = run_lock.read_holder(path)
        assert mine is not None and mine.pid == os.getpid() and mine.command == "mskseg run --profile fixture"
        assert os.environ[run_lock.LOCK_ENV] == f"{path}:{os.getpid()}"
    assert any(str(dead.pid) in m and "taking over" in m for m in lock_log)
    assert run_lock.read_holder(path) is None  # released: an empty file, nothing stale left
    assert run_lock.LOCK_ENV not in os.environ


def test_lock_released_on_error_and_reusable(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError):
        with run_lock.hold(runs, "a"):
            raise RuntimeError("boom")
    with run_lock.hold(runs, "b") as path:
        assert run_lock.read_holder(path).command == "b"


def test_children_of_the_holder_run_under_its_lock(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    child = ("import sys\nfrom mskseg_lib import run_lock\n"
             "with run_lock.hold(sys.argv[1], 'nested'):\n    print('ran')\n")
    with run_lock.hold(runs, "mskseg run --profile fixture"):
        with run_lock.hold(runs, "nested in the same process"):  # a nested call passes through
            pass
        # a process the holder starts (a papermill kernel, a torchrun rank) inherits MSKSEG_RUN_LOCK
        out = subprocess.run([sys.executable, "-c", child, str(runs)], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": pythonpath(Path(__file__).resolve().parents[1])})
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ran"
        # without the variable the same child is refused
        env = {k: v for k, v in os.environ.items() if k != run_lock.LOCK_ENV}
        refused = subprocess.run([sys.executable, "-c", child, str(runs)], capture_output=True, text=True,
                                 timeout=60, env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        assert refused.returncode != 0 and "RunLocked" in refused.stderr


def test_torchrun_rank_above_0_runs_under_rank_0(other_holder, monkeypatch: pytest.MonkeyPatch) -> None:
    runs, _ = other_holder
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with run_lock.hold(runs, "rank 1"):
        pass
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(run_lock.RunLocked):
        with run_lock.hold(runs, "rank 0"):
            pass


def test_interactive_process_is_told_not_blocked(other_holder, tmp_path: Path, lock_log: list[str]) -> None:
    runs, proc = other_holder
    holder = run_lock.warn_if_running(runs)
    assert holder is not None and holder.pid == proc.pid
    assert any(f"pid {proc.pid}" in m for m in lock_log)
    assert run_lock.warn_if_running(tmp_path / "elsewhere") is None


def test_profile_loading_warns_during_a_run(other_holder, tiny_cfg: dict, tmp_path: Path,
                                            lock_log: list[str]) -> None:
    from mskseg_lib.from_profile import load_profile

    runs, proc = other_holder
    tiny_cfg["paths"]["runs_dir"] = str(runs)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(tiny_cfg))
    load_profile(path)  # a notebook run by hand: told, not blocked
    assert any(f"pid {proc.pid}" in m for m in lock_log)
    lock_log.clear()
    load_profile(path, check_lock=False)
    assert lock_log == []


def test_stage_command_refuses_with_one_line(other_holder, tiny_cfg: dict, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    runs, proc = other_holder
    tiny_cfg["paths"]["runs_dir"] = str(runs)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(tiny_cfg))
    started = time.monotonic()
    assert cli.main(["prepare", "--profile", str(path)]) == 2
    assert time.monotonic() - started < 20  # refused at once, no data work
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mskseg: error: ") and f"pid {proc.pid}" in err and "started" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml", "runs"]  # no data written


def _profile_and_notebook(tmp_path: Path, tiny_cfg: dict, runs: Path) -> tuple[Path, Path, Path]:
    """A profile writing under ``tmp_path`` and one notebook recording the lock it runs under."""
    import nbformat

    tiny_cfg["paths"]["runs_dir"] = str(runs)
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump(tiny_cfg))
    nbdir, seen = tmp_path / "notebooks", tmp_path / "seen.txt"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"import os\nopen({str(seen)!r}, 'w').write(os.environ.get({run_lock.LOCK_ENV!r}, 'none'))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbdir / "01_lock.ipynb")
    return profile, nbdir, seen


def test_run_refused_before_a_run_folder_exists(other_holder, tiny_cfg: dict, tmp_path: Path) -> None:
    from mskseg_lib.notebook_runner import run_notebooks

    runs, proc = other_holder
    profile, nbdir, seen = _profile_and_notebook(tmp_path, tiny_cfg, runs)
    with pytest.raises(run_lock.RunLocked, match=f"pid {proc.pid}"):
        run_notebooks(str(profile), notebooks_dir=nbdir, progress_bar=False, log=lambda _: None)
    assert sorted(p.name for p in runs.iterdir()) == [run_lock.LOCK_NAME]
    assert not seen.exists()


def test_run_kernels_inherit_the_lock(tiny_cfg: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mskseg_lib.notebook_runner import run_notebooks

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    runs = tmp_path / "runs"
    profile, nbdir, seen = _profile_and_notebook(tmp_path, tiny_cfg, runs)
    run_notebooks(str(profile), notebooks_dir=nbdir, progress_bar=False, log=lambda _: None)
    assert seen.read_text() == f"{run_lock.lock_path(runs.absolute())}:{os.getpid()}"
    assert run_lock.read_holder(run_lock.lock_path(runs)) is None and run_lock.LOCK_ENV not in os.environ
