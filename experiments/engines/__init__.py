"""Engines compile a model spec and train it: ``jax`` (CPU or CUDA) and ``theano`` (CPU).

The registry holds one :class:`EngineEntry` per engine: its :class:`Abilities` (whether it
trains groups of runs in one program, which precisions and pooling-tie gradients it
honours, which rules it can step, what a run costs in memory) and how to build it for K
runs (:meth:`EngineEntry.group`, the trainer's one interface,
:class:`~experiments.engines.base.EngineGroup`). Nothing outside this package knows an
engine by its name: the trainer, grouping and the grid ask the entry. An engine's library
is imported only when the engine is built, so the abilities are known where the library
is not installed.
"""
import dataclasses
import importlib
import os
from importlib.util import find_spec
from typing import Callable, Optional, Tuple

from experiments.config.setup_keys import PRECISIONS, TIE_GRADIENTS
from experiments.models import costs

__all__ = ["Abilities", "EngineEntry", "register_engine", "get_engine", "engine_names",
           "run_bytes", "eval_bytes", "available_memory"]

_F32 = 4  # bytes of a float32


def run_bytes(spec, batch_size=128):
    """Estimated device bytes one run adds to a group of the grouped JAX engine: twelve
    float32 copies of the parameters (parameters, three optimizer slots, gradient, and
    the temporaries of unpacking and updating them), and three of every activation of
    a training batch (kept for the backward pass, its gradient, and a temporary)."""
    c = costs(spec)
    return _F32 * (12 * c["params"] + 3 * batch_size * c["activations"])


def eval_bytes(spec, val_batch_size=1024):
    """Estimated device bytes one run needs while a validation batch passes through it:
    twice the largest input + output of a layer."""
    return _F32 * 2 * val_batch_size * costs(spec)["widest_pair"]


def available_memory(device=None):
    """Free bytes on ``device`` (a GPU's allocator limit minus what is in use), or on
    the host for a CPU device (``MemAvailable`` of /proc/meminfo, else physical pages)."""
    stats = None
    if device is not None and getattr(device, "platform", "cpu") != "cpu":
        try:
            stats = device.memory_stats()
        except Exception:  # a backend without memory statistics
            stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class Abilities:
    """What an engine can do. ``groups``: trains K > 1 runs in one program;
    ``precisions`` and ``pool_ties``: the values of the setup keys ``precision`` and
    ``maxpool_tie_gradient`` it honours (``why_not``: why it cannot honour the others);
    ``lasagne_only``: it steps the rules that have a Lasagne-style face only;
    ``library``: the package it needs (None: none beyond the suite's);
    ``memory_per_run(spec, batch_size)``: device bytes a run takes in a group."""
    groups: bool
    precisions: Tuple[str, ...] = PRECISIONS
    pool_ties: Tuple[str, ...] = TIE_GRADIENTS
    lasagne_only: bool = False
    library: Optional[str] = None
    memory_per_run: Callable = run_bytes
    why_not: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EngineEntry:
    """An engine: ``name``, :class:`Abilities`, ``single`` (``"module:Class"`` of its
    one-run engine, :class:`~experiments.engines.base.Engine`) and ``grouped`` (that of
    its engine of K runs, :class:`~experiments.engines.base.EngineGroup`, or None)."""
    name: str
    abilities: Abilities
    single: str
    grouped: Optional[str] = None
    label: Optional[str] = None  # in messages ("the Theano engine"); default the name

    def problem(self, setup, rules=()):
        """Why this engine cannot train runs of ``setup`` (a
        :class:`~experiments.config.setup_keys.SetupKeys`) with ``rules``, or None: one
        line naming the key and what to choose instead."""
        a, name = self.abilities, self.label or self.name
        for key, value, offered in (("maxpool_tie_gradient", setup.maxpool_tie_gradient,
                                     a.pool_ties), ("precision", setup.precision,
                                                    a.precisions)):
            if value not in offered:
                why = a.why_not.get(key, "")
                return (f"{key} {value!r} is not offered by the {name} engine"
                        f"{f' ({why})' if why else ''}; use --engine jax or {key}: "
                        f"{offered[-1]}")
        for rule in rules if a.lasagne_only else ():
            if not rule.trains_on_theano:
                return (f"updater {rule.name!r} has no Lasagne-style face, which the "
                        f"{name} engine steps; use --engine jax")
        return None

    def installed(self):
        """Whether the engine's library can be imported here."""
        return self.abilities.library is None or find_spec(self.abilities.library) is not None

    def load(self, which="single"):
        """The engine's class (its library imported now)."""
        path = self.single if which == "single" else self.grouped
        module, _, cls = path.partition(":")
        return getattr(importlib.import_module(module), cls)

    def group(self, spec, dataset, optimizers, seeds, setup, options=None):
        """The engine of the runs with ``optimizers`` and ``seeds`` (one each), as the
        trainer drives it (:class:`~experiments.engines.base.EngineGroup`): a run alone on
        the one-run engine, several on the grouped one."""
        options = options or {}
        if len(seeds) == 1:
            return self.load()(spec, dataset, optimizers[0], seeds[0], setup=setup,
                               **options).as_group()
        if not self.abilities.groups:
            raise ValueError(f"the {self.label or self.name} engine trains one run at a time "
                             f"(group size 1)")
        return self.load("grouped")(spec, dataset, optimizers, seeds, setup=setup, **options)


_ENGINES = {}


def register_engine(entry):
    """Add ``entry`` (a name taken already is replaced: a test's stand-in)."""
    _ENGINES[entry.name] = entry
    return entry


def engine_names():
    return tuple(_ENGINES)


def get_engine(name):
    """The :class:`EngineEntry` called ``name``; ``ValueError`` naming the others."""
    try:
        return _ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose from "
                         f"{', '.join(_ENGINES)}") from None


register_engine(EngineEntry(
    "jax", Abilities(groups=True, library="jax"),
    single="experiments.engines.jax_engine:JaxEngine",
    grouped="experiments.engines.jax_group:GroupEngine", label="JAX"))
register_engine(EngineEntry(
    "theano", Abilities(groups=False, precisions=("default", "highest"), pool_ties=("all",),
                        lasagne_only=True, library="theano",
                        why_not={"maxpool_tie_gradient": "its pooling gradient goes to every "
                                                         "tied maximum",
                                 "precision": "it computes in full float32 on the CPU, and "
                                              "only the JAX engines round operands"}),
    single="experiments.engines.theano_engine:TheanoEngine", label="Theano"))
