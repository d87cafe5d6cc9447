"""What an experiment is, checked: configs, their keys, and how they expand into runs.

Names are imported from their modules on first use (PEP 562), so ``from
experiments.config import load_config`` loads only what it needs.
"""
import importlib

#: Public name -> the module of this package that defines it.
_NAMES = {
    "ConfigError": "grid_config", "GridConfig": "grid_config", "load_config": "grid_config",
    "read_config": "grid_config", "parse_config": "grid_config", "check_value": "grid_config",
    "did_you_mean": "grid_config", "check_analysis": "grid_config",
    "TRAIN_KEYS": "grid_config", "AXES": "run_keys",
}


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
