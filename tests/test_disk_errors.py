"""Disk full, read-only folder, no permission: one line naming the path, no temporary left,
earlier outputs intact."""
from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mskseg_lib import atomic, cli
from mskseg_lib.errors import UserError

CASES = [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system"),
         (errno.EACCES, "permission denied")]
if hasattr(errno, "EDQUOT"):
    CASES.append((errno.EDQUOT, "disk quota exceeded"))


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _failing_replace(code: int):
    def replace(src, dst):
        raise OSError(code, os.strerror(code), str(src), None, str(dst))
    return replace


@pytest.mark.parametrize("code,problem", CASES)
def test_failed_rename_one_line_no_temp_previous_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      code: int, problem: str) -> None:
    final = tmp_path / "out" / "table.csv"
    atomic.save_csv(pd.DataFrame({"a": [1]}), final)
    before = final.read_bytes()
    monkeypatch.setattr(atomic.os, "replace", _failing_replace(code))
    with pytest.raises(atomic.OutputWriteError) as info:
        atomic.save_csv(pd.DataFrame({"a": [2, 3]}), final)
    err = info.value
    assert isinstance(err, UserError) and isinstance(err, OSError) and err.errno == code
    assert str(err) == f"cannot write {final}: {problem} (earlier outputs are left as they were)"
    assert final.read_bytes() == before
    assert _hidden(final.parent) == []


def test_disk_full_while_writing_the_temporary(tmp_path: Path) -> None:
    final = tmp_path / "x.json"
    atomic.write_json(final, {"v": 1})
    with pytest.raises(atomic.OutputWriteError, match="no space left on device"):
        with atomic.atomic_path(final) as tmp:
            tmp.write_text("half a result")
            raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises: no file name
    assert final.read_text().strip() == '{\n  "v": 1\n}'
    assert _hidden(tmp_path) == []


def test_other_errors_pass_through_unchanged(tmp_path: Path) -> None:
    final = tmp_path / "out" / "x.txt"
    with pytest.raises(FileNotFoundError):  # not a disk problem: stays what it was
        with atomic.atomic_path(final):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(final))
    with pytest.raises(PermissionError) as info:  # an unreadable *input* is not an output problem
        with atomic.atomic_path(final):
            raise PermissionError(errno.EACCES, "Permission denied", "/elsewhere/input.nii.gz")
    assert not isinstance(info.value, atomic.OutputWriteError)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_real_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    final = atomic.write_text(folder / "summary.txt", "first\n")
    folder.chmod(0o555)
    try:
        with pytest.raises(atomic.OutputWriteError) as info:
            atomic.write_text(final, "second\n")
        with pytest.raises(atomic.OutputWriteError) as sub:  # creating a subfolder fails the same way
            atomic.save_npy(folder / "new" / "a.npy", np.zeros(3))
    finally:
        folder.chmod(0o755)
    assert str(final) in str(info.value) and "permission denied" in str(info.value)
    assert str(folder / "new" / "a.npy") in str(sub.value)
    assert final.read_text() == "first\n"
    assert sorted(p.name for p in folder.iterdir()) == ["summary.txt"]


def test_folder_writer_keeps_the_previous_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    final = tmp_path / "subject"
    final.mkdir()
    (final / "record.json").write_text("old")
    tmp = tmp_path / ".subject.tmp"
    tmp.mkdir()
    (tmp / "record.json").write_text("new")
    real_replace = os.replace

    def replace(src, dst):  # moving the old folder aside works; moving the new one in does not
        if Path(src) == tmp:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(atomic.OutputWriteError, match=r"subject: no space left on device"):
        with atomic.write_guard(final, tmp):
            atomic.replace_folder(tmp, final)
    assert (final / "record.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subject"]


def test_nifti_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mskseg_lib.data import raw_io

    final = raw_io.write_nifti(tmp_path / "mask.nii.gz", np.ones((2, 2, 2), np.uint8), np.eye(4))
    before = final.read_bytes()
    monkeypatch.setattr(raw_io.os, "replace", _failing_replace(errno.EROFS))
    with pytest.raises(atomic.OutputWriteError, match="read-only file system"):
        raw_io.write_nifti(final, np.zeros((2, 2, 2), np.uint8), np.eye(4))
    assert final.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz"]


def test_command_prints_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "runs" / "summary.json"

    def handler(args: argparse.Namespace) -> int:
        atomic.write_json(out, {"done": True})
        return 0

    monkeypatch.setitem(cli.COMMANDS, "cohort", cli.Command("x", cli._profile_arg, handler))
    monkeypatch.setattr(atomic.os, "replace", _failing_replace(errno.ENOSPC))
    assert cli.main(["cohort", "--profile", "fixture"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"mskseg: error: cannot write {out}: no space left on device "
                   "(earlier outputs are left as they were)"]
    assert sorted(p.name for p in out.parent.iterdir()) == []


def _mount_tmpfs(where: Path, size: str) -> bool:
    """A size-limited tmpfs at ``where`` (root on Linux only); False where that is not allowed."""
    import subprocess

    if os.name != "posix" or os.geteuid() != 0:
        return False
    where.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_real_full_and_read_only_filesystem(tmp_path: Path) -> None:
    """A 256 KiB tmpfs: a result that does not fit, then the same file system remounted read-only."""
    import subprocess

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "256k"):
        pytest.skip("cannot mount a size-limited file system here (needs root on Linux)")
    try:
        first = atomic.save_npy(disk / "a.npy", np.arange(1000))
        before = first.read_bytes()
        with pytest.raises(atomic.OutputWriteError) as full:
            atomic.save_npy(first, np.zeros(200_000))  # 1.6 MB into 256 KiB
        assert str(full.value).startswith(f"cannot write {first}: no space left on device")
        assert first.read_bytes() == before
        assert sorted(p.name for p in disk.iterdir()) == ["a.npy"]
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(atomic.OutputWriteError, match="read-only file system"):
            atomic.save_npy(first, np.ones(3))
        assert first.read_bytes() == before
    finally:
        subprocess.run(["umount", str(disk)], check=False)
