"""The formats of a run's files, and how every one of them is written.

Every file is written whole to a temporary file in the same folder, flushed, fsynced
and renamed over the old one (``os.replace`` is atomic on POSIX and Windows), so a
crash or a full disk leaves either the old or the new file, never a half-written one.
curves.csv is a plain CSV (:data:`CURVE_FIELDS`, numbers written to read back exactly);
a checkpoint is an ``.npz`` of the arrays plus its meta (JSON), curves.csv as it stood,
and a SHA-256 of everything, so a damaged one is detected rather than trusted.
"""
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import tempfile
import warnings

import numpy as np

CURVE_FIELDS = ("epoch", "lr", "loss", "acc", "val_loss", "val_acc", "seconds")
_META_KEY = "__meta__"  # the checkpoint's meta, JSON-encoded as a uint8 array
_CURVES_KEY = "__curves__"  # curves.csv as it was when the checkpoint was saved
_SUM_KEY = "__sha256__"  # SHA-256 of every other member, hex as uint8

__all__ = ["CURVE_FIELDS", "atomic_write_bytes", "atomic_write_text", "CorruptFileError",
           "CorruptFileWarning", "finite_or_none", "format_curves", "parse_curves",
           "pack_checkpoint", "read_checkpoint", "removed_on_error", "warn_corrupt"]


class CorruptFileError(ValueError):
    """A results file that does not parse; the message names the file and the problem."""


class CorruptFileWarning(UserWarning):
    """A damaged results file was set aside and the run goes back to its last good state."""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def removed_on_error(tmp):
    """Remove the temporary file ``tmp`` (if it is there) when the block raises."""
    try:
        yield
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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
    with removed_on_error(tmp):
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for reading
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
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


def finite_or_none(obj):
    """Non-finite floats become ``None`` so that status.json stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return finite_or_none(obj.item())
    return obj


def _format_number(value):
    if value is None:
        return ""
    value = float(value)
    return repr(value)  # shortest string that reads back exactly; 'nan', 'inf', '-inf'


def parse_curves(text):
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


def format_curves(rows):
    """The text of curves.csv holding ``rows`` (dicts with the keys CURVE_FIELDS)."""
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
    return buf.getvalue()


def _digest(members):
    h = hashlib.sha256()
    for name in sorted(members):
        a = np.ascontiguousarray(members[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode("utf-8"))
        h.update(a.tobytes())
    return h.hexdigest()


def _as_bytes(text):
    return np.frombuffer(text.encode("utf-8") if isinstance(text, str) else text, np.uint8)


def pack_checkpoint(arrays, meta, curves=None):
    """The bytes of a checkpoint: ``arrays`` (name -> array), ``meta`` (JSON-able),
    the curves.csv text (or ``None``) and a SHA-256 of all of them."""
    reserved = sorted(k for k in arrays if k.startswith("__") and k.endswith("__"))
    if reserved:
        raise ValueError(f"array names {reserved} are reserved (__name__)")
    members = {k: np.asarray(v) for k, v in arrays.items()}
    members[_META_KEY] = _as_bytes(json.dumps(finite_or_none(dict(meta))))
    if curves is not None:
        members[_CURVES_KEY] = _as_bytes(curves)
    members[_SUM_KEY] = _as_bytes(_digest(members))
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def read_checkpoint(path):
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


def warn_corrupt(message):
    warnings.warn(message, CorruptFileWarning, stacklevel=3)
