"""Check an environment the user already has against the lock, without replacing anything in it.

``scripts/bootstrap_env.sh`` builds the project's own ``.venv`` from ``requirements/lock.txt``
unless the user runs in an environment of their own (``MSKSEG_PYTHON``, an active virtualenv,
or an active conda environment other than ``base``): a GPU box's conda env with a CUDA build of
torch, say. Then it runs ``python -m mskseg_lib.envcheck`` with that interpreter, which

* names every locked package that is missing there (one line, the names and locked versions),
* notes the ones installed at another version (a CUDA torch is expected to differ: kept), and
* with ``--install`` installs only the missing ones, pinned to the lock for them and to the
  installed versions for everything already there, so pip can replace nothing.

Standard library only: it must run in an environment that lacks the project's packages.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

__all__ = ["EnvReport", "read_lock", "installed_versions", "compare", "main"]

# installed from the project folder itself (editable), never from the lock
SELF = "mskseg"
# built without build isolation after torch (its CUDA extension optional): named, installed apart
AFTER_TORCH = ("sam2",)


def _norm(name: str) -> str:
    """PEP 503 normalised name (``Pillow`` -> ``pillow``, ``python_gdcm`` -> ``python-gdcm``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """``name==version`` lines of a lock file -> {normalised name: version} (comments skipped)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if m is None:
            raise ValueError(f"{path}: not a 'name==version' line: {line!r}")
        out[_norm(m.group(1))] = m.group(2)
    return out


def installed_versions() -> dict[str, str]:
    """{normalised name: version} of every distribution this interpreter sees."""
    return {_norm(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


@dataclass
class EnvReport:
    """How an environment compares with the lock."""

    missing: dict[str, str] = field(default_factory=dict)  # name -> locked version
    different: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (installed, locked)
    matching: int = 0

    @property
    def complete(self) -> bool:
        return not self.missing


def compare(lock: dict[str, str], installed: dict[str, str]) -> EnvReport:
    """Missing and differing packages of ``installed`` against ``lock`` (the project itself excluded)."""
    report = EnvReport()
    for name, version in sorted(lock.items()):
        if name == SELF:
            continue
        have = installed.get(name)
        if have is None:
            report.missing[name] = version
        elif have.split("+")[0] != version.split("+")[0]:
            report.different[name] = (have, version)
        else:
            report.matching += 1
    return report


def _install_missing(report: EnvReport, installed: dict[str, str], lock: dict[str, str]) -> int:
    """pip-install the missing packages with every installed one pinned where it is (nothing replaced)."""
    wanted = [f"{n}=={v}" for n, v in report.missing.items() if n not in AFTER_TORCH]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        for name, version in sorted({**lock, **installed}.items()):
            if name != SELF:
                fh.write(f"{name}=={installed.get(name, version)}\n")
        pins = fh.name
    status = 0
    if wanted:
        status = subprocess.call([sys.executable, "-m", "pip", "install", "-c", pins, *wanted])
    for name in AFTER_TORCH:
        if name in report.missing and status == 0:
            status = subprocess.call([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                                      f"{name}=={report.missing[name]}"])
    Path(pins).unlink(missing_ok=True)
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mskseg_lib.envcheck",
                                description="compare this environment with the lock; install only what is missing")
    p.add_argument("--lock", type=Path, default=Path(__file__).resolve().parents[1] / "requirements" / "lock.txt")
    p.add_argument("--install", action="store_true", help="install the missing packages (nothing installed is replaced)")
    args = p.parse_args(argv)
    lock, installed = read_lock(args.lock), installed_versions()
    report = compare(lock, installed)
    where = sys.prefix
    if report.different:
        shown = ", ".join(f"{n} {have} (lock {want})" for n, (have, want) in sorted(report.different.items()))
        print(f"[envcheck] {where}: kept at your versions: {shown}")
    if report.complete:
        print(f"[envcheck] {where}: every locked package present ({report.matching} at the locked version, "
              f"{len(report.different)} at yours)")
        return 0
    names = " ".join(f"{n}=={v}" for n, v in report.missing.items())
    if not args.install:
        print(f"[envcheck] {where}: missing {len(report.missing)} package(s): {names}", file=sys.stderr)
        print("[envcheck] install them with MSKSEG_INSTALL_MISSING=1 (nothing already installed is replaced), "
              "or run without an active environment to use the project's own .venv", file=sys.stderr)
        return 3
    print(f"[envcheck] {where}: installing {len(report.missing)} missing package(s), keeping every installed one")
    status = _install_missing(report, installed, lock)
    if status != 0:
        print(f"[envcheck] pip failed (exit {status}); nothing that was installed before was replaced", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
