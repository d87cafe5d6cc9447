"""The options of a run of an experiment, as the command line gives them: one object.

:class:`GridOptions` carries everything :func:`experiments.grid.runner.run_grid` needs
besides the config (where results go, the engine, the executor, group sizes, claims,
loggers); a kind's runner reads the options that apply to it (the synthetic problem:
``results_dir``, ``dry_run``, ``out``, ``quiet``).
"""
import dataclasses

from experiments.grid.executors import MAX_ATTEMPTS
from experiments.results.claims import HEARTBEAT, STALE_AFTER

__all__ = ["GridOptions"]


@dataclasses.dataclass(frozen=True)
class GridOptions:
    """How to run a grid (see :func:`experiments.grid.runner.run_grid`).

    ``results_dir``: runs go to ``results_dir/<config name>/<run id>/``; ``engine``: a
    registered engine; ``data_dir``: where the datasets are; ``only``: ``key=value``
    filters (:func:`experiments.config.runs.select`); ``quiet``: no progress;
    ``dry_run``: print the plan and every run's state, train nothing, write nothing;
    ``train_fn``: ``train_fn(run, store, engine=, data_dir=, dataset=, quiet=,
    position=, on_epoch=) -> status`` in place of the suite's trainer (one run at a
    time); ``load_fn``: ``load_fn(name, data_dir=, quiet=) -> Dataset`` in place of
    :func:`experiments.data.load_dataset` (once per grid, per Ray worker); ``out``:
    where the plan and per-run lines go (default stdout); ``executor``: ``'local'`` or
    ``'ray'`` (``address``, ``num_cpus``, ``num_gpus`` of each task: default the config's
    ``resources:``); ``max_attempts``: starts of a run that may end without progress
    before it is given up; ``stale_after``, ``heartbeat``: claims
    (:mod:`experiments.results.claims`); ``group_size``: up to this many compatible runs
    in one program, ``'auto'`` as fits the device (:mod:`experiments.training.grouping`);
    ``metric_log``: also log the curves to these (:mod:`experiments.training.metric_logs`);
    ``epilogue``: ``epilogue(grid_dir) -> lines`` printed once runs were trained, before
    the grid's last line (the command's: each rule's best setting, where the report and
    figures are; see :mod:`experiments.analysis.epilogue`).
    """
    results_dir: str = "results"
    engine: str = "jax"
    data_dir: str = None
    only: tuple = ()
    quiet: bool = False
    dry_run: bool = False
    train_fn: object = None
    load_fn: object = None
    out: object = None
    executor: str = "local"
    address: str = None
    num_cpus: float = None
    num_gpus: float = None
    max_attempts: int = MAX_ATTEMPTS
    stale_after: float = STALE_AFTER
    heartbeat: float = HEARTBEAT
    group_size: object = "auto"
    metric_log: tuple = ()
    epilogue: object = None
