"""``configure_logging``: which messages reach the user, in what form, and where."""
from __future__ import annotations

import logging

import pytest

from mskseg_lib.logging_setup import LOGGER_NAME, configure_logging


def _emit_all() -> None:
    log = logging.getLogger("mskseg_lib.some.module")
    log.debug("encoder cache key %s", "ab12")
    log.info("resuming after epoch %d", 3)
    log.warning("skipped %s: %s", "Knee/S01", "empty mask")


def test_info_default_format(capsys: pytest.CaptureFixture) -> None:
    configure_logging()
    _emit_all()
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == ["resuming after epoch 3", "warning: skipped Knee/S01: empty mask"]


def test_debug_level_names_the_logger(capsys: pytest.CaptureFixture) -> None:
    configure_logging("DEBUG")
    _emit_all()
    assert capsys.readouterr().err.splitlines()[0] == "debug: mskseg_lib.some.module: encoder cache key ab12"


def test_warning_level_and_stdout_for_notebooks(capsys: pytest.CaptureFixture) -> None:
    configure_logging(logging.WARNING, stream="stdout")
    _emit_all()
    out = capsys.readouterr()
    assert out.err == "" and out.out == "warning: skipped Knee/S01: empty mask\n"


def test_reconfiguring_replaces_the_handler(capsys: pytest.CaptureFixture) -> None:
    configure_logging("INFO")
    configure_logging("INFO")  # a rerun notebook cell: still one line per message
    logging.getLogger("mskseg_lib.x").info("once")
    assert capsys.readouterr().err == "once\n"
    assert sum(h.get_name() == "mskseg_lib.console" for h in logging.getLogger(LOGGER_NAME).handlers) == 1


def test_other_libraries_untouched(capsys: pytest.CaptureFixture) -> None:
    configure_logging("DEBUG")
    logging.getLogger("urllib3.connectionpool").info("not ours")
    assert "not ours" not in capsys.readouterr().err


def test_unknown_stream_name() -> None:
    with pytest.raises(ValueError, match="stream must be"):
        configure_logging(stream="stdrr")
