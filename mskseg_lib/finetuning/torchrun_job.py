"""What every torchrun process of a grid runs: ``python -m mskseg_lib.finetuning.torchrun_job JOB``.

:func:`mskseg_lib.finetuning.runner.launch_torchrun` writes the arguments of
:func:`~mskseg_lib.finetuning.runner.train_runs` to the job file ``JOB`` (a pickle under the
grid's ``_torchrun`` folder) and starts ``torchrun --nproc_per_node N -m`` this module; each rank
reads the job and trains the runs together (DDP), rank 0 writing the run folders.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

from mskseg_lib.finetuning.runner import train_runs


def main(argv: list[str] | None = None) -> int:
    """Train the runs of the job file named by ``argv[0]``; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mskseg_lib.finetuning.torchrun_job JOB_FILE", file=sys.stderr)
        return 2
    job = pickle.loads(Path(args[0]).read_bytes())
    train_runs(job.pop("runs"), job.pop("run_ids"), **job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
