"""The grid side: from a config to trained runs.

:mod:`~experiments.grid.runs` expands a config into runs (ids, ``--only``, grid.yaml,
the plan of what is missing); :mod:`~experiments.grid.grouping` says which runs may
share one compiled program; :mod:`~experiments.grid.runner` trains what the plan says
on an executor (:mod:`~experiments.grid.executors` here,
:mod:`~experiments.grid.ray_executor` on Ray), each run under a claim
(:mod:`~experiments.grid.claims`) so that several runners can share a results folder.
"""
