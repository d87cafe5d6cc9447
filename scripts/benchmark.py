#!/usr/bin/env python
"""Benchmarks: ``benchmark.py MODE [options]``; ``benchmark.py`` alone lists the modes.

The command lives in :mod:`experiments.cli.benchmark` (installed as ``amsgrad-benchmark``);
this file runs it from a checkout without installing. ``python scripts/benchmark.py --help``
says more.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.cli.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
