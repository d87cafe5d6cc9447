"""What an experiment is, checked: configs, their keys, and how they expand into runs.

================================  =======================================================
:mod:`~.checks`                   the one vocabulary of checks (and :class:`Key`)
:mod:`~.run_keys`                 the key table of a training run, from the registries
:mod:`~.setup_keys`               the setup keys (published runs vs the last commit)
:mod:`~.schedules`                learning-rate schedules
:mod:`~.kinds`                    the experiment kinds: ``train``, ``synthetic``
:mod:`~.grid_config`, :mod:`~.axes`  a grid's config, its axes and rules' own values
:mod:`~.synthetic_keys`           the synthetic problem's config
:mod:`~.loading`                  reading a file, one error line per mistake
:mod:`~.overrides`                ``--set key=value`` and a changed copy's name
:mod:`~.runs`                     a grid's runs: expansion, run ids, ``--only``
================================  =======================================================

Names are imported from their modules on first use (PEP 562), so ``from
experiments.config import load_config`` loads only what it needs.
"""
import importlib

#: Public name -> the module of this package that defines it.
_NAMES = {
    "ConfigError": "loading", "load_config": "loading", "read_config": "loading",
    "parse_config": "loading", "GridConfig": "grid_config", "check_analysis": "grid_config",
    "SyntheticConfig": "synthetic_keys", "load_with_overrides": "overrides",
    "expand_grid": "runs", "run_id": "runs", "select": "runs",
}


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
