"""Where the project keeps its state, and environment settings that must hold before imports.

Jupyter, IPython, matplotlib and ultralytics all write state under the user's home folder by
default. The product promises no writes outside the project, so every one of them is pointed at
``<project>/.state`` here, and ultralytics is forced offline (it would otherwise try to download
fonts and weights). ``configure_environment`` runs on ``import mskseg_lib`` and only sets
variables the user has not set.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REAL_SPINE_ENV = "MSKSEG_REAL_SPINE"


def project_root() -> Path:
    """The checkout root (parent of ``mskseg_lib``); override with ``MSKSEG_ROOT``."""
    return Path(os.environ.get("MSKSEG_ROOT", PROJECT_ROOT)).resolve()


def relative_to_root(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """``path`` relative to ``root`` (default: the project root) in POSIX form, for results that
    must not depend on where the checkout lies (``/home/a/mskseg/runs/x.nii.gz`` ->
    ``runs/x.nii.gz``); a relative path, or one outside ``root``, is returned as given."""
    text = os.fspath(path)
    if not text or not os.path.isabs(text):
        return text
    base = Path(os.path.abspath(root if root is not None else project_root()))
    try:
        return Path(os.path.abspath(text)).relative_to(base).as_posix() or "."
    except ValueError:
        return text


def state_dir() -> Path:
    """Project-local folder for tool state (Jupyter, matplotlib, ultralytics)."""
    return project_root() / ".state"


def real_spine_dir() -> Path:
    """Folder of the real lumbar spine fixture (``MSKSEG_REAL_SPINE`` or ``../shared/data/real_spine``)."""
    default = project_root().parent / "shared" / "data" / "real_spine"
    return Path(os.environ.get(REAL_SPINE_ENV, default)).resolve()


def _provide_ultralytics_font(config_dir: Path) -> None:
    """ultralytics downloads Arial.ttf on first plot; give it matplotlib's DejaVuSans instead.

    ultralytics keeps its state in ``$YOLO_CONFIG_DIR/Ultralytics`` and looks for fonts there.
    """
    config_dir = config_dir / "Ultralytics"
    target = config_dir / "Arial.ttf"
    if target.exists():
        return
    try:
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except Exception:  # matplotlib missing: ultralytics will not plot either
        return
    if source.exists():
        config_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def configure_environment() -> None:
    """Point every tool's state into the project and keep ultralytics offline."""
    state = state_dir()
    defaults = {
        "JUPYTER_CONFIG_DIR": state / "jupyter" / "config",
        "JUPYTER_DATA_DIR": state / "jupyter" / "data",
        "JUPYTER_RUNTIME_DIR": state / "jupyter" / "runtime",
        "IPYTHONDIR": state / "ipython",
        "MPLCONFIGDIR": state / "matplotlib",
        "YOLO_CONFIG_DIR": state / "ultralytics",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, str(value))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    # Inside a virtualenv Jupyter would search the venv's share/jupyter (ipykernel's generic
    # "python3" spec) before JUPYTER_DATA_DIR; the project's kernel spec must win.
    os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "0")
    try:
        for key in defaults:
            Path(os.environ[key]).mkdir(parents=True, exist_ok=True)
        _provide_ultralytics_font(Path(os.environ["YOLO_CONFIG_DIR"]))
    except OSError:
        pass  # read-only installs still import; the tools then report their own errors
