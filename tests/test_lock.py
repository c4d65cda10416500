"""The locked environment: the lock covers every declared dependency, the project's .venv is
exactly the lock, and a user's own environment is used as it is (missing packages named, installed
only when asked, nothing already installed replaced)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from subprocess_env import registry_env

from mskseg_lib.envcheck import compare, read_lock

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _norm(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])


def test_lock_covers_every_declared_dependency_and_keeps_the_constraints():
    lock = read_lock(LOCK)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    missing = [r for r in declared if _requirement_name(r) not in lock]
    assert missing == [], f"declared but not locked (run scripts/lock_env.sh): {missing}"
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.split("#")[0].strip())
        if m and _norm(m.group(1)) != "sam2":
            assert lock.get(_norm(m.group(1))) == m.group(2), f"{m.group(1)}: constraints.txt and lock.txt disagree"
    assert "sam2" not in lock and "pip" not in lock and "mskseg" not in lock


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="runs in the user's own environment (MSKSEG_PYTHON / active env), which the lock does "
                           "not govern")
def test_the_projects_venv_is_exactly_the_lock():
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout
    have = {_norm(n): v for n, v in re.findall(r"^([^=\s]+)==(\S+)$", frozen, re.M)}
    have.pop("pip", None)
    sam2 = have.pop("sam2", None)
    lock = read_lock(LOCK)
    extra = sorted(set(have) - set(lock))
    missing = sorted(set(lock) - set(have))
    wrong = sorted(f"{n} {have[n]} (lock {lock[n]})" for n in set(have) & set(lock) if have[n] != lock[n])
    assert (extra, missing, wrong) == ([], [], []), "the .venv drifted from requirements/lock.txt"
    assert sam2 == "1.1.0"


def test_compare_names_missing_and_keeps_other_builds():
    lock = {"torch": "2.14.1", "numpy": "2.3.4", "pooch": "1.9.0", "mskseg": "0.1.0"}
    report = compare(lock, {"torch": "2.5.1+cu121", "numpy": "2.3.4", "mskseg": "0.0.1"})
    assert report.missing == {"pooch": "1.9.0"} and not report.complete
    assert report.different == {"torch": ("2.5.1+cu121", "2.14.1")} and report.matching == 1
    assert compare({"torch": "2.14.1"}, {"torch": "2.14.1+cpu"}).different == {}  # a local build tag is the same version


def _project_copy(tmp_path: Path) -> Path:
    """The parts of the project the bootstrap needs, in a fresh folder (no .venv)."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("scripts", "requirements", "mskseg_lib"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def _bootstrap(copy: Path, **env: str) -> subprocess.CompletedProcess:
    drop = ("VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "MSKSEG_PYTHON", "PYTHONPATH", "IPYTHONDIR",
            "MPLCONFIGDIR", "YOLO_CONFIG_DIR")  # and the JUPYTER_* folders: the copy gets its own .state
    clean = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("JUPYTER_")}
    return subprocess.run(["bash", "-c", "source scripts/bootstrap_env.sh && echo MSKSEG_PY=$MSKSEG_PY"], cwd=copy,
                          env={**clean, **env}, capture_output=True, text=True, timeout=300)


def test_an_active_environment_missing_packages_is_named_and_left_alone(tmp_path):
    """An active virtualenv without the project's packages: no .venv is made, the missing ones
    are named on one line, and nothing is installed (the environment stays as it was)."""
    user = tmp_path / "user-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(user)], check=True, timeout=120)
    before = sorted(p.name for p in (user / "lib").rglob("site-packages/*"))
    copy = _project_copy(tmp_path)
    out = _bootstrap(copy, VIRTUAL_ENV=str(user))
    assert out.returncode != 0
    assert f"using your environment: {user}/bin/python" in out.stdout
    line = next(ln for ln in out.stderr.splitlines() if "missing" in ln)
    assert "torch==2.14.1" in line and "numpy==" in line and "sam2" not in line
    assert "MSKSEG_INSTALL_MISSING=1" in out.stderr
    assert not (copy / ".venv").exists()
    assert sorted(p.name for p in (user / "lib").rglob("site-packages/*")) == before


def test_a_complete_environment_is_used_as_it_is(tmp_path):
    """MSKSEG_PYTHON pointing at a complete environment (here the project's own): no .venv in the
    copy, no install, the kernel spec points at that interpreter."""
    copy = _project_copy(tmp_path)
    out = _bootstrap(copy, MSKSEG_PYTHON=sys.executable)
    assert out.returncode == 0, out.stderr
    assert "every locked package present" in out.stdout and f"MSKSEG_PY={sys.executable}" in out.stdout
    assert not (copy / ".venv").exists() and not (copy / ".state" / "pip-install.log").exists()
    kernel = (copy / ".state" / "jupyter" / "data" / "kernels" / "python3" / "kernel.json").read_text()
    assert sys.executable in kernel


def test_install_missing_installs_only_what_is_missing_and_replaces_nothing(tmp_path):
    """A fresh environment with pip; a lock asking for a small package it lacks and for another
    pip version: the small package is installed at the locked version, pip stays as it was."""
    user = tmp_path / "user-env"
    subprocess.run([sys.executable, "-m", "venv", str(user)], check=True, timeout=180)
    py = str(user / "bin" / "python")

    def version(name: str) -> str | None:
        out = subprocess.run([py, "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                             capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    pip_before = version("pip")
    iniconfig = read_lock(LOCK)["iniconfig"]
    lock = tmp_path / "lock.txt"
    lock.write_text(f"iniconfig=={iniconfig}\npip==0.1\n")
    out = subprocess.run([py, "-m", "mskseg_lib.envcheck", "--lock", str(lock), "--install"], cwd=ROOT,
                         env=registry_env(ROOT), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "kept at your versions: pip" in out.stdout
    assert version("iniconfig") == iniconfig and version("pip") == pip_before
