"""Faults of the file system around the suite, as one line for the user.

A full disk, a read-only file system, a folder this user may not write, or a file where
a folder should be are not bugs and not the experiment's fault: the command-line tools
turn them into a :class:`StorageError` naming the folder and the option (or environment
variable) that chooses another one, and exit with :data:`EXIT_STATUS`. The folders: the
results (``--results``, ``--out``), the data a download goes into (``--data-dir`` or
``AMSGRAD_DATA_DIR``: :func:`experiments.data.load_dataset`) and Theano's compile cache
(``AMSGRAD_CACHE_DIR``: :mod:`experiments.engines.theano_env`). Nothing is half-written
meanwhile: every results file is written to a temp file and renamed
(:mod:`experiments.results.store`), so the next run after the fault is fixed resumes exactly.
"""
import contextlib
import errno
import os

EXIT_STATUS = 3  # scripts/*.py: the output folder cannot be written

__all__ = ["EXIT_STATUS", "StorageError", "is_storage_fault", "describe", "writing_to", "probe"]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS,)
_DENIED = (errno.EACCES, errno.EPERM)
_NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)  # EEXIST: makedirs found a file there
_NOT_A_FILE = (errno.EISDIR,)
_FAULTS = _NO_SPACE + _READ_ONLY + _DENIED + _NOT_A_FOLDER + _NOT_A_FILE


class StorageError(Exception):
    """A folder the command writes to cannot be written; the message is one line."""


def is_storage_fault(error):
    """Whether ``error`` is a fault of the file system (see the module docstring), or
    one already said as a :class:`StorageError`."""
    return isinstance(error, StorageError) or (isinstance(error, OSError)
                                               and error.errno in _FAULTS)


def describe(error, folder, option):
    """The one line for storage fault ``error`` while writing into ``folder``, which
    the command-line option ``option`` chooses (e.g. ``--results``)."""
    folder = os.fspath(folder)
    # The faults a temp file meets are told by the folder; only a path in the way is named.
    where = os.fspath(error.filename) if error.filename else folder
    if error.errno in _NO_SPACE:
        return (f"{folder}: no space left on its device; free some space or choose "
                f"another folder with {option}, then run the same command again")
    if error.errno in _READ_ONLY:
        return f"{folder}: read-only file system; choose a writable folder with {option}"
    if error.errno in _DENIED:
        return f"{folder}: permission denied; choose a folder you may write with {option}"
    if error.errno in _NOT_A_FILE:
        return f"{where} is a folder, not a file; choose another path with {option}"
    while where and not os.path.exists(where):  # the file in the way is an ancestor
        where = os.path.dirname(where)
    return f"{where} is a file, not a folder; choose another folder with {option}"


@contextlib.contextmanager
def writing_to(folder, option):
    """Turn a storage fault raised inside the block into a :class:`StorageError` (one
    said already, of another folder, passes as it is)."""
    try:
        yield
    except OSError as error:
        if not is_storage_fault(error):
            raise
        raise StorageError(describe(error, folder, option)) from None


def probe(folder, option):
    """Make ``folder`` (and its parents) and write a file in it, before a library that
    needs it does: a fault is a :class:`StorageError` naming ``folder`` and ``option``
    (a library's own error would be a traceback). Root writes a mode-0555 folder, as the
    library would."""
    import tempfile
    with writing_to(folder, option):
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
