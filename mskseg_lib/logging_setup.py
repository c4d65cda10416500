"""Where mskseg's log messages go: one handler on the ``mskseg_lib`` logger.

Library modules log with ``log = logging.getLogger(__name__)`` and never configure logging
themselves. The edges do: the ``mskseg`` command calls :func:`configure_logging` with the level
of its ``-v`` / ``-q`` options (INFO by default, on stderr, so that stdout keeps only results),
and each notebook calls ``configure_logging(stream="stdout")`` in its setup cell, so the
library's INFO messages (the profile read, a resumed run, skipped subjects, a launched worker)
appear under the cell that caused them, as plain output (not the red stderr box), under
papermill too. Messages are written through ``tqdm.write``, so they do not tear a running
progress bar.

Format: an INFO message is printed as it is; a warning or error starts with ``warning:`` /
``error:``; a debug message with ``debug: <logger name>:``.
"""
from __future__ import annotations

import logging
import sys
from typing import IO, Union

__all__ = ["LOGGER_NAME", "configure_logging"]

LOGGER_NAME = "mskseg_lib"
_HANDLER_NAME = "mskseg_lib.console"


class _Formatter(logging.Formatter):
    """INFO as the bare message; other levels prefixed with the level (and, for DEBUG, the logger)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        if record.levelno == logging.INFO:
            return record.message
        if record.levelno < logging.INFO:
            return f"debug: {record.name}: {record.message}"
        return f"{record.levelname.lower()}: {record.message}"


Stream = Union[str, IO[str]]


class _ConsoleHandler(logging.Handler):
    """Writes each record through ``tqdm.write`` to ``stream``: a file, or ``"stderr"`` /
    ``"stdout"`` for whatever ``sys.stderr`` / ``sys.stdout`` is at the time of the message (so a
    replaced stream, as in a test or a notebook kernel, is followed)."""

    def __init__(self, stream: Stream = "stderr") -> None:
        super().__init__()
        if isinstance(stream, str) and stream not in ("stderr", "stdout"):
            raise ValueError(f"stream must be 'stderr', 'stdout' or a file, got {stream!r}")
        self.stream = stream

    def _file(self) -> IO[str]:
        if self.stream == "stderr":
            return sys.stderr
        if self.stream == "stdout":
            return sys.stdout
        return self.stream  # type: ignore[return-value]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm  # its write() pauses every bar, notebook bars included

            tqdm.write(self.format(record), file=self._file())
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)


def configure_logging(level: Union[int, str] = "INFO", stream: Stream = "stderr") -> logging.Logger:
    """Show mskseg's log messages of ``level`` and above on ``stream``.

    Idempotent: a second call replaces the handler of the first (new level, new stream), so a
    notebook cell can be rerun and each ``mskseg`` call sets its own verbosity. Only the
    ``mskseg_lib`` logger is touched; other libraries' logging stays as it was, and records
    still propagate to the root logger (where pytest's ``caplog`` finds them; a handler you put
    on the root logger yourself would print them a second time).

    Parameters
    ----------
    level : int or str
        ``"DEBUG"`` (``mskseg -v``), ``"INFO"`` (the default: progress and decisions worth
        knowing), ``"WARNING"`` (``mskseg -q``: only problems), or a ``logging`` level number.
    stream : {"stderr", "stdout"} or file-like
        Where to write: ``"stderr"`` (the command line) or ``"stdout"`` (notebooks) mean
        whatever ``sys.stderr`` / ``sys.stdout`` is when a message is written; a file object
        is written to as it is.

    Returns
    -------
    logging.Logger
        The configured ``mskseg_lib`` logger.
    """
    handler = _ConsoleHandler(stream)
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(old)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    return logger
