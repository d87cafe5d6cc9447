"""Training: one function trains K >= 1 runs, each with its own files.

:func:`train_runs` trains (or resumes, or leaves as they are) compatible runs
(:func:`experiments.training.grouping.check_group`) together: a group of one on its engine
(JAX or Theano, :mod:`experiments.engines`), a larger group in one compiled program
(:class:`~experiments.engines.jax_group.GroupEngine`). The trainer talks to both
through one interface (:class:`~experiments.engines.base.GroupOfOne` adapts a
single-run engine), and each run gets exactly the files it would get alone, whatever
its group: its curves rows, its status.json fields, and its own checkpoint with the
array names of :mod:`experiments.engines.base`. So a run resumes from its checkpoint
alone or in any group. :func:`train_run` is the one-run call.

Everything random in an epoch derives from ``(seed, epoch)`` (batch plan, flips,
dropout masks), so a run killed at any point resumes after its last checkpointed
epoch and writes exactly the curves of an uninterrupted run. The checkpoint is
removed when the run ends.

Checkpoints: a run alone, after every epoch (a killed runner loses at most the epoch in
progress); a group, when the time since the last checkpoint is at least
:data:`CHECKPOINT_RATIO` times what that one took (saving costs at most ~10%; for small
models that is every epoch), or as ``checkpoint_every`` says. Curves rows are written
every epoch, the status with the checkpoints; a resume redoes the epochs after the
checkpoint, with the same results.

Resuming runs at different epochs: the laggards catch up first. The group trains
from the earliest epoch any of its runs needs; a run further on sits the first epochs
out (inactive: its arrays untouched, its files not written) and joins in at its own
epoch. Divergence: a run whose epoch loss or validation loss is not finite gets that
row written and is recorded as ``diverged``; from then on it is inactive. The runs of
a group never mix, so the others go on exactly as they would alone.

Curves rows: ``epoch`` is 1-based (the row after the first epoch has ``epoch`` 1, as
in the post's plots), ``lr`` is the learning rate used during that epoch, ``loss`` and
``acc`` are means over the epoch's training batches in training mode, ``val_loss``
and ``val_acc`` are over the validation set in deterministic mode, ``seconds`` is the
run's share of the epoch's wall time (training and validation), so the seconds of all
runs add up to the wall time of the grid.
"""
import datetime
import hashlib
import json
import math
import socket
import time

import numpy as np

from experiments import models
from experiments.config import run_keys
from experiments.engines import get_engine
from experiments.training import grouping, provenance
from experiments.engines.base import GroupOfOne, Hyperparameters
from experiments.training.metric_logs import RunLog
from experiments.results.faults import is_storage_fault
from experiments.config.run_keys import RunConfig
from experiments.config.schedules import learning_rate

#: ``checkpoint_every=None`` in a group: checkpoint once the time since the last one is
#: this many times what the last one took.
CHECKPOINT_RATIO = 10.0

def config_hash(run):
    """A short hash of the run config; a checkpoint only resumes the config it was made by.
    Keys at the defaults they had before they existed do not count
    (:func:`experiments.run_keys.canonical`), so older checkpoints keep resuming."""
    text = json.dumps(run_keys.canonical(run), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


#: What an earlier attempt left in status.json that a new one must not carry on.
STALE_STATUS_KEYS = ("finished", "seconds", "error", "traceback", "failed_at")


def restarted(status, **fields):
    """The status of a run that starts (or resumes) training: ``status`` running again,
    with ``fields``, this host and its provenance (code, command line, library versions:
    :func:`experiments.provenance.record`), one more training, and what an earlier
    attempt left (:data:`STALE_STATUS_KEYS`) gone. Alone or in a group."""
    out = {k: v for k, v in status.items() if k not in STALE_STATUS_KEYS}
    out.update(provenance.record(fields.get("engine")))
    out.update(state="running", host=socket.gethostname(),
               trainings=int(status.get("trainings", 0)) + 1, updated=utc_now(), **fields)
    out.setdefault("started", utc_now())
    return out


def is_finite(*values):
    return all(math.isfinite(v) for v in values)


def run_setup(run, dataset=None, data_dir=None, quiet=False):
    """What a run's config fixes before training, checked (:class:`RunConfig`):
    ``(spec, n_epochs, schedule, dataset, flip, setup)``, the dataset loaded if not
    given, preprocessed as the run's setup says (:func:`experiments.data.preprocess`)
    and cut to its subsets."""
    config = run if isinstance(run, RunConfig) else RunConfig.from_run(run)
    spec = models.get_model(config.model)
    if config.dataset != spec.dataset:
        raise ValueError(f"model {spec.name!r} trains on {spec.dataset!r}, "
                         f"not dataset {config.dataset!r}")
    n_epochs = config.epochs
    schedule = config.lr_schedule  # checked by its row (experiments.schedules.check)
    keys = config.setup()
    from experiments.data import load_dataset, preprocess, subset
    if dataset is None:
        dataset = load_dataset(spec.dataset, data_dir, quiet=quiet,
                               subtract_mean=keys.subtract_mean)
    dataset = preprocess(dataset, keys.subtract_mean)
    dataset = subset(dataset, config.train_subset, config.val_subset)
    flip = dataset.flip if config.augmentation is None else config.augmentation == "flip"
    return spec, n_epochs, schedule, dataset, flip, keys


class _Member:
    """One run of the group and where it stands."""

    def __init__(self, run, store, metric_log=()):
        self.run, self.store = run, store
        self.config = RunConfig.from_run(run)
        self.log = RunLog(metric_log, run, store.run_dir) if metric_log else None
        self.rows, self.start = [], 0
        self.status = store.read_status() or {}
        self.checkpoint = store.load_checkpoint()
        # ended before: left as it is
        self.done = self.checkpoint is None and self.status.get("state") in ("finished",
                                                                              "diverged")
        self.alive = True   # still training in this group
        self.lost = None    # why its claim was lost (another process owns it now)

    def write(self, method, *args):
        """A write to the run's store; a lost claim ends the run's part in the group."""
        from experiments.results.claims import ClaimLost
        if self.lost is not None:
            return
        try:
            getattr(self.store, method)(*args)
        except ClaimLost as error:
            self.lost, self.alive = str(error), False


    def record(self, row):
        """Append an epoch's row; a row that is not finite ends the run, diverged."""
        self.rows.append(row)
        self.write("write_curves", self.rows)
        if self.log is not None and self.lost is None:
            self.log.write(row)
        self.status.update(epochs_done=row["epoch"], updated=utc_now())
        if not is_finite(row["loss"], row["val_loss"]):
            self.alive = False
            self.status.update(state="diverged", finished=utc_now(),
                               seconds=sum(r["seconds"] for r in self.rows))
            self.write("write_status", self.status)
            self.write("remove_checkpoint")


class _Checkpoints:
    """When to checkpoint: ``every`` seconds at least (0: every epoch), or (None) once
    the time since the last checkpoint is :data:`CHECKPOINT_RATIO` times what it took."""

    def __init__(self, every):
        self.every, self.saved_at, self.cost = every, None, 0.0

    def save(self, eng, trained, epochs_done, engine):
        """Checkpoint the live runs of ``trained`` if due; whether it did."""
        now = time.perf_counter()
        wait = self.every if self.every is not None else CHECKPOINT_RATIO * self.cost
        if self.saved_at is not None and now - self.saved_at < wait:
            return False
        dumped = eng.dump()
        for m, k in trained:
            if m.alive:
                m.write("save_checkpoint", dumped[k], {"epochs_done": epochs_done,
                                                        "config_hash": m.digest,
                                                        "engine": engine})
        self.saved_at = time.perf_counter()
        self.cost = self.saved_at - now
        return True


def _resume(live, eng):
    """Each live run's config hash and epoch to start at; the engine
    (which starts from initial arrays) loads the checkpoints of those that resume."""
    resumed = False
    for m in live:
        m.digest = config_hash(m.run)
        if m.checkpoint is not None:
            meta = m.checkpoint[1]
            if meta.get("config_hash") != m.digest:
                raise ValueError(f"{m.store.checkpoint_path}: checkpoint was written for a "
                                 f"different run config; remove it to start the run again")
            m.start, resumed = int(meta["epochs_done"]), True
            m.rows = m.store.read_curves()[:m.start]  # rows after the checkpoint are redone
    if resumed:
        eng.load([m.checkpoint[0] if m.checkpoint is not None else fresh
                  for m, fresh in zip(live, eng.dump())])
    for m in live:
        m.checkpoint = None


def _make_engine(name, spec, dataset, hparams, seeds, keys, options, alone):
    """The engine of the trainer's interface: a single-run engine for a run alone, the
    grouped JAX engine for a group."""
    if alone:
        return GroupOfOne(get_engine(name)(spec, dataset, hparams[0], seeds[0], setup=keys,
                                           **options), seeds[0])
    if name != "jax":
        raise ValueError(f"the {name} engine trains one run at a time (group size 1)")
    from experiments.engines.jax_group import GroupEngine
    return GroupEngine(spec, dataset, hparams, seeds, setup=keys, **options)


def train_runs(runs, stores, engine="jax", data_dir=None, dataset=None, quiet=False,
               position=None, engine_options=None, on_epoch=None, checkpoint_every=None,
               metric_log=()):
    """Train (or resume, or leave as they are) the compatible ``runs`` together.

    Parameters
    ----------
    runs : list of dict
        Resolved run configs: ``model``, ``updater``, ``learning_rate``, ``beta1``,
        ``beta2``, ``epsilon``, ``bias_correction``, ``seed``, ``epochs``,
        ``batch_size``, ``lr_schedule`` (:mod:`experiments.schedules`), ``augmentation``
        ('flip' | 'none'), ``val_batch_size``; optional ``dataset`` (checked against
        the model's), ``train_subset`` / ``val_subset`` (use the first N examples), and
        the setup keys of :mod:`experiments.setup` (missing: as before they existed).
        All equal but in their optimizer hyperparameters and seed
        (:func:`experiments.training.grouping.check_group`).
    stores : list of experiments.results.store.RunStore
        One per run.
    engine : str
        'jax' or 'theano' (a group of one only).
    data_dir : path, optional
        Where the datasets are (``data.load_dataset``); ignored if ``dataset`` is given.
    dataset : experiments.data.Dataset, optional
        Already loaded (a grid loads each dataset once).
    quiet : bool
        No progress bar (there is one only when stderr is a terminal anyway).
    position : int, optional
        tqdm line of the progress bar.
    engine_options : dict, optional
        Keyword arguments for the engine (e.g. ``device``; a group's ``layout``,
        ``eval_runs``); the setup comes from the runs.
    on_epoch : callable, optional
        ``on_epoch(run, row)`` for each run's curves row, once it is written; a
        :class:`~experiments.results.claims.ClaimLost` it raises ends that run's part only.
    checkpoint_every : float, optional
        Seconds to wait at least between checkpoints (0: every epoch); default: every
        epoch for a run alone, else see :data:`CHECKPOINT_RATIO`.
    metric_log : sequence of str
        Also log each run's curves rows to these (:mod:`experiments.metric_logs`).

    Returns
    -------
    list of dict
        Each run's final status as written to status.json: ``state`` ('finished' |
        'diverged'), ``epochs_done``, ``epochs``, ``started``, ``finished``,
        ``engine``, ``engine_info``, ``host``, ``trainings``, ``seconds``, and
        :func:`experiments.provenance.record`'s ``code``, ``command``, ``cwd``,
        ``versions``; runs already done are left untouched. A run whose claim another
        process took over gives ``{'state': 'lost', 'error': ...}`` and is not
        written to any more.

    If training raises, every run still in training is marked 'failed' with the
    error (not for a fault of the file system, see :mod:`experiments.results.storage`),
    checkpoints stay (a later call resumes) and the exception propagates.
    """
    if len(runs) != len(stores):
        raise ValueError(f"{len(runs)} runs but {len(stores)} stores")
    grouping.check_group(runs)
    members = [_Member(run, store, metric_log) for run, store in zip(runs, stores)]
    live = [m for m in members if not m.done]
    if not live:
        return [m.status for m in members]

    run0, alone = live[0].config, len(runs) == 1
    spec, n_epochs, schedule, dataset, flip, keys = run_setup(run0, dataset, data_dir, quiet)
    batch_size, val_batch_size = run0.batch_size, run0.val_batch_size

    hparams = [Hyperparameters.from_run(m.config) for m in live]
    seeds = [m.config.seed for m in live]
    eng = _make_engine(engine, spec, dataset, hparams, seeds, keys, engine_options or {},
                       alone)
    _resume(live, eng)

    info = eng.info() if alone else dict(eng.info(), group=[m.run.get("run_id") for m in live])
    for m in live:
        m.status = restarted(m.status, epochs_done=m.start, epochs=n_epochs, engine=engine,
                             engine_info=info, config_hash=m.digest)
        m.write("write_status", m.status)

    first = min(m.start for m in live)
    desc = (f"{spec.name} {run0.updater} seed {run0.seed}" if alone
            else f"{spec.name} group of {len(live)}")
    bar = None if quiet else _progress_bar(desc, n_epochs, first, position)
    from experiments.data import epoch_batches
    checkpoints = _Checkpoints(0 if checkpoint_every is None and alone else checkpoint_every)
    ended = False
    try:
        for epoch in range(first, n_epochs):
            active = [m.alive and m.start <= epoch for m in live]
            if not any(active):
                break
            began = time.perf_counter()
            lrs = [learning_rate(m.config.learning_rate, epoch, n_epochs, schedule) if a else 0.0
                   for m, a in zip(live, active)]
            plans = {s: epoch_batches(s, epoch, len(dataset.y_train), batch_size, flip)
                     for s in eng.seed_order}
            losses, accs = eng.train_epoch(epoch, lrs, active, plans)
            val_losses, val_accs = eng.evaluate(val_batch_size)
            share = (time.perf_counter() - began) / sum(active)
            trained = [(m, k) for k, m in enumerate(live) if active[k]]
            for m, k in trained:
                m.record({"epoch": epoch + 1, "lr": lrs[k], "loss": float(losses[k]),
                          "acc": float(accs[k]), "val_loss": float(val_losses[k]),
                          "val_acc": float(val_accs[k]), "seconds": share})
            # not after the last epoch: the run ends and its checkpoint goes
            saved = (epoch + 1 < n_epochs and any(m.alive for m, _ in trained)
                     and checkpoints.save(eng, trained, epoch + 1, engine))
            _epoch_written([m for m, _ in trained], saved, on_epoch)
            if bar is not None:
                bar.update(1)
                _postfix(bar, alone, [(float(losses[k]), float(val_accs[k]))
                                      for m, k in trained], sum(m.alive for m in live))
        ended = True
    except Exception as exc:
        for m in live if not is_storage_fault(exc) else ():  # a full disk: no run's failure
            if m.alive:
                m.status.update(state="failed", error=f"{type(exc).__name__}: {exc}",
                                updated=utc_now())
                m.write("write_status", m.status)
        raise
    finally:
        if bar is not None:
            bar.close()
        for m in live if metric_log else ():
            m.log.close(ended)

    for m in live:
        if m.alive:
            m.status.update(state="finished", finished=utc_now(), updated=utc_now(),
                            seconds=sum(r["seconds"] for r in m.rows))
            m.write("write_status", m.status)
            m.write("remove_checkpoint")
    return [m.status if m.lost is None else {"state": "lost", "error": m.lost}
            for m in members]


def _progress_bar(desc, n_epochs, first, position):
    """The epochs' bar (tqdm), drawn on a terminal only."""
    from tqdm.auto import tqdm
    return tqdm(total=n_epochs, initial=first, position=position, leave=position is None,
                desc=desc, unit="epoch", dynamic_ncols=True, disable=None)


def _epoch_written(trained, saved, on_epoch):
    """After the rows of an epoch: the statuses (if a checkpoint was ``saved``), and
    ``on_epoch`` for each run; a run whose claim is lost stops here."""
    from experiments.results.claims import ClaimLost
    for m in trained:
        # the status follows the checkpoints (the curves say how far a run got):
        # 120 small synced writes an epoch less, a tenth of a logreg epoch
        if m.alive and saved:
            m.write("write_status", m.status)
        if on_epoch is not None and m.lost is None:
            try:
                on_epoch(m.run, m.rows[-1])
            except ClaimLost as error:  # that run is another process's now
                m.lost, m.alive = str(error), False


def _postfix(bar, alone, finals, n_alive):
    """A run's loss and validation accuracy; a group's mean loss and best accuracy."""
    done = [(loss, acc) for loss, acc in finals if math.isfinite(loss)]
    if alone and done:
        bar.set_postfix(loss=f"{done[0][0]:.4f}", val_acc=f"{done[0][1]:.4f}", refresh=False)
    elif done:
        bar.set_postfix(loss=f"{np.mean([d[0] for d in done]):.4f}",
                        best_val_acc=f"{max(d[1] for d in done):.4f}", runs=n_alive)


def train_run(run, store, engine="jax", data_dir=None, dataset=None, quiet=False,
              position=None, engine_options=None, on_epoch=None, metric_log=()):
    """Train (or resume, or leave as it is) one run: :func:`train_runs` with one run;
    ``on_epoch(row)``. Returns its final status; another process taking the run's claim
    over raises :class:`~experiments.results.claims.ClaimLost`."""
    from experiments.results.claims import ClaimLost
    status, = train_runs([run], [store], engine, data_dir, dataset, quiet, position,
                         engine_options, on_epoch and (lambda _, row: on_epoch(row)),
                         metric_log=metric_log)
    if status.get("state") == "lost":
        raise ClaimLost(status["error"])
    return status
