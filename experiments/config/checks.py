"""The one vocabulary of checks: every key of every config is checked by these.

A check takes a value as YAML gives it and returns it normalised, or raises :class:`Bad`
saying what was expected (``expected a number in [0, 1), got 1.5``); whoever knows the
key and the file adds them to the message (:class:`~experiments.config.loading.ConfigError`).
The key table of a training run (:mod:`experiments.config.run_keys`), the synthetic
problem's keys (:mod:`experiments.config.synthetic_keys`), the schedules' parameters,
the rules' hyperparameters (:mod:`experiments.optimizers`) and ``resources`` all use them.
"""
import dataclasses
import difflib
import math
import re

import numpy as np

__all__ = ["Bad", "Key", "REQUIRED", "INF", "shown", "did_you_mean", "integer", "optional", "number", "boolean",
           "choice", "list_of", "raising", "folder_name", "ALIASES"]

INF = float("inf")


class Bad(ValueError):
    """A value a check refuses; the message says what was expected."""


def shown(value):
    """A value as the user wrote it (YAML spelling), short."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return repr(value)
    return {list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


#: Names a user may reach for: the labels of run ids, optax's names, short forms.
ALIASES = {"lr": "learning_rate", "b1": "beta1", "b2": "beta2", "eps": "epsilon",
           "bc": "bias_correction", "mom": "momentum", "wd": "weight_decay", "ams": "amsgrad",
           "nesterov": "nesterov_momentum", "seed": "seeds", "gpus": "num_gpus",
           "cpus": "num_cpus"}


def did_you_mean(word, candidates, aliases=ALIASES):
    """`` (did you mean 'x'?)`` for the closest of ``candidates``, or ``''``."""
    candidates = list(candidates)
    if aliases.get(word) in candidates:
        return f" (did you mean {aliases[word]!r}?)"
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def integer(minimum):
    def check_integer(v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise Bad(f"expected an integer, got {shown(v)}")
        if v < minimum:
            raise Bad(f"expected an integer >= {minimum}, got {v}")
        return int(v)
    return check_integer


def optional(check):
    """``check``, or None as it is."""
    return lambda v: None if v is None else check(v)


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def number(low=-INF, high=INF, low_open=False, high_open=False):
    """A finite number in the interval (a string such as ``1e-8`` too: YAML 1.1 reads
    numbers without a dot as strings)."""
    def check_number(v):
        if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
            v = float(v)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
            raise Bad(f"expected a number, got {shown(v)}")
        v = float(v)
        if math.isnan(v) or (v < low or (low_open and v == low)) \
                or (v > high or (high_open and v == high)):
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            if high == INF:
                where = f"{'>' if low_open else '>='} {low:g}"
            elif low == -INF:
                where = f"{'<' if high_open else '<='} {high:g}"
            else:
                where = f"in {lo}{low:g}, {high:g}{hi}"
            raise Bad(f"expected a number {where}, got {v!r}")
        return v
    return check_number


def boolean(v):
    if not isinstance(v, (bool, np.bool_)):
        raise Bad(f"expected true or false, got {shown(v)}")
    return bool(v)


def choice(what, choices):
    """One of ``choices`` (a sequence, or a callable giving the current ones: a registry's
    names)."""
    def check_choice(v):
        names = tuple(choices() if callable(choices) else choices)
        if not isinstance(v, str) or v not in names:
            extra = did_you_mean(v, names) if isinstance(v, str) else ""
            raise Bad(f"unknown {what} {shown(v)}{extra}; choose from {', '.join(names)}")
        return v
    return check_choice


def list_of(check):
    """A non-empty list of distinct values, each checked (a single string: a list of one)."""
    def check_list(v):
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not v:
            raise Bad(f"expected a non-empty list, got {shown(v)}")
        checked = [check(x) for x in v]
        if any(checked.count(x) > 1 for x in checked):
            raise Bad(f"{shown(next(x for x in checked if checked.count(x) > 1))} given twice")
        return checked
    return check_list


def raising(check_value):
    """A checker raising ``ValueError`` (another module's) as one of ours."""
    def checked(v):
        try:
            return check_value(v)
        except Bad:
            raise
        except ValueError as e:
            raise Bad(str(e)) from None
    return checked


def folder_name(v):
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=-]*", v):
        raise Bad(f"expected a folder name (letters, digits, _ . = -), got {shown(v)}")
    return v


REQUIRED = object()  # a default that means: must be given


@dataclasses.dataclass(frozen=True)
class Key:
    """One key of a config: ``check`` normalises a value or raises :class:`Bad`;
    ``default`` is what a config that leaves the key out gets (:data:`REQUIRED`: it
    must be given; a callable: a function of the run's dataset); ``label`` names it in
    run ids and ``--only`` (None: the bare value); ``axis``: it may be a grid axis;
    ``per_run``: runs of one compiled program may differ in it; ``rules``: the rules
    that take it (None: every run has it); ``legacy``: results written before the key
    existed lack it and mean its default."""
    name: str
    check: object
    default: object = REQUIRED
    label: object = None
    axis: bool = False
    per_run: bool = False
    rules: object = None
    legacy: bool = False
    type: object = object
