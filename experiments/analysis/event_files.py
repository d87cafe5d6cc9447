"""TensorBoard event files from a grid's stored results, for a grid trained without
``--log tensorboard``: the same files the live log writes
(:mod:`experiments.training.metric_logs`; both build their events with
:mod:`experiments.results.tensorboard`), made afterwards from each run's ``curves.csv``
and config.

    from experiments.analysis.event_files import export_tensorboard
    export_tensorboard("results/logreg")     # then: tensorboard --logdir results/logreg

Needs tensorboardX (``pip install -e ".[tensorboard]"``).
"""
import glob
import os
import tempfile

import numpy as np

from experiments.analysis.records import ResultsError, grid_axes, group_grids, load_grid
from experiments.results import tensorboard
from experiments.results.files import atomic_write_bytes

__all__ = ["EXPORT_SUFFIX", "export_tensorboard", "hparam_domains"]

#: Ends the name of an exported event file (a new export replaces the one before).
EXPORT_SUFFIX = ".export"
_SCALARS = ("lr", "loss", "acc", "val_loss", "val_acc", "seconds")  # curves.csv's columns


def _tensorboard():
    try:
        import tensorboardX  # noqa: F401  (the optional extra)
    except ImportError:
        raise ResultsError("exporting TensorBoard event files needs tensorboardX: "
                           "pip install -e '.[tensorboard]'") from None
    return tensorboard


def _values(run, names):
    values = {n: run.seed if n == "seed" else run.hparams.get(n) for n in names}
    return {n: v for n, v in values.items() if v is not None}


def hparam_domains(runs, names):
    """``{name: sorted values}`` of ``names`` over ``runs`` (the seed among them): the
    choices the HPARAMS dashboard offers."""
    domains = {}
    for name in names:
        seen = {v for r in runs for v in _values(r, [name]).values()}
        domains[name] = sorted(seen, key=lambda v: (str(type(v)), v))
    return domains


def _wall_times(run):
    """A wall time per epoch: the curves' seconds, ending when curves.csv was written."""
    seconds = np.nan_to_num(np.array([row.get("seconds", 0.0) for row in run.rows],
                                     dtype=float))
    end = os.path.getmtime(os.path.join(run.path, "curves.csv")) if run.rows else 0.0
    return end - seconds.sum() + np.cumsum(seconds)


def _events(run, names, domains, logs):
    """The run's events, in the order the live log writes them."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog
    from tensorboardX.proto.summary_pb2 import Summary
    times = _wall_times(run)
    start = float(times[0]) if len(times) else 0.0
    # starts a session at epoch 1: TensorBoard drops what earlier files hold from there
    events = [Event(step=1, wall_time=start, session_log=SessionLog(status=SessionLog.START))]
    events += logs.hparams_events(_values(run, names), names, domains, wall_time=start)
    for row, wall in zip(run.rows, times):
        summary = Summary(value=[Summary.Value(tag=k, simple_value=float(row[k]))
                                 for k in _SCALARS if k in row])
        events.append(Event(step=int(row["epoch"]), wall_time=float(wall), summary=summary))
    if run.state in ("finished", "diverged", "failed"):
        status = "STATUS_FAILURE" if run.state == "failed" else "STATUS_SUCCESS"
        events.append(logs.session_end_event(status, wall_time=float(times[-1]) if len(times)
                                             else start))
    return events


def _write(events, folder):
    """Write ``events`` as one event file in ``folder`` atomically (tensorboardX's writer
    into a scratch folder, then moved in whole); remove the earlier exports there."""
    from tensorboardX.event_file_writer import EventsWriter
    with tempfile.TemporaryDirectory() as scratch:
        writer = EventsWriter(os.path.join(scratch, "events"), EXPORT_SUFFIX)
        for event in events:
            writer.write_event(event)
        writer.close()
        (name,) = os.listdir(scratch)
        with open(os.path.join(scratch, name), "rb") as f:
            data = f.read()
    path = os.path.join(folder, name)
    earlier = [p for p in glob.glob(os.path.join(folder, f"events.out.tfevents.*{EXPORT_SUFFIX}"))
               if p != path]
    atomic_write_bytes(path, data)
    for old in earlier:
        os.remove(old)
    return path


def export_tensorboard(results_dir, out_dir=None):
    """Write TensorBoard event files for every training run under ``results_dir`` (a
    grid's folder, or a root holding several) from its stored curves: a scalar per
    ``curves.csv`` column per epoch (``lr``, ``loss``, ``acc``, ``val_loss``,
    ``val_acc``, ``seconds``; step = epoch) and its hyperparameters for the HPARAMS
    dashboard (the updater, the grid's axes and the seed, each with the grid's values
    to choose from; metrics the final ``val_acc`` and ``val_loss``).

    Each run's file goes into its own folder, or ``<out_dir>/<grid>/<run id>/``, and
    replaces the file an earlier export wrote there; it starts a session at epoch 1, so
    TensorBoard shows its points instead of those a live ``--log tensorboard`` wrote.
    A run that ended (finished, diverged, failed) closes its session; a running one's
    curves so far are written. Returns the paths written. Raises
    :class:`~experiments.analysis.records.ResultsError` when the results cannot be read
    or tensorboardX is missing.
    """
    logs = _tensorboard()
    paths = []
    for folder, runs in group_grids(load_grid(results_dir)).items():
        names = logs.hparam_names(a for a in grid_axes(runs) if a != "updater")
        domains = hparam_domains(runs, names)
        for run in runs:
            target = run.path if out_dir is None else os.path.join(
                os.fspath(out_dir), os.path.basename(folder), os.path.basename(run.path))
            paths.append(_write(_events(run, names, domains, logs), target))
    return paths
