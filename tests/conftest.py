"""Shared fixtures: a tiny profile rooted in a temporary folder, the real spine fixture path."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest

from mskseg_lib.config import load_profile
from mskseg_lib.settings import real_spine_dir


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> dict:
    """The fixture profile with 2 datasets x 3 subjects, writing under ``tmp_path``."""
    cfg = copy.deepcopy(load_profile("fixture"))
    cfg["paths"] = {k: str(tmp_path / k) for k in cfg["paths"]}
    cfg["cohort"]["datasets"] = ["Spine_2D_T2ax_Clinical_Anatomical_38", "Knee_3D_CUBE_Research_Anatomical_300"]
    cfg["cohort"]["subjects_per_dataset"] = 3
    cfg["prepare"]["yolo_export"] = True
    return cfg


@pytest.fixture(scope="session")
def real_spine() -> Path:
    root = real_spine_dir()
    if not (root / "vb3_01_image.nii.gz").exists():
        pytest.skip(f"real spine fixture not found at {root} (set MSKSEG_REAL_SPINE)")
    return root


@pytest.fixture(autouse=True)
def _restore_mskseg_logger():
    """``mskseg_lib.cli.main`` and ``configure_logging`` set the ``mskseg_lib`` logger's level and
    handler; put them back after each test, so no test sees another's logging setup."""
    logger = logging.getLogger("mskseg_lib")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


@pytest.fixture(autouse=True)
def _forget_site_cards():
    """Dataset cards a test registers (directly or by loading a profile) are forgotten after it,
    so no test sees another's datasets (the registry and its environment variable)."""
    from mskseg_lib.data.catalog import clear_registered_cards

    yield
    clear_registered_cards()
