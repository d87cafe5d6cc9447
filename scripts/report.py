#!/usr/bin/env python
"""Write the Markdown report of a grid's results.

The command lives in :mod:`experiments.cli.report` (installed as ``amsgrad-report``); this
file runs it from a checkout without installing. ``python scripts/report.py --help`` says
more.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.cli.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
