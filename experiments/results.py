"""The results store: one folder of plain files per run, every write atomic.

Layout (``results/<grid name>/<run id>/``)::

    config.yaml      the resolved run config (YAML)
    curves.csv       one row per finished epoch, columns CURVE_FIELDS
    status.json      state (running|finished|diverged|failed), timings, engine, versions
    checkpoint.npz   while a run is in progress: arrays + meta (JSON) to resume from

Every file is written whole to a temporary file in the same folder, flushed, fsynced
and renamed over the old one (``os.replace`` is atomic on POSIX and Windows), so a
crash leaves either the old or the new file, never a half-written one.
"""
import csv
import io
import json
import math
import os
import tempfile

import numpy as np
import yaml

CURVE_FIELDS = ("epoch", "lr", "loss", "acc", "val_loss", "val_acc", "seconds")
STATES = ("running", "finished", "diverged", "failed")
_META_KEY = "__meta__"  # the checkpoint's meta, JSON-encoded as a uint8 array

__all__ = ["CURVE_FIELDS", "STATES", "atomic_write_bytes", "atomic_write_text",
           "RunStore", "load_runs", "load_results"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    On any error the temp file is removed and an existing ``path`` is left untouched.
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


class RunStore:
    """The files of one run, in ``run_dir``.

    Parameters
    ----------
    run_dir : str or path-like
        The run's folder; created on the first write.
    """

    def __init__(self, run_dir):
        self.run_dir = os.fspath(run_dir)

    def __repr__(self):
        return f"RunStore({self.run_dir!r})"

    config_path = property(lambda self: os.path.join(self.run_dir, "config.yaml"))
    curves_path = property(lambda self: os.path.join(self.run_dir, "curves.csv"))
    status_path = property(lambda self: os.path.join(self.run_dir, "status.json"))
    checkpoint_path = property(lambda self: os.path.join(self.run_dir, "checkpoint.npz"))

    # config.yaml
    def write_config(self, config):
        atomic_write_text(self.config_path, yaml.safe_dump(dict(config), sort_keys=False))

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
        atomic_write_text(self.curves_path, buf.getvalue())

    def read_curves(self):
        """The rows of curves.csv (``epoch`` int, the rest float; empty cells NaN)."""
        try:
            with open(self.curves_path, encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
        except FileNotFoundError:
            return []
        return [{k: int(r[k]) if k == "epoch" else (float(r[k]) if r.get(k) else math.nan)
                 for k in CURVE_FIELDS} for r in rows]

    # status.json
    def read_status(self):
        """The status dict, or ``None`` if the run has not started."""
        try:
            with open(self.status_path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def write_status(self, status):
        """Write status.json (strict JSON: non-finite numbers are stored as null)."""
        text = json.dumps(_finite_or_none(dict(status)), indent=2, allow_nan=False)
        atomic_write_text(self.status_path, text + "\n")

    def update_status(self, **fields):
        """Merge ``fields`` into status.json; returns the new status."""
        status = self.read_status() or {}
        status.update(fields)
        self.write_status(status)
        return status

    # checkpoint.npz
    def save_checkpoint(self, arrays, meta):
        """Save ``arrays`` (name -> array) and ``meta`` (JSON-able dict) in one .npz."""
        if _META_KEY in arrays:
            raise ValueError(f"array name {_META_KEY!r} is reserved")
        blob = np.frombuffer(json.dumps(_finite_or_none(dict(meta))).encode("utf-8"),
                             dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **{_META_KEY: blob}, **{k: np.asarray(v) for k, v in arrays.items()})
        atomic_write_bytes(self.checkpoint_path, buf.getvalue())

    def load_checkpoint(self):
        """``(arrays, meta)`` from checkpoint.npz, or ``None`` if there is none."""
        try:
            with np.load(self.checkpoint_path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except FileNotFoundError:
            return None
        meta = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8"))
        return arrays, meta

    def remove_checkpoint(self):
        try:
            os.remove(self.checkpoint_path)
        except FileNotFoundError:
            pass


def load_runs(results_dir):
    """Every run found under ``results_dir`` (any depth), sorted by path.

    Returns
    -------
    list of dict
        Keys ``name`` (grid name: the parent folder), ``run_id`` (the run's folder),
        ``path``, ``config`` (dict), ``status`` (dict or None), ``curves`` (list of
        dicts, see :meth:`RunStore.read_curves`).
    """
    runs = []
    for folder, dirs, files in os.walk(os.fspath(results_dir)):
        dirs.sort()
        if "config.yaml" not in files:
            continue
        store = RunStore(folder)
        runs.append({"name": os.path.basename(os.path.dirname(folder)),
                     "run_id": os.path.basename(folder), "path": folder,
                     "config": store.read_config() or {}, "status": store.read_status(),
                     "curves": store.read_curves()})
    return sorted(runs, key=lambda r: r["path"])


def load_results(results_dir, as_frame=False):
    """One row per run for analysis: config fields, ``state``, final metrics, curves.

    Each row holds the run's config fields (``updater``, ``lr``, ``beta2``, ``seed``, ...),
    ``grid`` (grid name), ``run_id``, ``state`` (``None`` if never started), ``epochs_done``,
    ``final_<metric>`` for each curve metric (NaN when there are no curves) and ``curves``
    (list of dicts). With ``as_frame=True`` a pandas DataFrame is returned instead.
    """
    rows = []
    for run in load_runs(results_dir):
        row = dict(run["config"])
        last = run["curves"][-1] if run["curves"] else {}
        row.update(grid=run["name"], run_id=run["run_id"],
                   state=(run["status"] or {}).get("state"), epochs_done=len(run["curves"]))
        row.update({f"final_{k}": last.get(k, math.nan) for k in CURVE_FIELDS[1:]})
        row["curves"] = run["curves"]
        rows.append(row)
    if as_frame:
        import pandas as pd  # optional dependency
        return pd.DataFrame(rows)
    return rows
