"""Train a group of compatible runs at once, with the per-run files of a single run.

:func:`train_group` is :func:`experiments.training.train_run` for K runs that differ
only in optimizer hyperparameters and seed (:mod:`experiments.grouping`): one
compiled program (:class:`~experiments.engines.jax_group.GroupEngine`) trains all of
them, and each run gets exactly the files it would get alone: its curves rows, its
status.json fields, and its own checkpoint with the array names of
:mod:`experiments.engines.base`. So a group resumes from its runs' checkpoints, and
any run can be resumed alone by ``train_run`` (or a group by a different grouping).

Resuming runs at different epochs: the laggards catch up first. The group trains from
the earliest epoch any of its runs needs; a run further on sits the first epochs out
(inactive: its arrays untouched, its files not written) and joins in at its own
epoch. One compiled program serves all epochs; the runs ahead cost compute only
while the others catch up, which after an interruption is at most an epoch or so
(the runs of a group checkpoint together).

Divergence: a run whose epoch loss or validation loss is not finite gets that row
written and is recorded as ``diverged``, as alone; from then on it is inactive. The
runs of a group never mix (each run's loss, gradient and update depend on its own
arrays only), so the others go on exactly as they would alone.

Checkpoints: after an epoch, when the time since the last checkpoint is at least ten
times what that checkpoint took (so saving costs at most ~10% of the time; for
small models that is every epoch), or as ``checkpoint_every`` says. Curves rows and
status are written every epoch; a resume redoes the epochs after the checkpoint,
with the same results.

Curves ``seconds``: a run's share of the group's epoch, i.e. the group's wall time
for the epoch (training and validation) divided by the runs it trained, so the
seconds of all runs add up to the wall time of the grid.
"""
import math
import time

import numpy as np

from . import grouping
from .engines.base import Hyperparameters, initial_arrays
from .storage import is_storage_fault
from .training import config_hash, is_finite, learning_rate, restarted, run_setup, utc_now

#: ``checkpoint_every=None``: checkpoint once the time since the last one is this many
#: times what the last one took.
CHECKPOINT_RATIO = 10.0

__all__ = ["train_group", "check_group", "CHECKPOINT_RATIO"]


def check_group(runs):
    """Raise ``ValueError`` unless ``runs`` can train as one group: one rule, and all
    equal except in :data:`experiments.grouping.PER_RUN_KEYS`."""
    if not runs:
        raise ValueError("a group needs at least one run")
    first = dict(grouping.compatibility_key(runs[0]))
    for run in runs[1:]:
        other = dict(grouping.compatibility_key(run))
        if other != first:
            key = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))[0]
            raise ValueError(f"runs {runs[0].get('run_id', '?')} and {run.get('run_id', '?')} "
                             f"differ in {key!r} ({first.get(key, 'unset')} vs "
                             f"{other.get(key, 'unset')}); only the rule's hyperparameters "
                             f"({', '.join(grouping.PER_RUN_KEYS[1:])}) may differ in a group")


class _Member:
    """One run of the group and where it stands."""

    def __init__(self, run, store):
        self.run, self.store = run, store
        self.rows, self.start, self.status = [], 0, {}
        self.alive = True   # still training in this group
        self.lost = None    # why its claim was lost (another process owns it now)

    def write(self, method, *args):
        """A write to the run's store; a lost claim ends the run's part in the group."""
        from .claims import ClaimLost
        if self.lost is not None:
            return
        try:
            getattr(self.store, method)(*args)
        except ClaimLost as error:
            self.lost, self.alive = str(error), False


def train_group(runs, stores, data_dir=None, dataset=None, quiet=False, position=None,
                engine_options=None, on_epoch=None, checkpoint_every=None):
    """Train (or resume, or leave as they are) the compatible ``runs`` together.

    Parameters
    ----------
    runs : list of dict
        Resolved run configs, as :func:`experiments.training.train_run` takes them,
        compatible (:func:`check_group`).
    stores : list of experiments.results.RunStore
        One per run.
    data_dir, dataset, quiet, position
        As for ``train_run``.
    engine_options : dict, optional
        Keyword arguments for :class:`~experiments.engines.jax_group.GroupEngine`
        (``device``, ``layout``, ``eval_runs``); the setup comes from the runs.
    on_epoch : callable, optional
        ``on_epoch(run, row)`` for each run's curves row, once it is written; a
        :class:`~experiments.claims.ClaimLost` it raises ends that run's part only.
    checkpoint_every : float, optional
        Seconds to wait at least between checkpoints (0: every epoch); default: see
        :data:`CHECKPOINT_RATIO`.

    Returns
    -------
    list of dict
        Each run's final status, as ``train_run`` returns it (``state`` 'finished' or
        'diverged'); runs already done are left untouched. A run whose claim another
        process took over gives ``{'state': 'lost', 'error': ...}`` and is not
        written to any more.

    If training raises, every run still in training is marked 'failed' with the
    error (not for a fault of the file system), checkpoints stay (a later call
    resumes) and the exception propagates.
    """
    if len(runs) != len(stores):
        raise ValueError(f"{len(runs)} runs but {len(stores)} stores")
    check_group(runs)
    members = [_Member(run, store) for run, store in zip(runs, stores)]
    results = [None] * len(members)
    live = []
    for i, m in enumerate(members):
        m.status = m.store.read_status() or {}
        m.checkpoint = m.store.load_checkpoint()
        if m.checkpoint is None and m.status.get("state") in ("finished", "diverged"):
            results[i] = m.status
        else:
            live.append(m)
    if not live:
        return results

    run0 = runs[0]
    spec, n_epochs, schedule, dataset, flip, keys = run_setup(run0, dataset, data_dir, quiet)
    batch_size = int(run0.get("batch_size", 128))
    val_batch_size = int(run0.get("val_batch_size", 1024))

    from .engines.jax_group import GroupEngine
    hparams = [Hyperparameters.from_run(m.run) for m in live]
    seeds = [int(m.run["seed"]) for m in live]
    engine = GroupEngine(spec, dataset, hparams, seeds, setup=keys, **(engine_options or {}))
    arrays = []
    for m, h in zip(live, hparams):
        m.digest = config_hash(m.run)
        m.lr0 = float(m.run["lr"] if "lr" in m.run else m.run["learning_rate"])
        if m.checkpoint is None:
            arrays.append(initial_arrays(spec, h, m.run["seed"], keys))
            continue
        ckpt_arrays, meta = m.checkpoint
        if meta.get("config_hash") != m.digest:
            raise ValueError(f"{m.store.checkpoint_path}: checkpoint was written for a "
                             f"different run config; remove it to start the run again")
        arrays.append(ckpt_arrays)
        m.start = int(meta["epochs_done"])
        m.rows = m.store.read_curves()[:m.start]  # rows after the checkpoint are redone
    engine.load(arrays)
    del arrays
    for m in live:
        m.checkpoint = None

    info = dict(engine.info(), group=[m.run.get("run_id") for m in live])
    for m in live:
        m.status = restarted(m.status, epochs_done=m.start, epochs=n_epochs, engine="jax",
                             engine_info=info, config_hash=m.digest)
        m.write("write_status", m.status)

    first = min(m.start for m in live)
    bar = None
    if not quiet:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_epochs, initial=first, position=position, leave=position is None,
                   desc=f"{spec.name} group of {len(live)}", unit="epoch", dynamic_ncols=True)
    from .claims import ClaimLost
    from .data import epoch_batches
    saved_at, save_cost = None, 0.0
    try:
        for epoch in range(first, n_epochs):
            active = [m.alive and m.start <= epoch for m in live]
            if not any(active):
                break
            began = time.perf_counter()
            lrs = [learning_rate(m.lr0, epoch, n_epochs, schedule) if a else 0.0
                   for m, a in zip(live, active)]
            plans = {s: epoch_batches(s, epoch, len(dataset.y_train), batch_size, flip)
                     for s in engine.seed_order}
            losses, accs = engine.train_epoch(epoch, lrs, active, plans)
            val_losses, val_accs = engine.evaluate(val_batch_size)
            share = (time.perf_counter() - began) / sum(active)
            trained = [(m, k) for k, m in enumerate(live) if active[k]]
            for m, k in trained:
                row = {"epoch": epoch + 1, "lr": lrs[k], "loss": float(losses[k]),
                       "acc": float(accs[k]), "val_loss": float(val_losses[k]),
                       "val_acc": float(val_accs[k]), "seconds": share}
                m.rows.append(row)
                m.write("write_curves", m.rows)
                m.status.update(epochs_done=epoch + 1, updated=utc_now())
                if not is_finite(row["loss"], row["val_loss"]):
                    m.alive = False
                    m.status.update(state="diverged", finished=utc_now(),
                                    seconds=sum(r["seconds"] for r in m.rows))
                    m.write("write_status", m.status)
                    m.write("remove_checkpoint")
            now = time.perf_counter()
            due = (checkpoint_every is not None and (saved_at is None or now - saved_at
                                                     >= checkpoint_every)) or \
                  (checkpoint_every is None and (saved_at is None or now - saved_at
                                                 >= CHECKPOINT_RATIO * save_cost))
            saved = due and epoch + 1 < n_epochs and any(m.alive for m, _ in trained)
            if saved:
                dumped = engine.dump()
                for m, k in trained:
                    if m.alive:
                        m.write("save_checkpoint", dumped[k], {"epochs_done": epoch + 1,
                                                                "config_hash": m.digest,
                                                                "engine": "jax"})
                del dumped
                saved_at = time.perf_counter()
                save_cost = saved_at - now
            for m, _ in trained:
                # the status follows the checkpoints (the curves say how far a run got):
                # 120 small synced writes an epoch less, a tenth of a logreg epoch
                if m.alive and saved:
                    m.write("write_status", m.status)
                if on_epoch is not None and m.lost is None:
                    try:
                        on_epoch(m.run, m.rows[-1])
                    except ClaimLost as error:  # that run is another process's now
                        m.lost, m.alive = str(error), False
            if bar is not None:
                bar.update(1)
                done = [(float(losses[k]), float(val_accs[k])) for m, k in trained
                        if math.isfinite(losses[k])]
                if done:
                    bar.set_postfix(loss=f"{np.mean([d[0] for d in done]):.4f}",
                                    best_val_acc=f"{max(d[1] for d in done):.4f}",
                                    runs=sum(m.alive for m in live))
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

    for m in live:
        if m.alive:
            m.status.update(state="finished", finished=utc_now(), updated=utc_now(),
                            seconds=sum(r["seconds"] for r in m.rows))
            m.write("write_status", m.status)
            m.write("remove_checkpoint")
        results[members.index(m)] = (m.status if m.lost is None
                                     else {"state": "lost", "error": m.lost})
    return results
