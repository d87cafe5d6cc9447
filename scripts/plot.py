#!/usr/bin/env python
"""Draw the post's figures for a results folder.

The command lives in :mod:`experiments.cli.plot` (installed as ``amsgrad-plot``); this file
runs it from a checkout without installing. ``python scripts/plot.py --help`` says more.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.cli.plot import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
