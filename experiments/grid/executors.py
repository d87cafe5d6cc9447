"""Where the runs of a grid are trained: here, one after another, or as Ray tasks.

A grid (:func:`experiments.grid.runner.run_grid`) turns each run that is not done into a
:class:`Job` and hands the jobs to an executor; ``executor.run(jobs, on_event)`` yields
one outcome dict per job (in the order they end) and calls ``on_event(run_id, kind,
payload)`` as it goes: ``"epoch"`` with each curves row, ``"note"`` with a warning.

Every job, alone or in a group, wherever it runs, goes through :func:`run_jobs`: claim
the run (see :mod:`experiments.grid.claims`; a run a live process holds is left to it, and
a ``patient`` job waits while the claim it found stops beating), repair its files
(:meth:`~experiments.results.store.RunStore.recover`), count the attempt, train, record.
Attempts count the starts that did not get past the epoch the previous start began
at, so a run that keeps crashing, even by killing its process, is given up after
``max_attempts`` starts while a run that is killed now and then but makes progress
never is.

- :class:`LocalExecutor` trains in this process, one run after another.
- :class:`~experiments.grid.ray_executor.RayExecutor` makes each run a Ray task
  (``num_cpus``/``num_gpus`` each) on a local or remote cluster; the results folder must be
  visible to every node at the same path (a shared file system). Ray is an optional
  dependency (``.[ray]``).

A fault of the results folder's file system (:mod:`experiments.results.storage`) is not the
run's: it is raised (from a Ray worker: sent back as a ``"storage_fault"`` outcome)
and stops the grid, with the run's files whole.
"""
import dataclasses
import functools
import os
import time
import traceback
import warnings

from experiments.data import DataError
from experiments.training import provenance, train_runs
from experiments.training.grouping import device_room
from experiments.results import claims
from experiments.results import faults
from experiments.config import ConfigError
from experiments.results.store import DONE_STATES, CorruptFileWarning, RunStore

MAX_ATTEMPTS = 3

__all__ = ["Job", "run_jobs", "LocalExecutor", "MAX_ATTEMPTS"]


@dataclasses.dataclass
class Job:
    """One run to train, with everything a worker needs (picklable)."""
    run: dict
    run_dir: str
    engine: str = "jax"
    data_dir: str = None
    data: object = None  # experiments.data.DataRequest: what its worker loads
    max_attempts: int = MAX_ATTEMPTS
    stale_after: float = claims.STALE_AFTER
    heartbeat: float = claims.HEARTBEAT
    train_fn: object = None  # train_run's form; default experiments.training.train_runs
    load_fn: object = None  # default experiments.data.load_dataset
    patient: bool = False  # wait out a claim whose owner stops beating (claims.outlive)
    # the driver's command line, for status.json wherever the job trains (a Ray worker)
    command: dict = dataclasses.field(default_factory=provenance.command_line)
    metric_log: tuple = ()  # experiments.metric_logs.KINDS to log the curves to

    @property
    def run_id(self):
        return self.run["run_id"]


def _outcome(job, result, **fields):
    return {"run_id": job.run_id, "result": result, "run_dir": job.run_dir, **fields}


def _first_line(error):
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _claim(job, claim_path, event):
    """Claim the run (:func:`claims.acquire`), saying so when a stale claim is taken
    over; a patient job waits while the claim it found stops beating, and takes it."""
    def note(info, why):
        event("note", f"took the run over from {info.get('host')}:{info.get('pid')}: {why}")
    poll = min(1.0, job.heartbeat / 2) if job.heartbeat else 1.0
    while True:
        claim = claims.acquire(claim_path, job.stale_after, job.heartbeat, on_takeover=note)
        if claim is not None or not job.patient:
            return claim
        held = claims.read_claim(claim_path) or {}
        if job.heartbeat and held.get("age", 0) > 2 * job.heartbeat:  # beats were missed
            event("note", f"{held.get('host')}:{held.get('pid')} has not refreshed its claim "
                          f"for {held['age']:.0f} s: waiting until it does, or until "
                          f"{job.stale_after:g} s without")
        if not claims.outlive(claim_path, job.stale_after, poll):
            return None


def _prepare(job, store, event):
    """Repair a claimed run's files and count the attempt; returns its outcome if it
    is not to be trained ('done', or 'failed' when given up), else None."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorruptFileWarning)
        resumed_at = store.recover(job.run["epochs"])
    for w in caught:
        if issubclass(w.category, CorruptFileWarning):
            event("note", str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    status = store.read_status() or {}
    if status.get("state") in DONE_STATES:
        return _outcome(job, "done", state=status["state"])
    # Count the starts that got no further than the previous one.
    same = status.get("attempt_epoch") == resumed_at
    attempts = int(status.get("attempts", 0)) + 1 if same else 1
    if attempts > job.max_attempts:
        last = status.get("error") if status.get("state") == "failed" else None
        message = (f"gave up after {attempts - 1} attempts that did not finish epoch "
                   f"{resumed_at + 1} (last: {last or 'the process died'})")
        store.update_status(state="failed", gave_up=True, error=message)
        return _outcome(job, "failed", message=message, gave_up=True)
    status.pop("gave_up", None)
    store.write_config(job.run)
    store.write_status(dict(status, attempts=attempts, attempt_epoch=resumed_at))
    return None


def run_jobs(jobs, dataset, on_event=None, quiet=True, position=None):
    """Claim, repair, train and record runs that train together (a list of one: a run
    alone); returns one outcome dict per job.

    ``result`` is ``"trained"`` (``state`` finished or diverged, ``last`` curves row,
    ``seconds``), ``"failed"`` (``message``), ``"busy"`` (a live process holds the run:
    ``owner``), ``"done"`` (done by another process meanwhile) or ``"lost"`` (another
    process took the claim over while this one trained). Each run is claimed, repaired
    and counted on its own; the runs another process holds, done or given up get their
    outcome at once and the rest train together (:func:`experiments.training.train_runs`).
    """
    import contextlib

    def event_of(job):
        return lambda kind, payload: on_event and on_event(job.run_id, kind, payload)

    outcomes, ready = {}, []
    with contextlib.ExitStack() as held:
        for job in jobs:
            os.makedirs(job.run_dir, exist_ok=True)
            claim_path = RunStore(job.run_dir).claim_path
            claim = _claim(job, claim_path, event_of(job))
            if claim is None:
                owner = claims.read_claim(claim_path) or {}
                outcomes[job.run_id] = _outcome(
                    job, "busy", owner=f"{owner.get('host', '?')}:{owner.get('pid', '?')}")
                continue
            held.enter_context(claim)
            store = RunStore(job.run_dir, claim=claim)
            try:
                ended = _prepare(job, store, event_of(job))
            except claims.ClaimLost as error:
                ended = _outcome(job, "lost", message=str(error))
            if ended is not None:
                outcomes[job.run_id] = ended
            else:
                ready.append((job, store))
        if ready:
            with provenance.invoked_as(ready[0][0].command):
                outcomes.update(_train(ready, dataset, event_of, quiet, position))
    return [outcomes[job.run_id] for job in jobs]


def _one_at_a_time(train_fn):
    """A trainer of :func:`experiments.training.train_run`'s form (``Job.train_fn``) as
    one of :func:`~experiments.training.train_runs`'."""
    def train(runs, stores, on_epoch, **kwargs):
        statuses = []
        for run, store in zip(runs, stores):
            try:
                status = train_fn(run, store, on_epoch=lambda row: on_epoch(run, row), **kwargs)
            except claims.ClaimLost as error:
                status = {"state": "lost", "error": str(error)}
            statuses.append(status or store.read_status() or {})
        return statuses
    return train


def _train(ready, dataset, event_of, quiet, position):
    """Train the claimed ``ready`` ``(job, store)`` pairs; their outcomes by run id."""
    first = ready[0][0]
    train = train_runs if first.train_fn is None else _one_at_a_time(first.train_fn)
    logs = {"metric_log": first.metric_log} if first.train_fn is None else {}
    by_id = {job.run_id: (job, store) for job, store in ready}

    def on_epoch(run, row):
        job, store = by_id[run["run_id"]]
        store.claim.verify()  # stop at once if another process took the run over
        event_of(job)("epoch", row)

    def failed(job, store, message, trace):
        try:
            store.update_status(state="failed", error=message, traceback=trace,
                                failed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            return _outcome(job, "failed", message=message)
        except claims.ClaimLost as lost:
            return _outcome(job, "lost", message=str(lost))

    start, outcomes = time.time(), {}
    try:
        statuses = train([j.run for j, _ in ready], [s for _, s in ready],
                         engine=first.engine, data_dir=first.data_dir, dataset=dataset,
                         quiet=quiet, position=position, on_epoch=on_epoch, **logs)
    except DataError:
        raise
    except Exception as error:  # every run of the group failed with it
        if faults.is_storage_fault(error):  # a folder's (results, data, compile cache)
            raise  # not the runs' fault: stop the grid, they resume later
        message, trace = _first_line(error), traceback.format_exc()
        return {job.run_id: failed(job, store, message, trace) for job, store in ready}
    for (job, store), status in zip(ready, statuses):
        state = status.get("state")
        if state == "lost":
            outcomes[job.run_id] = _outcome(job, "lost", message=status["error"])
        elif state not in DONE_STATES:
            outcomes[job.run_id] = failed(job, store, f"RuntimeError: training returned in "
                                                      f"state {state!r}", None)
        else:
            last = (store.read_curves(partial=True) or [{}])[-1]
            # the run's own record of its wall time, so the grid's line says what
            # status.json says (a trainer of train_run's form may not keep it)
            seconds = status.get("wall_seconds", time.time() - start)
            outcomes[job.run_id] = _outcome(job, "trained", state=state, last=last,
                                            seconds=seconds)
    return outcomes


class LocalExecutor:
    """Train in this process, one run after another (``dataset`` loaded once)."""

    name = "local"

    def __init__(self, dataset, quiet=False):
        self.dataset, self.quiet = dataset, quiet

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def device_room(self):
        """``(platform, free bytes)`` of the device runs train on here."""
        return device_room()

    def run(self, jobs, on_event=None):
        """Each item of ``jobs`` is a :class:`Job` or a list of them (a group)."""
        for item in jobs:
            yield from run_jobs(item if isinstance(item, list) else [item], self.dataset,
                                on_event, quiet=self.quiet, position=1)
