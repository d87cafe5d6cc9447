"""What made a run: the suite's code, the command line, the libraries.

:func:`record` gives the facts a run's ``status.json`` keeps of the training that wrote
it last (:func:`experiments.training.restarted`): ``code`` (the suite's version; its git
commit and whether tracked files differ from it, when the suite runs from a checkout),
``command`` and ``cwd`` (what was run, and where), and ``versions`` (Python, numpy, jax,
jaxlib, optax, and theano when it trains).

A grid's runs may train in other processes than the command's (Ray workers, whose own
``sys.argv`` is Ray's): the job carries the driver's command line
(:attr:`experiments.grid.executors.Job.command`, from :func:`command_line`) and the worker
trains under :func:`invoked_as` it.
"""
import contextlib
import contextvars
import functools
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata

import amsgrad  # the suite's one version (amsgrad-experiments holds both packages)
import experiments

__all__ = ["record", "command_line", "invoked_as", "code_version", "library_versions"]

#: Seconds a git call may take before the commit is left out (a slow network file system).
GIT_TIMEOUT = 10

#: The libraries whose versions a run records (those installed); theano when it trains.
LIBRARIES = ("numpy", "jax", "jaxlib", "optax")

_COMMAND = contextvars.ContextVar("command", default=None)


def command_line():
    """``{'command': ..., 'cwd': ...}`` of this process, or of the command the runs
    train for (:func:`invoked_as`): the arguments as a shell line, and the folder
    relative paths in it are relative to."""
    command = _COMMAND.get()
    if command is None:
        command = {"command": shlex.join(_typed()), "cwd": os.getcwd()}
    return dict(command)


def _typed():
    """``sys.argv`` as typed: ``python script.py ...`` (or ``python -c``), or an
    installed command's name and its arguments."""
    first = sys.argv[0] if sys.argv else ""
    if first.endswith(".py") or first in ("", "-c"):
        return [os.path.basename(sys.executable), *sys.argv]
    return [os.path.basename(first), *sys.argv[1:]]


@contextlib.contextmanager
def invoked_as(command):
    """Within the block, :func:`command_line` is ``command`` (None: this process's)."""
    token = _COMMAND.set(command)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def _git(root, *args):
    """git's output in ``root``, or None (no git, not a checkout, too slow)."""
    try:
        done = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def code_version():
    """``{'version', 'commit', 'dirty'}`` of the suite; ``commit`` and ``dirty`` (tracked
    files changed, as ``git describe --dirty`` counts) only when the package is a
    checkout's own folder (not a copy installed inside some other repository).
    Computed once per process: the code it runs is the code it imported."""
    out = {"version": amsgrad.__version__}
    root = os.path.dirname(os.path.dirname(os.path.abspath(experiments.__file__)))
    head = _git(root, "rev-parse", "--show-toplevel", "HEAD")
    lines = head.splitlines() if head else []
    if len(lines) != 2 or not os.path.samefile(lines[0], root):
        return out
    changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    if changes is not None:
        out.update(commit=lines[1], dirty=bool(changes.strip()))
    return out


def library_versions(library=None):
    """Python, the executable, :data:`LIBRARIES` (those installed) and ``library`` (the
    training engine's own, e.g. theano)."""
    out = {"python": platform.python_version(), "executable": sys.executable}
    for name in LIBRARIES + tuple(n for n in (library,) if n and n not in LIBRARIES):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def record(library=None):
    """The facts of the module docstring, for a run that starts training on an engine
    whose library is ``library`` (its version recorded too)."""
    return {"code": code_version(), **command_line(), "versions": library_versions(library)}
