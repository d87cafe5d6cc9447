"""The results store: one folder of plain files per run, every write atomic.

Layout (``results/<grid name>/<run id>/``)::

    config.yaml          the resolved run config (YAML)
    curves.csv           one row per finished epoch, columns CURVE_FIELDS
    status.json          state (running|finished|diverged|failed), timings (wall_seconds,
                         epoch_seconds), engine, versions
    checkpoint.npz       while a run is in progress: arrays + meta (JSON) to resume from
    checkpoint.prev.npz  the checkpoint before it (the last good state if the newest is bad)
    claim.json           while a process trains the run: its owner (:mod:`experiments.grid.claims`)

Every file is written atomically, in the formats of :mod:`experiments.results.files`,
so a crash or a full disk leaves either the old or the new file, never a half-written one.

Files damaged anyway (a bad disk, a copy cut short) are detected rather than trusted:
a checkpoint carries a SHA-256 of its contents and a copy of curves.csv as it stood
when it was saved; curves.csv and status.json must parse. :meth:`RunStore.load_checkpoint`
falls back to the previous checkpoint with a :class:`CorruptFileWarning`, and
:meth:`RunStore.recover` (called by the grid before it resumes a run) sets a damaged
file aside as ``<name>.corrupt`` and rebuilds the run's last good state.
"""
import json
import math
import os
import shutil

import yaml

from experiments.results.files import (CURVE_FIELDS, CorruptFileError, CorruptFileWarning,
                                       atomic_write_bytes, finite_or_none, format_curves,
                                       pack_checkpoint, parse_curves, read_checkpoint,
                                       removed_on_error, warn_corrupt)

STATES = ("running", "finished", "diverged", "failed")
DONE_STATES = ("finished", "diverged")  # a run in these states is not trained again
#: status.json keys of before -> their names now (:meth:`RunStore.read_status`).
RENAMED_STATUS_KEYS = {"seconds": "epoch_seconds"}
GRID_FILE = "grid.yaml"  # next to a grid's run folders: its fixed settings and axes
#: grid.yaml's list of the run ids the grid is to have (the runner's plan; a report
#: counts the runs not done against it)
PLAN_KEY = "planned_runs"

__all__ = ["CURVE_FIELDS", "STATES", "DONE_STATES", "GRID_FILE", "PLAN_KEY",
           "CorruptFileError", "CorruptFileWarning", "RunStore"]


class RunStore:
    """The files of one run, in ``run_dir``.

    Parameters
    ----------
    run_dir : str or path-like
        The run's folder; created on the first write.
    claim : experiments.results.claims.Claim, optional
        Held by the writer: every write checks first that it is still held, and
        raises :class:`~experiments.results.claims.ClaimLost` if another process took it over.
    """

    def __init__(self, run_dir, claim=None):
        self.run_dir = os.fspath(run_dir)
        self.claim = claim
        self._trusted = None  # identity of a checkpoint this store read or wrote whole

    def __repr__(self):
        return f"RunStore({self.run_dir!r})"

    config_path = property(lambda self: os.path.join(self.run_dir, "config.yaml"))
    curves_path = property(lambda self: os.path.join(self.run_dir, "curves.csv"))
    status_path = property(lambda self: os.path.join(self.run_dir, "status.json"))
    checkpoint_path = property(lambda self: os.path.join(self.run_dir, "checkpoint.npz"))
    previous_checkpoint_path = property(
        lambda self: os.path.join(self.run_dir, "checkpoint.prev.npz"))
    claim_path = property(lambda self: os.path.join(self.run_dir, "claim.json"))

    def _guard(self):
        if self.claim is not None:
            self.claim.verify()

    def _write(self, path, data, before_replace=None):
        self._guard()
        atomic_write_bytes(path, data, before_replace)

    def _set_aside(self, path, problem):
        """Rename a damaged file to ``<path>.corrupt`` (kept to look at) and warn."""
        self._guard()
        os.replace(path, path + ".corrupt")
        warn_corrupt(f"{problem}; set aside as {os.path.basename(path)}.corrupt")

    # config.yaml
    def write_config(self, config):
        self._write(self.config_path,
                    yaml.safe_dump(dict(config), sort_keys=False).encode("utf-8"))

    def read_config(self):
        """The run config, or ``None`` if there is none yet."""
        try:
            with open(self.config_path, encoding="utf-8") as f:
                return yaml.safe_load(f)
        except FileNotFoundError:
            return None

    # curves.csv
    def write_curves(self, rows):
        """Rewrite curves.csv with ``rows`` (dicts with the keys CURVE_FIELDS)."""
        self._write(self.curves_path, format_curves(rows).encode("utf-8"))

    def _curves_text(self):
        try:
            with open(self.curves_path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None

    def read_curves(self, partial=False):
        """The rows of curves.csv (``epoch`` int, the rest float; empty cells NaN).

        A damaged file raises :class:`CorruptFileError`, or with ``partial`` gives the
        rows before the damage.
        """
        text = self._curves_text()
        if text is None:
            return []
        rows, problem = parse_curves(text)
        if problem is not None and not partial:
            raise CorruptFileError(f"{self.curves_path}: {problem}")
        return rows

    # status.json
    def read_status(self):
        """The status dict, or ``None`` if the run has not started; a damaged file
        raises :class:`CorruptFileError`."""
        try:
            with open(self.status_path, encoding="utf-8") as f:
                status = json.load(f)
        except FileNotFoundError:
            return None
        except ValueError as e:  # bad JSON or bad UTF-8
            raise CorruptFileError(f"{self.status_path}: not JSON ({e})") from None
        if not isinstance(status, dict):
            raise CorruptFileError(f"{self.status_path}: not a JSON object")
        for old, new in RENAMED_STATUS_KEYS.items():  # a file of before reads as of now
            if old in status and new not in status:
                status[new] = status.pop(old)
        return status

    def write_status(self, status):
        """Write status.json (strict JSON: non-finite numbers are stored as null)."""
        text = json.dumps(finite_or_none(dict(status)), indent=2, allow_nan=False)
        self._write(self.status_path, (text + "\n").encode("utf-8"))

    def update_status(self, **fields):
        """Merge ``fields`` into status.json; returns the new status."""
        status = self.read_status() or {}
        status.update(fields)
        self.write_status(status)
        return status

    # checkpoint.npz
    def save_checkpoint(self, arrays, meta):
        """Save ``arrays`` (name -> array) and ``meta`` (JSON-able dict) in one .npz.

        The file also holds curves.csv as it is now and a SHA-256 of everything; the
        checkpoint it replaces is kept as checkpoint.prev.npz.
        """
        self._write(self.checkpoint_path, pack_checkpoint(arrays, meta, self._curves_text()),
                    before_replace=self._keep_previous)
        self._trusted = self._identity(self.checkpoint_path)

    @staticmethod
    def _identity(path):
        st = os.stat(path)
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _keep_previous(self):
        """checkpoint.npz -> checkpoint.prev.npz, if it is good; never without a
        checkpoint.npz on disk (a hard link, or a copy where there are none)."""
        path, prev = self.checkpoint_path, self.previous_checkpoint_path
        try:
            if self._identity(path) != self._trusted:
                read_checkpoint(path)  # not read or written whole by this store yet
        except FileNotFoundError:
            return
        except CorruptFileError as e:
            self._set_aside(path, str(e))
            return
        self._guard()
        try:
            if os.path.samefile(path, prev):  # kept already (rename would be a no-op)
                return
        except FileNotFoundError:
            pass
        tmp = f"{prev}.{os.getpid()}.tmp"
        with removed_on_error(tmp):
            try:
                os.link(path, tmp)
            except FileExistsError:
                os.unlink(tmp)
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
            os.replace(tmp, prev)

    def load_checkpoint(self):
        """``(arrays, meta)`` from checkpoint.npz, or ``None`` if there is none.

        A damaged checkpoint.npz (it does not parse or fails its checksum) gives a
        :class:`CorruptFileWarning` and the previous checkpoint instead, if that one
        is good; this reads only (see :meth:`recover` for the repair).
        """
        for path in (self.checkpoint_path, self.previous_checkpoint_path):
            try:
                arrays, meta, _ = read_checkpoint(path)
            except FileNotFoundError:
                continue
            except CorruptFileError as e:
                warn_corrupt(f"{e}; trying the checkpoint before it")
                continue
            if path == self.checkpoint_path:
                self._trusted = self._identity(path)
            return arrays, meta
        return None

    def remove_checkpoint(self):
        for path in (self.previous_checkpoint_path, self.checkpoint_path):
            try:
                self._guard()
                os.remove(path)
            except FileNotFoundError:
                pass

    def recover(self, epochs=None):
        """Bring the run's files back to their last good state after a crash.

        Called by the owner of the run (see :mod:`experiments.grid.claims`) before it trains.
        Temporary files of writers that died are removed. A damaged checkpoint is set
        aside and the previous one takes its place; a damaged curves.csv (or one that
        disagrees with the checkpoint) is rebuilt from the copy in the checkpoint, or
        cut to the checkpoint's epochs, or the run starts again; a damaged status.json
        is set aside, and rebuilt if there is no checkpoint and curves.csv shows the run
        ended (all ``epochs`` rows, or a non-finite loss: diverged). Each repair gives a
        :class:`CorruptFileWarning`.

        Returns
        -------
        int
            The epochs the run resumes after (0: it starts again).
        """
        self._guard()
        for name in os.listdir(self.run_dir) if os.path.isdir(self.run_dir) else ():
            if name.endswith(".tmp"):  # of a writer that died: the owner may clean up
                os.remove(os.path.join(self.run_dir, name))
        checkpoint = None
        for path in (self.checkpoint_path, self.previous_checkpoint_path):
            try:
                checkpoint = read_checkpoint(path)
            except FileNotFoundError:
                continue
            except CorruptFileError as e:
                self._set_aside(path, str(e))
                continue
            if path == self.previous_checkpoint_path:  # the last good state: make it current
                self._guard()
                shutil.copyfile(path, path + ".tmp")
                os.replace(path + ".tmp", self.checkpoint_path)
                warn_corrupt(f"{self.checkpoint_path}: resuming from the previous checkpoint "
                      f"(epoch {checkpoint[1].get('epochs_done', '?')})")
            break

        text = self._curves_text()
        rows, problem = parse_curves(text) if text is not None else ([], None)
        bad = problem and f"{self.curves_path}: {problem}"
        done = 0
        if checkpoint is not None:
            _, meta, copy = checkpoint
            done = int(meta.get("epochs_done", 0))
            if copy is not None and (text is None or bad or not text.startswith(copy)):
                if text is not None:
                    self._set_aside(self.curves_path, bad or f"{self.curves_path}: not the "
                                                             f"curves of the checkpoint")
                self._write(self.curves_path, copy.encode("utf-8"))
                warn_corrupt(f"{self.curves_path}: rebuilt from the checkpoint")
                rows = parse_curves(copy)[0]
            elif copy is None and (bad or len(rows) < done):  # no copy: keep what parses
                if bad:
                    self._set_aside(self.curves_path, bad)
                if len(rows) >= done:
                    self.write_curves(rows[:done])
                else:
                    warn_corrupt(f"{self.run_dir}: the curves of the checkpoint are lost; "
                          f"the run starts again")
                    self.remove_checkpoint()
                    rows, done = [], 0
        elif bad:
            self._set_aside(self.curves_path, bad)
            rows = []

        try:
            self.read_status()
        except CorruptFileError as e:
            self._set_aside(self.status_path, str(e))
            diverged = bool(rows) and not all(map(math.isfinite, (rows[-1]["loss"],
                                                                  rows[-1]["val_loss"])))
            if checkpoint is None and (diverged or (epochs and len(rows) == epochs)):
                self.write_status({"state": "diverged" if diverged else "finished",
                                   "epochs_done": len(rows), "epochs": epochs,
                                   "recovered": "from curves.csv"})
        return done
