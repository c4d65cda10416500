"""``python -m mskseg_lib`` is the same as the ``mskseg`` console script."""
from mskseg_lib.cli import main

raise SystemExit(main())
