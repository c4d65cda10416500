"""The base class of every error that means "the user's input is wrong".

A profile that does not validate, a raw file that cannot be read, a missing checkpoint, a run
folder made with other settings: each is a subclass of :class:`UserError`. The command line
prints such an error as one line (``mskseg: error: ...``) and exits 2; any other exception is a
bug in mskseg and keeps its traceback. Library code raises the specific subclass; callers that
only need "is this the user's fault?" catch :class:`UserError`.
"""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input from the user (profile, data, checkpoint, run folder); one clear line."""
