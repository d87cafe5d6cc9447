"""Modes of ``scripts/benchmark.py``: each module exposes ``add_arguments(parser)`` and
``run(args)``, and its docstring's first line describes the mode."""
