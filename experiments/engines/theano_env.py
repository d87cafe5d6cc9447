"""Import Theano 1.0.5 with the flags this project needs, unless the user chose otherwise.

Theano reads its flags once, when it is first imported, from ``THEANO_FLAGS`` and then
from its config files (``THEANORC``, default ``~/.theanorc``). On a current stack it
does not import without an empty ``blas.ldflags`` (it then runs its BLAS calls through
NumPy's C API), and the experiments are float32. So, before the import, every flag
below that neither ``THEANO_FLAGS`` nor a config file sets is added to ``THEANO_FLAGS``:

=====================  ===========================================================
``blas.ldflags``       empty
``floatX``             ``float32``
``base_compiledir``    ``$AMSGRAD_CACHE_DIR/theano``, else
                       ``~/.cache/amsgrad-experiments/theano`` (compiled C code is
                       cached there; the first compilation of a conv net is slow)
=====================  ===========================================================

Import Theano through this module (``from experiments.engines.theano_env import theano``);
if Theano was imported before, its flags are left as they are. A compile cache that cannot
be written (read-only, full, a file in the way) is one line naming it and what moves it
(``AMSGRAD_CACHE_DIR``, or ``base_compiledir`` in ``THEANO_FLAGS``), before Theano is
imported.
"""
import configparser
import logging
import os
import sys
from pathlib import Path

from experiments.engines.devices import cache_root

from experiments.results import faults

#: Flags set by default: THEANO_FLAGS key -> (config file section, option).
_FLAGS = {"blas.ldflags": ("blas", "ldflags"),
          "floatX": ("global", "floatX"),
          "base_compiledir": ("global", "base_compiledir")}


def cache_dir(environ=None):
    """Theano's compile cache: ``theano`` in the suite's cache folder
    (:func:`~experiments.engines.devices.cache_root`)."""
    return cache_root(environ) / "theano"


def _flags(text):
    """``THEANO_FLAGS`` as a mapping, key -> value (a later setting wins, as in Theano)."""
    pairs = (item.partition("=") for item in text.split(",") if item.strip())
    return {key.strip(): value.strip() for key, _, value in pairs}


def _set_in_config_files(environ):
    files = environ.get("THEANORC", "~/.theanorc" + os.pathsep + "~/.theanorc.txt")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # Theano's option names are case sensitive (floatX)
    try:
        parser.read([os.path.expanduser(f) for f in files.split(os.pathsep) if f])
    except configparser.Error:
        return set()  # Theano will report a broken file itself
    return {key for key, (section, option) in _FLAGS.items()
            if parser.has_option(section, option)}


def _defaults(environ):
    """The project's defaults for the flags the user has not chosen."""
    chosen = set(_flags(environ.get("THEANO_FLAGS", ""))) | _set_in_config_files(environ)
    defaults = {"blas.ldflags": "", "floatX": "float32",
                "base_compiledir": str(cache_dir(environ))}
    return {key: value for key, value in defaults.items() if key not in chosen}


def theano_flags(environ=None):
    """The ``THEANO_FLAGS`` value with this project's defaults added where unset."""
    environ = os.environ if environ is None else environ
    flags = environ.get("THEANO_FLAGS", "").strip(",")
    added = [f"{key}={value}" for key, value in _defaults(environ).items()]
    return ",".join(([flags] if flags else []) + added)


def compile_dir(environ=None):
    """``(folder, what chooses it)`` of Theano's compile cache: ``base_compiledir`` of
    ``THEANO_FLAGS``, else this project's default (:func:`cache_dir`); None when a
    Theano config file sets it (Theano reads that one itself)."""
    environ = os.environ if environ is None else environ
    chosen = _flags(environ.get("THEANO_FLAGS", "")).get("base_compiledir")
    if chosen is not None:
        return Path(chosen).expanduser(), "base_compiledir in THEANO_FLAGS"
    if "base_compiledir" in _defaults(environ):
        return cache_dir(environ), "AMSGRAD_CACHE_DIR"
    return None


def configure(environ=None):
    """Write :func:`theano_flags` into ``environ['THEANO_FLAGS']`` (``os.environ`` by
    default) and make sure the compile cache can be written (created if need be; a
    :class:`~experiments.results.faults.StorageError` naming it and what moves it, not
    Theano's traceback, if not); silence Theano's notice that it runs BLAS through
    NumPy. No effect once Theano is imported."""
    environ = os.environ if environ is None else environ
    if "theano" in sys.modules:
        return
    cache = compile_dir(environ)
    if cache is not None:
        faults.probe(*cache)
    # Empty ldflags are this project's setting, so Theano's notice about them is noise.
    logging.getLogger("theano.tensor.blas").addFilter(_NumpyBlasNotice())
    environ["THEANO_FLAGS"] = theano_flags(environ)


class _NumpyBlasNotice(logging.Filter):
    def filter(self, record):
        return "NumPy C-API based implementation for BLAS" not in record.getMessage()


configure()
import theano  # noqa: E402  (the flags above must be set first)

__all__ = ["theano", "theano_flags", "configure", "cache_dir", "compile_dir"]
