"""The results side: a run's plain files and how they are written.

:mod:`~experiments.results.files` holds the formats (curves.csv, the checkpoint) and
the atomic write; :mod:`~experiments.results.store` a run's folder
(:class:`~experiments.results.store.RunStore`: config, curves, status, checkpoints,
repair after a crash); :mod:`~experiments.results.storage` turns a full disk or a
read-only folder into one line and exit status 3.
"""
