"""Training: one function trains K >= 1 runs, each with its own files.

:func:`train_runs` trains (or resumes, or leaves as they are) compatible runs
(:func:`experiments.training.grouping.check_group`) together on an engine of the
registry (:mod:`experiments.engines`: a run alone on its one-run engine, several in one
compiled program where the engine trains groups). The trainer talks to one interface
(:class:`~experiments.engines.base.EngineGroup`), and each run gets exactly the files
it would get alone, whatever its group (:class:`~experiments.training.members.RunMember`):
its curves rows, its status.json fields, and its own checkpoint with the array names of
:mod:`experiments.engines.base`. So a run resumes from its checkpoint alone or in any
group. :func:`train_run` is the one-run call.

Everything random in an epoch derives from ``(seed, epoch)`` (batch plan, flips,
dropout masks), so a run killed at any point resumes after its last checkpointed
epoch and writes exactly the curves of an uninterrupted run. The checkpoint is
removed when the run ends.

Checkpoints: a run alone, after every epoch (a killed runner loses at most the epoch in
progress); a group, when the time since the last checkpoint is at least
:data:`~experiments.training.members.CHECKPOINT_RATIO` times what that one took (saving
costs at most ~10%; for small models that is every epoch), or as ``checkpoint_every``
says. Curves rows are written every epoch, the status with the checkpoints; a resume
redoes the epochs after the checkpoint, with the same results.

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
import time

from experiments.engines import get_engine
from experiments.results.claims import ClaimLost
from experiments.results.faults import is_storage_fault
from experiments.training import grouping
from experiments.training.inputs import TrainingInputs
from experiments.training.members import Checkpoints, RunMember, restarted
from experiments.training.progress import Progress

__all__ = ["train_runs", "train_run"]


class _Group:
    """The live runs of one training, their engine and what they train on."""

    def __init__(self, live, engine, inputs, options):
        self.live, self.engine_name, self.inputs = live, engine, inputs
        self.alone = len(live) == 1
        entry = get_engine(engine)
        self.library = entry.abilities.library
        self.engine = entry.group(inputs.spec, inputs.dataset,
                                  [m.config.optimizer() for m in live],
                                  [m.config.seed for m in live], inputs.setup, options)

    def resume(self):
        """Each run's config hash and epoch to start at; the engine (which starts from
        initial arrays) loads the checkpoints of those that resume."""
        starts = [m.resume_point() for m in self.live]
        if any(m.checkpoint is not None for m in self.live):
            self.engine.load([m.checkpoint[0] if m.checkpoint is not None else fresh
                              for m, fresh in zip(self.live, self.engine.dump())])
        for m in self.live:
            m.checkpoint = None
        return min(starts)

    def start(self):
        """Every run's status: training again, with what trains it."""
        for m in self.live:
            m.status = restarted(m.status, self.library, epochs_done=m.start,
                                 epochs=self.inputs.epochs, engine=self.engine_name,
                                 engine_info=self.engine.info(), config_hash=m.digest)
            m.write("write_status", m.status)

    def train_epoch(self, epoch):
        """Train and validate ``epoch`` (0-based) of the active runs and write their rows;
        returns ``(trained: [(member, index)], losses, val_accs)``, or None if no run is
        active any more."""
        inputs = self.inputs
        active = [m.alive and m.start <= epoch for m in self.live]
        if not any(active):
            return None
        began = time.perf_counter()
        lrs = [inputs.learning_rate(m.config.learning_rate, epoch) if a else 0.0
               for m, a in zip(self.live, active)]
        plans = {s: inputs.batches(s, epoch) for s in self.engine.seed_order}
        losses, accs = self.engine.train_epoch(epoch, lrs, active, plans)
        val_losses, val_accs = self.engine.evaluate(inputs.val_batch_size)
        share = (time.perf_counter() - began) / sum(active)
        trained = [(m, k) for k, m in enumerate(self.live) if active[k]]
        for m, k in trained:
            m.record({"epoch": epoch + 1, "lr": lrs[k], "loss": float(losses[k]),
                      "acc": float(accs[k]), "val_loss": float(val_losses[k]),
                      "val_acc": float(val_accs[k]), "seconds": share})
        return trained, [float(losses[k]) for _, k in trained], \
            [float(val_accs[k]) for _, k in trained]


def _epoch_written(trained, saved, on_epoch):
    """After the rows of an epoch: the statuses (if a checkpoint was ``saved``), and
    ``on_epoch`` for each run; a run whose claim is lost stops here."""
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


def _train_epochs(group, first, checkpoints, progress, on_epoch):
    """Train every epoch from ``first`` on, checkpointing as ``checkpoints`` says."""
    n_epochs = group.inputs.epochs
    for epoch in range(first, n_epochs):
        result = group.train_epoch(epoch)
        if result is None:
            break
        trained, losses, val_accs = result
        # not after the last epoch: the run ends and its checkpoint goes
        saved = (epoch + 1 < n_epochs and any(m.alive for m, _ in trained)
                 and checkpoints.save(group.engine, trained, epoch + 1, group.engine_name))
        _epoch_written([m for m, _ in trained], saved, on_epoch)
        progress.epoch(epoch, losses, val_accs, sum(m.alive for m in group.live))


def train_runs(runs, stores, engine="jax", data_dir=None, dataset=None, quiet=False,
               position=None, engine_options=None, on_epoch=None, checkpoint_every=None,
               metric_log=()):
    """Train (or resume, or leave as they are) the compatible ``runs`` together.

    Parameters
    ----------
    runs : list of dict
        Run configs as :func:`experiments.config.runs.expand_grid` makes them (every key
        of the key table their rule takes; a missing legacy key means its default), all
        equal but in their rule's values and seed
        (:func:`experiments.training.grouping.check_group`).
    stores : list of experiments.results.store.RunStore
        One per run.
    engine : str
        A registered engine (:mod:`experiments.engines`): 'jax', or 'theano' (one run
        at a time).
    data_dir : path, optional
        Where the datasets are (:func:`experiments.data.load_dataset`); ignored if
        ``dataset`` is given.
    dataset : experiments.data.Dataset, optional
        Already loaded (a grid loads each dataset once); prepared here as the runs'
        setup says.
    quiet : bool
        No progress (a bar on a terminal, plain lines in a log file otherwise).
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
        epoch for a run alone, else see
        :data:`~experiments.training.members.CHECKPOINT_RATIO`.
    metric_log : sequence of str
        Also log each run's curves rows to these
        (:mod:`experiments.training.metric_logs`).

    Returns
    -------
    list of dict
        Each run's final status as written to status.json: ``state`` ('finished' |
        'diverged'), ``epochs_done``, ``epochs``, ``started``, ``finished``,
        ``engine``, ``engine_info``, ``host``, ``trainings``, ``wall_seconds``,
        ``epoch_seconds`` (:meth:`~experiments.training.members.RunMember.end`), and
        :func:`experiments.training.provenance.record`'s ``code``, ``command``, ``cwd``,
        ``versions``; runs already done are left untouched. A run whose claim another
        process took over gives ``{'state': 'lost', 'error': ...}`` and is not
        written to any more.

    If training raises, every run still in training is marked 'failed' with the
    error (not for a fault of the file system, see :mod:`experiments.results.faults`),
    checkpoints stay (a later call resumes) and the exception propagates.
    """
    if len(runs) != len(stores):
        raise ValueError(f"{len(runs)} runs but {len(stores)} stores")
    grouping.check_group(runs)
    members = [RunMember(run, store, metric_log) for run, store in zip(runs, stores)]
    live = [m for m in members if not m.done]
    if not live:
        return [m.status for m in members]
    inputs = TrainingInputs.of(live[0].config, dataset, data_dir, quiet)
    group = _Group(live, engine, inputs, engine_options or {})
    first = group.resume()
    group.start()
    run0 = live[0].config
    desc = (f"{inputs.spec.name} {run0.updater} seed {run0.seed}" if group.alone
            else f"{inputs.spec.name} group of {len(live)}")
    progress = Progress(desc, inputs.epochs, first, group.alone, quiet, position)
    checkpoints = Checkpoints(0 if checkpoint_every is None and group.alone
                              else checkpoint_every)
    ended = False
    try:
        _train_epochs(group, first, checkpoints, progress, on_epoch)
        ended = True
    except Exception as exc:
        for m in live if not is_storage_fault(exc) else ():  # a full disk: no run's failure
            if m.alive:
                m.fail(exc)
        raise
    finally:
        progress.close()
        for m in live if metric_log else ():
            m.log.close(ended)
    for m in live:
        if m.alive:
            m.end("finished")
    return [m.outcome() for m in members]


def train_run(run, store, engine="jax", data_dir=None, dataset=None, quiet=False,
              position=None, engine_options=None, on_epoch=None, metric_log=()):
    """Train (or resume, or leave as it is) one run: :func:`train_runs` with one run;
    ``on_epoch(row)``. Returns its final status; another process taking the run's claim
    over raises :class:`~experiments.results.claims.ClaimLost`."""
    status, = train_runs([run], [store], engine, data_dir, dataset, quiet, position,
                         engine_options, on_epoch and (lambda _, row: on_epoch(row)),
                         metric_log=metric_log)
    if status.get("state") == "lost":
        raise ClaimLost(status["error"])
    return status
