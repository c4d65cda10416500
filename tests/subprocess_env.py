"""What a test gives the Python subprocesses it starts (torchrun ranks, scripts)."""
from __future__ import annotations

import os


def pythonpath(*folders: object) -> str:
    """``folders`` first, then this process's PYTHONPATH: it carries ``run_tests.sh``'s offline
    guard (``scripts/offline``), so a subprocess refuses the network as the test process does."""
    return os.pathsep.join([*(str(f) for f in folders), *filter(None, [os.environ.get("PYTHONPATH")])])


def registry_env(*folders: object) -> dict[str, str]:
    """This process's environment without the offline guard (its switch ``MSKSEG_OFFLINE_GUARD``
    left out), ``folders`` first on PYTHONPATH.

    For the one kind of subprocess allowed to reach out: ``pip`` installing from the package
    registry (``envcheck --install``). Everything else keeps the guard (:func:`pythonpath`)."""
    env = {k: v for k, v in os.environ.items() if k != "MSKSEG_OFFLINE_GUARD"}
    env["PYTHONPATH"] = pythonpath(*folders)
    return env
