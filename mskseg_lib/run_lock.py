"""One run at a time per output folder: the lock of a profile's runs folder.

Two commands writing the same profile's results at once would interleave resumable run folders,
the companion's pages and the tables. The top-level command (``mskseg run``, ``run_all.sh``, a
stage command such as ``mskseg prepare``) holds ``<runs_dir>/.mskseg.lock`` while it works; a
second one refuses at once with :class:`RunLocked`, naming the holder's process id, command and
start time.

The lock is an ``fcntl.flock`` on that file, so the kernel releases it when its process dies: a
lock left by a killed run is free, and the next command takes it over (logging the dead holder).
The file's JSON (pid, hostname, started_utc, command) is only there for the messages.

The processes a command starts run under its lock: the holder exports ``MSKSEG_RUN_LOCK`` (lock
path and holder pid), which papermill's kernels and the ranks ``torchrun`` starts inherit, and
:func:`hold` then lets them through. Under a ``torchrun`` the user typed, rank 0 takes the lock
and the other ranks run under it. An interactive kernel outside any run is not blocked;
:func:`warn_if_running` tells it that a run is writing the same folders.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from mskseg_lib.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; commands run unlocked there
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "LOCK_ENV", "Holder", "RunLocked", "lock_path", "read_holder", "hold", "warn_if_running"]

LOCK_NAME = ".mskseg.lock"
LOCK_ENV = "MSKSEG_RUN_LOCK"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a lock: process id, host, UTC start time and command line."""

    pid: int
    hostname: str
    started_utc: str
    command: str

    def describe(self) -> str:
        """``pid 123 on host (mskseg run --profile fixture), started 2026-12-01T02:00:00Z``."""
        return f"pid {self.pid} on {self.hostname} ({self.command}), started {self.started_utc}"


class RunLocked(UserError):
    """Another command is writing this profile's runs folder."""

    def __init__(self, runs_dir: Path, holder: Holder | None) -> None:
        self.runs_dir = Path(runs_dir)
        self.holder = holder
        who = holder.describe() if holder else "a process that has not yet said who it is"
        super().__init__(f"{runs_dir} is in use by {who}; wait for it to finish or stop it "
                         "(a killed run's lock is taken over)")


def lock_path(runs_dir: Path | str) -> Path:
    """``<runs_dir>/.mskseg.lock``."""
    return Path(runs_dir) / LOCK_NAME


def read_holder(path: Path | str) -> Holder | None:
    """The holder recorded in a lock file; None when absent, empty or unreadable."""
    try:
        data = json.loads(Path(path).read_text() or "null")
        return Holder(int(data["pid"]), str(data["hostname"]), str(data["started_utc"]), str(data["command"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _inherited(path: Path) -> bool:
    """Whether this process runs under a live holder of ``path`` (``MSKSEG_RUN_LOCK``): it is the
    holder itself (a nested call) or one of the processes the holder started."""
    value = os.environ.get(LOCK_ENV, "")
    locked, _, pid = value.rpartition(":")
    if not locked or not pid.isdigit():
        return False
    return Path(locked) == path and (int(pid) == os.getpid() or _pid_alive(int(pid)))


def _torchrun_follower() -> bool:
    """A torchrun rank other than 0: it runs under rank 0's lock."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0
    except ValueError:
        return False


def _utc_now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _busy_holder(path: Path, wait_s: float = 1.0) -> Holder | None:
    """The holder of a busy lock; waits briefly for one that has just taken it to record itself."""
    deadline = time.monotonic() + wait_s
    while True:
        holder = read_holder(path)
        if holder is not None or time.monotonic() >= deadline:
            return holder
        time.sleep(0.05)


@contextmanager
def hold(runs_dir: Path | str, command: str | None = None) -> Iterator[Path]:
    """Hold the lock of ``runs_dir`` for the duration of the ``with`` block.

    Parameters
    ----------
    runs_dir : the profile's runs folder (created when missing).
    command : what to call the holder in a refusal (default: this process's command line).

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    RunLocked
        Another live process holds the lock. A process that runs under the holder (see the
        module docstring) passes through without taking it; a lock whose holder died is taken
        over, with one log line naming it.
    """
    runs_dir = Path(runs_dir).absolute()
    path = lock_path(runs_dir)
    if fcntl is None or _inherited(path) or _torchrun_follower():
        yield path
        return
    runs_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(runs_dir, _busy_holder(path)) from None
        stale = read_holder(path)
        if stale is not None:
            log.warning("taking over the lock of %s: its holder is gone (%s)", runs_dir, stale.describe())
        me = Holder(os.getpid(), socket.gethostname(), _utc_now(), command or " ".join(sys.argv) or "python")
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(me)) + "\n").encode(), 0)
        saved = os.environ.get(LOCK_ENV)
        os.environ[LOCK_ENV] = f"{path}:{os.getpid()}"
        try:
            yield path
        finally:
            if saved is None:
                os.environ.pop(LOCK_ENV, None)
            else:
                os.environ[LOCK_ENV] = saved
            os.ftruncate(fd, 0)  # a clean release leaves an empty file: nothing to take over
    finally:
        os.close(fd)  # releases the flock


def warn_if_running(runs_dir: Path | str) -> Holder | None:
    """Tell (log a warning, never raise) a process outside any run that a live run holds the
    lock of ``runs_dir``: its writes would mix with the run's. Returns that holder, else None.

    Cheap: reads the lock file; does not touch the lock itself.
    """
    path = lock_path(Path(runs_dir).absolute())
    if _inherited(path):
        return None
    holder = read_holder(path)
    if holder is None or holder.pid == os.getpid() or holder.hostname != socket.gethostname():
        return None
    if not _pid_alive(holder.pid):
        return None
    log.warning("a run is writing %s (%s); results written here may mix with it", runs_dir, holder.describe())
    return holder
