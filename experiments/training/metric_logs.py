"""Live metrics: each run's curves rows also sent to TensorBoard and Weights & Biases.

The trainer writes a run's curves row every epoch (:mod:`experiments.training`); a
:class:`RunLog` passes the same row on, with the epoch as the step:

- ``'tensorboard'``: event files in the run's own folder (``tensorboardX``; no
  TensorFlow), one scalar series per curves column (``loss``, ``acc``, ``val_loss``,
  ``val_acc``, ``lr``, ``seconds``), so ``tensorboard --logdir results/<grid>`` shows
  every run of the grid. Each training of a run opens a new event file whose
  ``purge_step`` is its first epoch: a resumed run's redone epochs replace the points
  the killed training wrote after its last checkpoint. The file also holds the run's
  hyperparameters for TensorBoard's HPARAMS dashboard (:func:`hparams_events`): its
  values on the grid's axes (``grid.yaml`` beside the run folders), the updater and the
  seed, so runs can be filtered and compared by them, with the final ``val_acc`` and
  ``val_loss`` as the dashboard's metrics; a training that ends marks the session done.
  :func:`experiments.analysis.event_files.export_tensorboard` writes the same files
  afterwards from a grid's stored curves.
- ``'wandb'``: a Weights & Biases run per run, ``id`` ``<grid name>.<run id>`` (run ids
  repeat from grid to grid), ``name`` the run id, ``group`` the grid name, the run's
  config, ``resume='allow'``: a resumed run continues its W&B run, and the epochs W&B
  already holds are not sent again (W&B steps only grow; a resumed run redoes them
  with the same values). Mode, project, entity and folder come from W&B's
  environment (``WANDB_MODE``, ``WANDB_PROJECT``, default ``amsgrad-experiments``,
  ``WANDB_ENTITY``, ``WANDB_DIR``); offline runs are uploaded later with ``wandb sync``.
  An offline run cannot resume: the resumed training writes a second offline run with
  the same id, starting at its first epoch.

Both work for a run alone and for every run of a group, in this process or in a Ray worker
(the worker logs, so its Python needs the package too). They are views of the run's files,
not the record: a logger that fails is dropped for that run with a warning, and training
goes on. What is logged changes nothing of the experiment (not in ``grid.yaml``, run ids or
the config hash).

Install: ``pip install -e ".[tensorboard]"`` / ``".[wandb]"``.
"""
import importlib
import os
import sys
import time
import warnings

from experiments.config import run_keys
from experiments.config.loading import ConfigError
from experiments.results.tensorboard import (grid_axes_of, hparam_names, hparams_events,
                                             run_hparams, session_end_event)

#: What the curves can be logged to: kind -> (the package it needs, the extra that
#: installs it); :func:`register_logger` adds one.
KINDS = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}

__all__ = ["KINDS", "parse", "check", "register_logger", "RunLog"]


def parse(text):
    """``'tensorboard,wandb'`` -> ``('tensorboard', 'wandb')``; ``ValueError`` naming an
    unknown one."""
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in str(text).split(",") if k.strip()))
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown metric log {kind!r}; choose from {', '.join(KINDS)}")
    return kinds


def check(kinds, where=None):
    """``kinds`` as a tuple, each known and its package importable in this Python
    (``where``: how to name it, default ``this Python (<executable>)``); otherwise a
    :class:`~experiments.config.ConfigError`, one line saying what to install. Called
    before anything trains: by the command, the grid and each Ray task, whose worker's
    Python logs too."""
    kinds = tuple(kinds or ())
    where = where or f"this Python ({sys.executable})"
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"--log {kind}: unknown; choose from {', '.join(KINDS)}")
        module, extra = KINDS[kind]
        try:  # imported, not only found: an install that does not import fails here too
            importlib.import_module(module)
        except ImportError:
            problem = "is not installed in"
        except Exception as error:  # noqa: BLE001 (a broken install: said in one line)
            said = " ".join(str(error).split())
            problem = f"does not import ({type(error).__name__}: {said}) in"
        else:
            continue
        raise ConfigError(f"--log {kind}: {module} {problem} {where}; "
                          f"pip install -e '.[{extra}]'")
    return kinds


class _TensorBoard:
    """tensorboardX's synchronous event file writer: a row is on disk (the OS's) once
    written, so a killed runner's event file holds every row it wrote to curves.csv
    (its ``SummaryWriter`` queues events for a thread of its own per run)."""

    def __init__(self, run, run_dir, first_epoch):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.proto.summary_pb2 import Summary
        self.Event, self.Summary = Event, Summary
        # tensorboardX names the file by the second; the nanoseconds keep a run's files
        # in the order they were written (a resume may follow within the second).
        self.file = EventsWriter(os.path.join(run_dir, "events"), f".{time.time_ns()}")
        # As SummaryWriter(purge_step=first_epoch): TensorBoard drops the points earlier
        # files hold from this step on (the epochs a resume redoes).
        self.file.write_event(Event(step=first_epoch, wall_time=time.time(),
                                    session_log=SessionLog(status=SessionLog.START)))
        # Every training writes them (the same values): a resumed run's later files
        # stand alone, whichever TensorBoard reads.
        axes = grid_axes_of(os.path.dirname(os.path.abspath(run_dir)))
        if axes is None:  # no grid.yaml: every axis key the run holds
            axes = [a for a in run_keys.table().axes if a in run and a != "updater"]
        for event in hparams_events(run_hparams(run, axes), hparam_names(axes)):
            self.file.write_event(event)

    def write(self, epoch, values):
        summary = self.Summary(value=[self.Summary.Value(tag=k, simple_value=v)
                                      for k, v in values.items()])
        self.file.write_event(self.Event(step=epoch, wall_time=time.time(), summary=summary))
        self.file.flush()

    def close(self, ended):
        if ended:  # an interrupted run resumes: its session goes on
            self.file.write_event(session_end_event())
        self.file.close()


class _WandB:
    def __init__(self, run, run_dir, first_epoch):
        import wandb
        grid = run.get("name") or os.path.basename(os.path.dirname(os.path.abspath(run_dir)))
        self.run = wandb.init(
            id=f"{grid}.{run['run_id']}", name=run["run_id"], group=grid, config=run,
            project=os.environ.get("WANDB_PROJECT") or "amsgrad-experiments",
            resume="allow", reinit="create_new",  # a group: one W&B run per run, at once
            settings=wandb.Settings(console="off", silent=True))

    def write(self, epoch, values):
        if epoch >= self.run.starting_step:  # W&B already has the earlier epochs
            self.run.log(values, step=epoch)

    def close(self, ended):
        self.run.finish(exit_code=0 if ended else 1)


_LOGGERS = {"tensorboard": _TensorBoard, "wandb": _WandB}


def register_logger(kind, logger, package, extra):
    """Add a metric log ``kind`` (``--log <kind>``): ``logger(run, run_dir, first_epoch)``
    with ``write(epoch, values)`` and ``close(ended)``, needing ``package`` (installed by
    the ``.[<extra>]`` extra). In a Ray worker it must be registered there too (by the
    module that defines it, imported where the run trains)."""
    KINDS[kind] = (package, extra)
    _LOGGERS[kind] = logger


class RunLog:
    """The metric logs of one run (``run`` config, files in ``run_dir``): opened at the
    first row written, so they know the epoch a training starts at."""

    def __init__(self, kinds, run, run_dir):
        self.kinds, self.run, self.run_dir = tuple(kinds), run, os.fspath(run_dir)
        self.open = None  # kind -> logger, once the first row came

    def _fail(self, kind, action, error):
        self.open.pop(kind, None)
        warnings.warn(f"{self.run_dir}: {kind} logging stopped ({action}: "
                      f"{type(error).__name__}: {error})", stacklevel=3)

    def write(self, row):
        """Log a curves row: every column but ``epoch``, at step ``epoch``."""
        epoch = int(row["epoch"])
        if self.open is None:
            self.open = {}
            for kind in self.kinds:
                try:
                    self.open[kind] = _LOGGERS[kind](self.run, self.run_dir, epoch)
                except Exception as error:  # noqa: BLE001 (a view; the run goes on)
                    self._fail(kind, "opening", error)
        values = {k: float(v) for k, v in row.items() if k != "epoch"}
        for kind, logger in list(self.open.items()):
            try:
                logger.write(epoch, values)
            except Exception as error:  # noqa: BLE001
                self._fail(kind, f"epoch {epoch}", error)

    def close(self, ended=True):
        """End the logs; ``ended``: whether the training ended (finished or diverged),
        or raised or was interrupted (W&B marks the run failed; it may resume)."""
        for kind, logger in (self.open or {}).items():
            try:
                logger.close(ended)
            except Exception as error:  # noqa: BLE001
                warnings.warn(f"{self.run_dir}: closing the {kind} log: "
                              f"{type(error).__name__}: {error}")
        self.open = None
