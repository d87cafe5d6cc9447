#!/usr/bin/env python
"""Train every run of a grid config that is not done yet.

The command lives in :mod:`experiments.cli.run_grid` (installed as ``amsgrad-grid``); this
file runs it from a checkout without installing. ``python scripts/run_grid.py --help`` says
more.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.cli.run_grid import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
