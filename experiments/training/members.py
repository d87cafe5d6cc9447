"""A run's part in a group: its files, its status and its checkpoints.

Each run of a group (:func:`experiments.training.train_runs`) is a :class:`RunMember`:
its config, store, curves rows so far, status and where it starts; it writes exactly
the files it would write alone. :class:`Checkpoints` says when the group checkpoints.
"""
import datetime
import hashlib
import json
import math
import socket
import time

from experiments.config import run_keys
from experiments.config.run_keys import RunConfig
from experiments.results.claims import ClaimLost
from experiments.training import provenance
from experiments.training.metric_logs import RunLog

__all__ = ["CHECKPOINT_RATIO", "STALE_STATUS_KEYS", "RunMember", "Checkpoints", "config_hash",
           "restarted", "utc_now", "is_finite"]

#: ``checkpoint_every=None`` in a group: checkpoint once the time since the last one is
#: this many times what the last one took.
CHECKPOINT_RATIO = 10.0
#: What an earlier attempt left in status.json that a new one must not carry on.
STALE_STATUS_KEYS = ("finished", "wall_seconds", "epoch_seconds", "error", "traceback",
                     "failed_at")


def config_hash(run):
    """A short hash of the run config; a checkpoint only resumes the config it was made
    by. Keys at the defaults they had before they existed do not count
    (:func:`experiments.config.run_keys.canonical`), so older checkpoints keep resuming."""
    text = json.dumps(run_keys.canonical(run), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def is_finite(*values):
    return all(math.isfinite(v) for v in values)


def restarted(status, library=None, **fields):
    """The status of a run that starts (or resumes) training: ``status`` running again,
    with ``fields``, this host and its provenance (code, command line, library versions,
    ``library`` the engine's own: :func:`experiments.training.provenance.record`), one
    more training, and what an earlier attempt left (:data:`STALE_STATUS_KEYS`) gone.
    Alone or in a group."""
    out = {k: v for k, v in status.items() if k not in STALE_STATUS_KEYS}
    out.update(provenance.record(library))
    out.update(state="running", host=socket.gethostname(),
               trainings=int(status.get("trainings", 0)) + 1, updated=utc_now(), **fields)
    out.setdefault("started", utc_now())
    return out


class RunMember:
    """One run of the group and where it stands."""

    def __init__(self, run, store, metric_log=()):
        self.run, self.store = run, store
        self.config = RunConfig.from_run(run)
        self.log = RunLog(metric_log, run, store.run_dir) if metric_log else None
        self.rows, self.start, self.digest = [], 0, None
        self.status = store.read_status() or {}
        self.checkpoint = store.load_checkpoint()
        # ended before: left as it is
        self.done = self.checkpoint is None and self.status.get("state") in ("finished",
                                                                              "diverged")
        self.alive = True   # still training in this group
        self.lost = None    # why its claim was lost (another process owns it now)
        self.began = time.perf_counter()  # this training's start: its wall time

    def write(self, method, *args):
        """A write to the run's store; a lost claim ends the run's part in the group."""
        if self.lost is not None:
            return
        try:
            getattr(self.store, method)(*args)
        except ClaimLost as error:
            self.lost, self.alive = str(error), False

    def resume_point(self):
        """Its config hash and the epoch it starts at (from its checkpoint, whose
        arrays :attr:`checkpoint` keeps for the engine); a checkpoint of another config
        is a ValueError."""
        self.digest = config_hash(self.run)
        if self.checkpoint is not None:
            meta = self.checkpoint[1]
            if meta.get("config_hash") != self.digest:
                raise ValueError(f"{self.store.checkpoint_path}: checkpoint was written for "
                                 f"a different run config; remove it to start the run again")
            self.start = int(meta["epochs_done"])
            self.rows = self.store.read_curves()[:self.start]  # rows after it are redone
        return self.start

    def record(self, row):
        """Append an epoch's row; a row that is not finite ends the run, diverged."""
        self.rows.append(row)
        self.write("write_curves", self.rows)
        if self.log is not None and self.lost is None:
            self.log.write(row)
        self.status.update(epochs_done=row["epoch"], updated=utc_now())
        if not is_finite(row["loss"], row["val_loss"]):
            self.alive = False
            self.end("diverged")

    def end(self, state):
        """Record the run as ``state`` ('finished' or 'diverged'), its checkpoint gone,
        with its times: ``wall_seconds``, this training's wall time from its start (data,
        compiling, every epoch, checkpoints: the time the grid's line shows; a group's
        runs share it), and ``epoch_seconds``, the run's share of its epochs' time (the
        sum of curves.csv's ``seconds``: a grid's runs add up to its epochs' time)."""
        self.status.update(state=state, finished=utc_now(), updated=utc_now(),
                           wall_seconds=round(time.perf_counter() - self.began, 3),
                           epoch_seconds=sum(r["seconds"] for r in self.rows))
        self.write("write_status", self.status)
        self.write("remove_checkpoint")

    def fail(self, error):
        """Record the run as failed with ``error`` (its checkpoint stays: a later
        training resumes)."""
        self.status.update(state="failed", error=f"{type(error).__name__}: {error}",
                           updated=utc_now())
        self.write("write_status", self.status)

    def outcome(self):
        """Its final status, or ``{'state': 'lost', 'error': ...}`` if another process
        took it over."""
        return self.status if self.lost is None else {"state": "lost", "error": self.lost}


class Checkpoints:
    """When to checkpoint: ``every`` seconds at least (0: every epoch), or (None) once
    the time since the last checkpoint is :data:`CHECKPOINT_RATIO` times what it took."""

    def __init__(self, every):
        self.every, self.saved_at, self.cost = every, None, 0.0

    def save(self, eng, trained, epochs_done, engine):
        """Checkpoint the live runs of ``trained`` (``(member, index in the engine)``)
        if due; whether it did."""
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
