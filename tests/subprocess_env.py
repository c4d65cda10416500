"""What a test gives the Python subprocesses it starts (torchrun ranks, scripts)."""
from __future__ import annotations

import os


def pythonpath(*folders: object) -> str:
    """``folders`` first, then this process's PYTHONPATH: it carries ``run_tests.sh``'s offline
    guard (``scripts/offline``), so a subprocess refuses the network as the test process does."""
    return os.pathsep.join([*(str(f) for f in folders), *filter(None, [os.environ.get("PYTHONPATH")])])
