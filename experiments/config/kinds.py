"""The registry of experiment kinds: what a config's ``kind`` may be.

A :class:`Kind` is a config's schema (``parse``: its keys checked into a config object)
and what runs it (``runner``: named as an entry point, ``"module:function"``, the way
packages name their plugins, so this layer does not import the runners above it; the
command resolves it). ``options`` are the command-line options that apply to it.

- ``train`` (the default): a grid of training runs (:mod:`experiments.config.grid_config`),
  run by :func:`experiments.grid.runner.run_grid`.
- ``synthetic``: the synthetic problem of the AMSGrad paper
  (:mod:`experiments.config.synthetic_keys`), run by :func:`experiments.synthetic.run`.
"""
import dataclasses
import pkgutil
from typing import Callable, Tuple

from experiments.config import grid_config, synthetic_keys
from experiments.config.checks import choice

__all__ = ["Kind", "register_kind", "get_kind", "kind_names", "check_kind", "DEFAULT"]

DEFAULT = "train"


@dataclasses.dataclass(frozen=True)
class Kind:
    """``parse(data, name, checker)`` -> the config (``checker``: a
    :class:`~experiments.config.loading.Checker`); ``runner``: ``"module:function"`` of
    ``function(config, options) -> summary`` (``options``: a
    :class:`~experiments.grid.options.GridOptions`; the summary's ``trained`` and
    ``failed`` lists, and ``folder`` where it has one); ``options``: the command-line
    options (``run_grid.py --<option>``) that apply to it; ``figure``:
    ``"module:function"`` of ``function(folder)`` that draws its figure after a run."""
    name: str
    parse: Callable
    runner: str
    options: Tuple[str, ...] = ()
    description: str = ""
    figure: str = None  # "module:function" drawing its figure into its folder, if any

    def run(self, config, options):
        """Run ``config`` (the runner resolved now)."""
        return pkgutil.resolve_name(self.runner)(config, options)


_KINDS = {}


def register_kind(kind, replace=False):
    if kind.name in _KINDS and _KINDS[kind.name] is not kind and not replace:
        raise ValueError(f"a kind named {kind.name!r} is registered already")
    _KINDS[kind.name] = kind
    return kind


def kind_names():
    return tuple(_KINDS)


def get_kind(name):
    return _KINDS[name]


check_kind = choice("kind", kind_names)

register_kind(Kind("train", grid_config.parse_grid, "experiments.grid.runner:run_grid",
                   options=("only", "engine", "epochs", "executor", "log", "group_size"),
                   description="a grid of training runs"))
register_kind(Kind("synthetic", synthetic_keys.parse_synthetic, "experiments.synthetic:run",
                   description="the synthetic convex problem of the AMSGrad paper "
                               "(section 5)",
                   figure="experiments.analysis.figures:save_synthetic"))
