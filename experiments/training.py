"""One training run: schedule, epochs, curves, checkpoint/resume, divergence, progress.

A run is a resolved config dict (see :func:`train_run`). After every epoch the trainer
appends a row to ``curves.csv`` and then writes a checkpoint (every engine array plus
``{epochs_done, config_hash}``). Everything random in an epoch derives from
``(seed, epoch)`` (batch plan, flips, dropout masks), so a run killed at any point
resumes after its last checkpointed epoch and writes exactly the curves of an
uninterrupted run. The checkpoint is removed when the run ends.

Curves rows: ``epoch`` is 1-based (the row after the first epoch has ``epoch`` 1, as
in the post's plots), ``lr`` is the learning rate used during that epoch, ``loss`` and
``acc`` are means over the epoch's training batches in training mode, ``val_loss``
and ``val_acc`` are over the whole validation set in deterministic mode, ``seconds``
is the wall time of the epoch (training and validation).
"""
import copy
import datetime
import hashlib
import json
import math
import platform
import socket
import sys
import time

import numpy as np

from . import models, setup
from .engines import get_engine
from .engines.base import Hyperparameters
from .storage import is_storage_fault

SCHEDULES = ("linear", "constant")


def learning_rate(lr0, epoch, n_epochs, schedule="linear"):
    """The learning rate during epoch ``epoch`` (0-based) of ``n_epochs``.

    ``'linear'``: ``lr0 * (1 - epoch / n_epochs)``, changed once per epoch, so the
    last epoch uses ``lr0 / n_epochs``; ``'constant'``: ``lr0``.
    """
    if schedule == "linear":
        return lr0 * (1.0 - epoch / n_epochs)
    if schedule == "constant":
        return lr0
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def config_hash(run):
    """A short hash of the run config; a checkpoint only resumes the config it was made by.
    Setup keys at the values the code used before they existed do not count
    (:func:`experiments.setup.canonical`), so older checkpoints keep resuming."""
    text = json.dumps(setup.canonical(run), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def subset(dataset, train_subset=None, val_subset=None):
    """A shallow copy of ``dataset`` keeping the first ``train_subset`` training and
    ``val_subset`` validation examples (``None``: all)."""
    out = copy.copy(dataset)
    for part, n in (("train", train_subset), ("val", val_subset)):
        if n is not None:
            available = len(getattr(dataset, f"y_{part}"))
            if not 1 <= int(n) <= available:
                raise ValueError(f"{part}_subset must be in 1..{available}, got {n!r}")
            setattr(out, f"x_{part}", getattr(dataset, f"x_{part}")[:int(n)])
            setattr(out, f"y_{part}", getattr(dataset, f"y_{part}")[:int(n)])
    return out


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def library_versions():
    return {"python": platform.python_version(), "numpy": np.__version__,
            "executable": sys.executable}


#: What an earlier attempt left in status.json that a new one must not carry on.
STALE_STATUS_KEYS = ("finished", "seconds", "error", "traceback", "failed_at")


def restarted(status, **fields):
    """The status of a run that starts (or resumes) training: ``status`` running again,
    with ``fields``, this host and the library versions, one more training, and what an
    earlier attempt left (:data:`STALE_STATUS_KEYS`) gone. Alone or in a group."""
    out = {k: v for k, v in status.items() if k not in STALE_STATUS_KEYS}
    out.update(state="running", versions=library_versions(), host=socket.gethostname(),
               trainings=int(status.get("trainings", 0)) + 1, updated=utc_now(), **fields)
    out.setdefault("started", utc_now())
    return out


def is_finite(*values):
    return all(math.isfinite(v) for v in values)


def run_setup(run, dataset=None, data_dir=None, quiet=False):
    """What a run's config fixes before training, checked: ``(spec, n_epochs, schedule,
    dataset, flip, setup)``, the dataset loaded if not given, preprocessed as the
    run's setup says (:func:`experiments.data.preprocess`) and cut to its subsets."""
    spec = models.get_model(run["model"])
    if (run.get("dataset") or spec.dataset) != spec.dataset:
        raise ValueError(f"model {spec.name!r} trains on {spec.dataset!r}, "
                         f"not dataset {run['dataset']!r}")
    n_epochs = int(run["epochs"])
    schedule = run.get("lr_schedule") or "linear"
    learning_rate(1.0, 0, n_epochs, schedule)  # checks the schedule name
    augmentation = run.get("augmentation")
    if augmentation not in (None, "flip", "none"):
        raise ValueError(f"unknown augmentation {augmentation!r}; choose from flip, none")
    keys = setup.Setup.from_run(run)
    from .data import load_dataset, preprocess
    if dataset is None:
        dataset = load_dataset(spec.dataset, data_dir, quiet=quiet,
                               subtract_mean=keys.subtract_mean)
    dataset = preprocess(dataset, keys.subtract_mean)
    dataset = subset(dataset, run.get("train_subset"), run.get("val_subset"))
    flip = dataset.flip if augmentation is None else augmentation == "flip"
    return spec, n_epochs, schedule, dataset, flip, keys


def train_run(run, store, engine="jax", data_dir=None, dataset=None, quiet=False,
              position=None, engine_options=None, on_epoch=None):
    """Train (or resume, or leave as it is) one run; returns its final status dict.

    Parameters
    ----------
    run : dict
        Resolved run config: ``model``, ``updater``, ``lr`` (or ``learning_rate``), ``beta1``,
        ``beta2``, ``epsilon``, ``bias_correction``, ``seed``, ``epochs``, ``batch_size``,
        ``lr_schedule`` ('linear' | 'constant'), ``augmentation`` ('flip' | 'none'),
        ``val_batch_size``; optional ``dataset`` (checked against the model's),
        ``train_subset`` / ``val_subset`` (use the first N examples), and the setup
        keys of :mod:`experiments.setup` (missing: as before they existed).
    store : experiments.results.RunStore
    engine : str
        'jax' or 'theano'.
    data_dir : path, optional
        Where the datasets are (``data.load_dataset``); ignored if ``dataset`` is given.
    dataset : experiments.data.Dataset, optional
        Already loaded (a grid loads each dataset once).
    quiet : bool
        No progress bar.
    position : int, optional
        tqdm line of the progress bar (for several runs at once).
    engine_options : dict, optional
        Extra keyword arguments for the engine (e.g. ``device`` for JAX).
    on_epoch : callable, optional
        Called with each curves row once it and its checkpoint are written.

    Returns
    -------
    dict
        The status as written to status.json: ``state`` ('finished' | 'diverged'),
        ``epochs_done``, ``epochs``, ``started``, ``finished``, ``engine``,
        ``versions``, ``host``, ``trainings``, ``seconds``.

    A run whose status is already 'finished' or 'diverged' (and has no checkpoint) is
    not touched. If training raises, the status becomes 'failed' with the error (not
    for a fault of the file system, see :mod:`experiments.storage`), the checkpoint
    stays (a later call resumes) and the exception propagates.
    """
    status = store.read_status() or {}
    checkpoint = store.load_checkpoint()
    if checkpoint is None and status.get("state") in ("finished", "diverged"):
        return status

    spec, n_epochs, schedule, dataset, flip, keys = run_setup(run, dataset, data_dir, quiet)
    lr0 = float(run["lr"] if "lr" in run else run["learning_rate"])
    digest = config_hash(run)

    eng = get_engine(engine)(spec, dataset, Hyperparameters.from_run(run), run["seed"],
                             setup=keys, **(engine_options or {}))
    rows, start = [], 0
    if checkpoint is not None:
        arrays, meta = checkpoint
        if meta.get("config_hash") != digest:
            raise ValueError(f"{store.checkpoint_path}: checkpoint was written for a different "
                             f"run config; remove it to start the run again")
        eng.load(arrays)
        start = int(meta["epochs_done"])
        rows = store.read_curves()[:start]  # a row written after the checkpoint is redone

    status = restarted(status, epochs_done=start, epochs=n_epochs, engine=engine,
                       engine_info=eng.info(), config_hash=digest)
    store.write_status(status)

    bar = None
    if not quiet:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_epochs, initial=start, position=position, leave=position is None,
                   desc=f"{spec.name} {run['updater']} seed {run['seed']}", unit="epoch",
                   dynamic_ncols=True)
    from .data import epoch_batches
    state = "finished"
    try:
        for epoch in range(start, n_epochs):
            began = time.perf_counter()
            lr = learning_rate(lr0, epoch, n_epochs, schedule)
            indices, flips = epoch_batches(run["seed"], epoch, len(dataset.y_train),
                                           int(run.get("batch_size", 128)), flip)
            loss, acc = eng.train_epoch(epoch, lr, indices, flips)
            val_loss, val_acc = eng.evaluate(int(run.get("val_batch_size", 1024)))
            row = {"epoch": epoch + 1, "lr": lr, "loss": loss, "acc": acc,
                   "val_loss": val_loss, "val_acc": val_acc,
                   "seconds": time.perf_counter() - began}
            rows.append(row)
            store.write_curves(rows)
            if not is_finite(loss, val_loss):
                state = "diverged"
                status.update(epochs_done=epoch + 1)
                break
            store.save_checkpoint(eng.dump(), {"epochs_done": epoch + 1,
                                               "config_hash": digest, "engine": engine})
            status.update(epochs_done=epoch + 1, updated=utc_now())
            store.write_status(status)
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4f}", val_acc=f"{val_acc:.4f}", refresh=False)
                bar.update(1)
            if on_epoch is not None:
                on_epoch(row)
    except Exception as exc:
        if not is_storage_fault(exc):  # a full disk is not the run's failure
            status.update(state="failed", error=f"{type(exc).__name__}: {exc}",
                          updated=utc_now())
            store.write_status(status)
        raise
    finally:
        if bar is not None:
            bar.close()

    status.update(state=state, finished=utc_now(), updated=utc_now(),
                  seconds=sum(r["seconds"] for r in rows))
    store.write_status(status)
    store.remove_checkpoint()
    return status
