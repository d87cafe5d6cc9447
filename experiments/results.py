"""The results store: one folder of plain files per run, every write atomic.

Layout (``results/<grid name>/<run id>/``)::

    config.yaml          the resolved run config (YAML)
    curves.csv           one row per finished epoch, columns CURVE_FIELDS
    status.json          state (running|finished|diverged|failed), timings, engine, versions
    checkpoint.npz       while a run is in progress: arrays + meta (JSON) to resume from
    checkpoint.prev.npz  the checkpoint before it (the last good state if the newest is bad)
    claim.json           while a process trains the run: its owner (:mod:`experiments.claims`)

Every file is written whole to a temporary file in the same folder, flushed, fsynced
and renamed over the old one (``os.replace`` is atomic on POSIX and Windows), so a
crash or a full disk leaves either the old or the new file, never a half-written one.

Files damaged anyway (a bad disk, a copy cut short) are detected rather than trusted:
a checkpoint carries a SHA-256 of its contents and a copy of curves.csv as it stood
when it was saved; curves.csv and status.json must parse. :meth:`RunStore.load_checkpoint`
falls back to the previous checkpoint with a :class:`CorruptFileWarning`, and
:meth:`RunStore.recover` (called by the grid before it resumes a run) sets a damaged
file aside as ``<name>.corrupt`` and rebuilds the run's last good state.
"""
import csv
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import warnings

import numpy as np
import yaml

CURVE_FIELDS = ("epoch", "lr", "loss", "acc", "val_loss", "val_acc", "seconds")
STATES = ("running", "finished", "diverged", "failed")
DONE_STATES = ("finished", "diverged")  # a run in these states is not trained again
GRID_FILE = "grid.yaml"  # next to a grid's run folders: its fixed settings and axes
_META_KEY = "__meta__"  # the checkpoint's meta, JSON-encoded as a uint8 array
_CURVES_KEY = "__curves__"  # curves.csv as it was when the checkpoint was saved
_SUM_KEY = "__sha256__"  # SHA-256 of every other member, hex as uint8

__all__ = ["CURVE_FIELDS", "STATES", "DONE_STATES", "GRID_FILE", "atomic_write_bytes",
           "atomic_write_text", "CorruptFileError", "CorruptFileWarning", "RunStore"]


class CorruptFileError(ValueError):
    """A results file that does not parse; the message names the file and the problem."""


class CorruptFileWarning(UserWarning):
    """A damaged results file was set aside and the run goes back to its last good state."""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data, before_replace=None):
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    On any error the temp file is removed and an existing ``path`` is left untouched.
    ``before_replace()`` is called once the data is safely in the temp file (so after a
    full disk would have struck), just before the rename.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for reading
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not possible everywhere (e.g. Windows)
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_text(path, text):
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _finite_or_none(obj):
    """Non-finite floats become ``None`` so that status.json stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite_or_none(obj.item())
    return obj


def _format_number(value):
    if value is None:
        return ""
    value = float(value)
    return repr(value)  # shortest string that reads back exactly; 'nan', 'inf', '-inf'


def _parse_curves(text):
    """``(rows, problem)``: the rows of a curves.csv text up to the first damaged line,
    and what is wrong with that line (``None`` if the whole text is good)."""
    lines = text.split("\n")
    if lines[0] != ",".join(CURVE_FIELDS):
        return [], "line 1: not the curves header"
    if lines[-1] != "":
        return [], f"line {len(lines)}: cut short (no final newline)"
    rows = []
    for number, line in enumerate(lines[1:-1], start=2):
        cells = line.split(",")
        try:
            if len(cells) != len(CURVE_FIELDS):
                raise ValueError(f"{len(cells)} fields instead of {len(CURVE_FIELDS)}")
            row = {"epoch": int(cells[0])}
            row.update((k, float(c) if c else math.nan) for k, c in zip(CURVE_FIELDS[1:],
                                                                         cells[1:]))
            if rows and row["epoch"] != rows[-1]["epoch"] + 1:
                raise ValueError(f"epoch {row['epoch']} after {rows[-1]['epoch']}")
        except ValueError as e:
            return rows, f"line {number}: {e}"
        rows.append(row)
    return rows, None


def _digest(members):
    h = hashlib.sha256()
    for name in sorted(members):
        a = np.ascontiguousarray(members[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode("utf-8"))
        h.update(a.tobytes())
    return h.hexdigest()


def _as_bytes(text):
    return np.frombuffer(text.encode("utf-8") if isinstance(text, str) else text, np.uint8)


def _read_checkpoint(path):
    """``(arrays, meta, curves text or None)`` of the checkpoint at ``path``.

    Raises FileNotFoundError if there is none, CorruptFileError if it is damaged.
    """
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            members = {k: npz[k] for k in npz.files}
        digest = members.pop(_SUM_KEY, None)
        if digest is not None and digest.tobytes().decode("ascii") != _digest(members):
            raise CorruptFileError("checksum mismatch")
        meta = json.loads(members.pop(_META_KEY).tobytes().decode("utf-8"))
        curves = members.pop(_CURVES_KEY, None)
        curves = None if curves is None else curves.tobytes().decode("utf-8")
    except (FileNotFoundError, PermissionError):
        raise
    except CorruptFileError as e:
        raise CorruptFileError(f"{path}: {e}") from None
    except Exception as e:  # whatever a damaged zip, array or JSON raises
        raise CorruptFileError(f"{path}: unreadable ({type(e).__name__}: "
                               f"{' '.join(str(e).split())})") from None
    return members, meta, curves


def _warn(message):
    warnings.warn(message, CorruptFileWarning, stacklevel=3)


class RunStore:
    """The files of one run, in ``run_dir``.

    Parameters
    ----------
    run_dir : str or path-like
        The run's folder; created on the first write.
    claim : experiments.claims.Claim, optional
        Held by the writer: every write checks first that it is still held, and
        raises :class:`~experiments.claims.ClaimLost` if another process took it over.
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
        _warn(f"{problem}; set aside as {os.path.basename(path)}.corrupt")

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
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CURVE_FIELDS)
        for row in rows:
            unknown = set(row) - set(CURVE_FIELDS)
            if unknown:
                raise ValueError(f"unknown curve fields {sorted(unknown)}; "
                                 f"expected {', '.join(CURVE_FIELDS)}")
            writer.writerow([int(row["epoch"])] + [_format_number(row.get(k))
                                                   for k in CURVE_FIELDS[1:]])
        self._write(self.curves_path, buf.getvalue().encode("utf-8"))

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
        rows, problem = _parse_curves(text)
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
        return status

    def write_status(self, status):
        """Write status.json (strict JSON: non-finite numbers are stored as null)."""
        text = json.dumps(_finite_or_none(dict(status)), indent=2, allow_nan=False)
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
        reserved = sorted(k for k in arrays if k.startswith("__") and k.endswith("__"))
        if reserved:
            raise ValueError(f"array names {reserved} are reserved (__name__)")
        members = {k: np.asarray(v) for k, v in arrays.items()}
        members[_META_KEY] = _as_bytes(json.dumps(_finite_or_none(dict(meta))))
        curves = self._curves_text()
        if curves is not None:
            members[_CURVES_KEY] = _as_bytes(curves)
        members[_SUM_KEY] = _as_bytes(_digest(members))
        buf = io.BytesIO()
        np.savez(buf, **members)
        self._write(self.checkpoint_path, buf.getvalue(), before_replace=self._keep_previous)
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
                _read_checkpoint(path)  # not read or written whole by this store yet
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
        try:
            try:
                os.link(path, tmp)
            except FileExistsError:
                os.unlink(tmp)
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
            os.replace(tmp, prev)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def load_checkpoint(self):
        """``(arrays, meta)`` from checkpoint.npz, or ``None`` if there is none.

        A damaged checkpoint.npz (it does not parse or fails its checksum) gives a
        :class:`CorruptFileWarning` and the previous checkpoint instead, if that one
        is good; this reads only (see :meth:`recover` for the repair).
        """
        for path in (self.checkpoint_path, self.previous_checkpoint_path):
            try:
                arrays, meta, _ = _read_checkpoint(path)
            except FileNotFoundError:
                continue
            except CorruptFileError as e:
                _warn(f"{e}; trying the checkpoint before it")
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

        Called by the owner of the run (see :mod:`experiments.claims`) before it trains.
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
                checkpoint = _read_checkpoint(path)
            except FileNotFoundError:
                continue
            except CorruptFileError as e:
                self._set_aside(path, str(e))
                continue
            if path == self.previous_checkpoint_path:  # the last good state: make it current
                self._guard()
                shutil.copyfile(path, path + ".tmp")
                os.replace(path + ".tmp", self.checkpoint_path)
                _warn(f"{self.checkpoint_path}: resuming from the previous checkpoint "
                      f"(epoch {checkpoint[1].get('epochs_done', '?')})")
            break

        text = self._curves_text()
        rows, problem = _parse_curves(text) if text is not None else ([], None)
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
                _warn(f"{self.curves_path}: rebuilt from the checkpoint")
                rows = _parse_curves(copy)[0]
            elif copy is None and (bad or len(rows) < done):  # no copy: keep what parses
                if bad:
                    self._set_aside(self.curves_path, bad)
                if len(rows) >= done:
                    self.write_curves(rows[:done])
                else:
                    _warn(f"{self.run_dir}: the curves of the checkpoint are lost; "
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
