"""The command-line programs, installed as commands (``pyproject.toml``'s
``[project.scripts]``) and run from a checkout by the thin ``scripts/*.py``:

=====================  ======================  =====================================
command                from a checkout         module
=====================  ======================  =====================================
``amsgrad-grid``       ``scripts/run_grid.py``   :mod:`experiments.cli.run_grid`
``amsgrad-plot``       ``scripts/plot.py``       :mod:`experiments.cli.plot`
``amsgrad-report``     ``scripts/report.py``     :mod:`experiments.cli.report`
``amsgrad-benchmark``  ``scripts/benchmark.py``  :mod:`experiments.cli.benchmark`
=====================  ======================  =====================================

Each module's ``main(argv=None)`` returns the exit status.
"""
