"""The ``mskseg`` CLI: exit codes and one-line errors without tracebacks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mskseg_lib import cli, notebook_runner
from mskseg_lib.config import params_dir
from mskseg_lib.settings import PROJECT_ROOT


def _mskseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mskseg_lib", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_validate_shipped_profile() -> None:
    out = _mskseg("validate-profile", "fixture")
    assert out.returncode == 0, out.stderr
    assert "ok: fixture" in out.stdout


def test_validate_broken_profile_one_line(tmp_path: Path) -> None:
    cfg = yaml.safe_load((params_dir() / "fixture.yaml").read_text())
    cfg["cohort"]["bogus"] = 1
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(cfg))
    out = _mskseg("validate-profile", str(broken))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mskseg: error: ")
    assert str(broken) in lines[0] and "cohort.bogus" in lines[0]


def test_every_command_registered() -> None:
    help_text = cli.build_parser().format_help()
    for name in ("run", "validate-profile", "cohort", "prepare"):
        assert name in cli.COMMANDS and name in help_text


def test_run_failure_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def fail(profile, only=None, **kwargs):
        raise notebook_runner.NotebookFailed("02_x", Path("/runs/02_x.ipynb"), "ValueError: no")

    monkeypatch.setattr(notebook_runner, "run_notebooks", fail)
    assert cli.main(["run", "--profile", "fixture", "--only", "02"]) == 1
    err = capsys.readouterr().err
    assert "02_x" in err and "/runs/02_x.ipynb" in err


def test_unknown_notebook_number_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(notebook_runner, "default_notebooks_dir", lambda: tmp_path)
    assert cli.main(["run", "--profile", "fixture", "--only", "42"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mskseg: error: no notebook numbered 42")


def test_data_error_by_name_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    class DataError(ValueError):
        pass

    def boom(args):
        raise DataError("subject S01: mask and image shapes differ")

    monkeypatch.setitem(cli.COMMANDS, "cohort", cli.Command("x", cli._profile_arg, boom))
    assert cli.main(["cohort", "--profile", "fixture"]) == 2
    assert capsys.readouterr().err == "mskseg: error: subject S01: mask and image shapes differ\n"
